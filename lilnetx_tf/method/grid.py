"""Power-of-two grids for the float weights that ship beside the latents.

Besides its range-coded latents, a small model's file is dominated by its
float weights: the decoders' matrices and the biases (LeNet-5: 1,205 values,
4.8 KB in float32, more than its 3.8 KB of latents). `LilNetXModel(grid_bits=b)`
keeps each decoder's unit matrix and each latent layer's bias on a grid
`q * 2**e`: `e` a power of two `b` binary places below the tensor's largest
magnitude, `q` an integer of at most `b + 1` bits. Training sees the grid
values through a straight-through gradient, as it sees the rounded latents,
so the model that trains is the model that ships: the file stores `e` and the
small integers `q` (Rice coded, `lilnetx_tf.compressed.rice`), exactly.

The grid is relative to the largest magnitude, so it needs no scale to tune;
`b = 6` steps by at most 1/64 of the largest entry, which training absorbs.
"""

import numpy as np
import tensorflow as tf

__all__ = ["DEFAULT_GRID_BITS", "EXPONENTS", "MAX_GRID_BITS", "grid_ste",
           "to_grid"]

DEFAULT_GRID_BITS = 6
MAX_GRID_BITS = 16
# The grid exponents used: `2.0**-e` stays a normal float32, so dividing by
# the step is exact.
EXPONENTS = (-100, 100)


def _exponent(x, bits):
  """The grid's exponent: `floor(log2(max |x|)) - bits`, from the float bits.

  Reading the exponent field is exact where `log2` may round a power of two
  down. An all-zero (or subnormal) tensor gets the smallest exponent.
  """
  peak = tf.reduce_max(tf.abs(x))
  biased = tf.bitwise.right_shift(tf.bitcast(peak, tf.int32), 23)
  return tf.clip_by_value(biased - 127 - bits, *EXPONENTS)


def grid_ste(x, bits):
  """`x` rounded to its grid of `bits` places, with an identity gradient.

  Args:
    x: A float32 tensor.
    bits: Binary places below the largest magnitude (>= 1); 0 or None
      returns `x` unchanged.

  Returns:
    A tensor of `x`'s shape whose values are exactly `q * 2**e` for integers
    `|q| <= 2**(bits + 1)`.
  """
  if not bits:
    return x
  step = tf.pow(2.0, tf.cast(_exponent(tf.stop_gradient(x), bits), x.dtype))
  return x + tf.stop_gradient(tf.round(x / step) * step - x)


def to_grid(values, max_bits=MAX_GRID_BITS):
  """The coarsest power-of-two grid holding every value of `values` exactly.

  Args:
    values: A float32 array.
    max_bits: The most binary places below the largest magnitude to accept.

  Returns:
    `(q, e)`: int64 integers with `values == q * 2.0**e` element for element,
    or None where no grid of at most `max_bits` places holds the values
    (e.g. weights that were not trained on one).
  """
  values = np.asarray(values, np.float32)
  if not np.all(np.isfinite(values)):
    return None
  nonzero = values[values != 0].astype(np.float64)
  if nonzero.size == 0:
    return np.zeros(values.shape, np.int64), 0
  mantissa, exponent = np.frexp(nonzero)  # |mantissa| in [0.5, 1).
  integer = np.abs(mantissa * 2.0**24).astype(np.int64)  # Exact for float32.
  lowest = (integer & -integer).astype(np.float64)
  e = int(np.min(exponent - 24 + np.log2(lowest).astype(np.int64)))
  if (int(np.max(exponent)) - 1 - e > max_bits or
      not EXPONENTS[0] <= e <= EXPONENTS[1]):
    return None
  q = np.rint(values.astype(np.float64) * 2.0**-e).astype(np.int64)
  return q, e
