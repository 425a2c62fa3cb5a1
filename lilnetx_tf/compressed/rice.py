"""Rice codes of small signed integers: the grid weights of the file.

The decoders' unit matrices and the biases of a model trained on grids
(`lilnetx_tf.method.grid`) are a few hundred small integers per tensor: too
few to pay for a range-coding table, too many to store as float32. A Rice
code with parameter `k` writes each zigzag-mapped integer `z` as `z >> k` in
unary (that many 1 bits, then a 0) and its `k` low bits; for the roughly
Laplacian integers of trained weights it comes within a few percent of their
entropy, with nothing to store but `k`.

Layout of `encode`'s bytes: first the unary parts of all values, then their
low parts (`k` bits each, most significant first), packed most significant
bit first, zero-padded to whole bytes. Keeping the two apart lets `decode`
work on whole arrays.
"""

import numpy as np

__all__ = ["MAX_K", "RiceError", "decode", "encode"]

# Above any parameter `encode` picks for int32 values.
MAX_K = 31


class RiceError(ValueError):
  """Bytes that are not the Rice code of the expected number of values."""


def _zigzag(q):
  q = np.asarray(q, np.int64)
  return np.where(q >= 0, 2 * q, -2 * q - 1)


def _best_k(z):
  """The parameter that makes the code of `z` shortest."""
  best, best_bits = 0, None
  for k in range(MAX_K + 1):
    bits = int(np.sum(z >> k)) + z.size * (k + 1)
    if best_bits is None or bits < best_bits:
      best, best_bits = k, bits
    if not np.any(z >> k):  # Larger k only adds low bits.
      break
  return best


def encode(q, k=None):
  """Rice-codes signed integers.

  Args:
    q: Integers with `|q| < 2**30`, any shape (read in C order).
    k: The Rice parameter; default: the one giving the fewest bytes.

  Returns:
    `(k, data)`: the parameter and the bytes (see the module docstring).

  Raises:
    ValueError: if a value is out of range.
  """
  z = _zigzag(q).ravel()
  if z.size and int(z.max()) >= 2**31:
    raise ValueError("Rice coding takes integers of magnitude below 2**30.")
  k = _best_k(z) if k is None else int(k)
  if not 0 <= k <= MAX_K:
    raise ValueError(f"The Rice parameter must be in [0, {MAX_K}], got {k}.")
  quotients = z >> k
  # Each value's unary part: `quotient` ones, then a zero.
  unary = np.ones(int(quotients.sum()) + z.size, np.uint8)
  unary[np.cumsum(quotients + 1) - 1] = 0
  low = ((z[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.uint8)
  return k, np.packbits(np.concatenate([unary, low.ravel()])).tobytes()


def decode(data, count, k):
  """Inverse of `encode`: `count` signed integers (int64) from `data`.

  Args:
    data: The bytes.
    count: The number of values.
    k: The Rice parameter.

  Returns:
    The integers, a flat int64 array.

  Raises:
    RiceError: if `data` does not hold exactly `count` values (missing
      bits, a value of 2**31 or more, or nonzero padding).
  """
  if not 0 <= k <= MAX_K:
    raise RiceError(f"the Rice parameter {k} is outside [0, {MAX_K}]")
  bits = np.unpackbits(np.frombuffer(data, np.uint8))
  zeros = np.flatnonzero(bits == 0)[:count]
  if len(zeros) < count:
    raise RiceError(f"the data hold fewer than {count} values")
  ends = zeros + 1
  quotients = np.diff(np.concatenate([[0], ends])) - 1
  unary_end = int(ends[-1]) if count else 0
  if len(bits) - unary_end < count * k:
    raise RiceError("the data end inside the low bits")
  if np.any(quotients >= 2**(31 - k)):
    raise RiceError("a value is out of range")
  low = bits[unary_end:unary_end + count * k].reshape(count, k)
  low = (low.astype(np.int64) << np.arange(k - 1, -1, -1)).sum(axis=1)
  padding = bits[unary_end + count * k:]
  if len(padding) >= 8 or np.any(padding):
    raise RiceError("the data do not end after the last value")
  z = (quotients.astype(np.int64) << k) | low
  return np.where(z % 2 == 0, z // 2, -(z + 1) // 2)
