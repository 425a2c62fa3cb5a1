"""The float parts of the compressed file: decoders (DECO) and weights (FLTS).

Everything but the latents: each group's decoder matrix and every weight of
the decompressed model that is not a coded kernel (biases, batch norm, ...).
A tensor whose elements are all one value (folded batch norm's zero means
and unit variances, a bias never trained) is stored as that value in the
header, with no bytes in FLTS; a tensor on a power-of-two grid
(`lilnetx_tf.method.grid`: what `LilNetXModel(grid_bits=...)` trains decoders
and biases on) as the Rice code (`rice`) of its integers (less their median
where that is shorter) where that is shorter than its floats; any other as
float32 (or float16 on request). The byte layout is in
`lilnetx_tf.compressed.fileformat`. Readers check sizes before they decode,
and raise `CorruptFileError` for what no writer makes.
"""

import json
import math

import numpy as np
import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.compressed import rice
from lilnetx_tf.compressed.errors import fail
from lilnetx_tf.compressed.errors import reading
from lilnetx_tf.method import grid

__all__ = ["FLOAT_DTYPES", "MAX_GRID_INTEGER", "batch_norm_scale_offset",
           "fold_batch_norm_statistics", "is_fill_value", "pack_decoder",
           "pack_floats", "unpack_decoder", "unpack_floats"]

FLOAT_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
# Integers of a grid weight: float32 holds `q * 2**e` exactly below 2**24.
MAX_GRID_INTEGER = 2**24
# Below this many epsilons a batch norm channel's moving variance is taken
# for a constant input (see `fold_batch_norm_statistics`).
_CONSTANT_VARIANCE = 1e-4


def _fill_value(values):
  """The value every element of `values` holds, bit for bit, or None."""
  bits = values.reshape(-1).view(np.uint32)
  if not bits.size or np.any(bits != bits[0]):
    return None
  value = float(values.reshape(-1)[0])  # Exact: float64 holds any float32.
  return value if math.isfinite(value) else None


def is_fill_value(value):
  """Whether a header `fill` is a finite JSON number that is a float32."""
  if not isinstance(value, float) or not math.isfinite(value):
    return False
  with np.errstate(over="ignore"):
    return float(np.float32(value)) == value


def _grid_coded(values, offset=False):
  """`(exponent, k, Rice bytes, offset)` of values on a grid, or None if off.

  With `offset`, the integers may be coded less their rounded median, where
  that is shorter: the vectors of like values that do not centre on zero
  (folded batch norm scales: about a bit a value less).
  """
  on_grid = grid.to_grid(values)
  if on_grid is None:
    return None
  q, exponent = on_grid
  k, data = rice.encode(q)
  if offset and q.size:
    median = int(np.round(np.median(q)))
    k_less, data_less = rice.encode(q - median)
    # The offset costs its digits and a comma in the header.
    if median and len(data_less) + len(str(median)) + 1 < len(data):
      return exponent, k_less, data_less, median
  return exponent, k, data, 0


def batch_norm_scale_offset(layer):
  """(scale, offset), float64, of the inference map of a batch norm layer."""
  var = layer.moving_variance.numpy().astype(np.float64)
  gamma = np.ones_like(var) if layer.gamma is None else layer.gamma.numpy()
  beta = np.zeros_like(var) if layer.beta is None else layer.beta.numpy()
  scale = gamma / np.sqrt(var + layer.epsilon)
  offset = beta - layer.moving_mean.numpy() * scale
  return scale, offset


def fold_batch_norm_statistics(layers, grid_bits=None):
  """Folds each batch norm layer's moving statistics into its scale and offset.

  In inference mode batch norm is `x * s + t` (`batch_norm_scale_offset`).
  The layer gets `mean = 0` and `var = 1`, constant vectors that the file
  stores as one number each (see `pack_floats`), and
  `gamma = s * sqrt(1 + eps)`, `beta = t`, computed in float64: its
  inference outputs stay the same to float32 rounding, and two of its four
  vectors cost almost nothing. Its
  training-mode behaviour is untouched (batch statistics), but the moving
  statistics start afresh.

  With `grid_bits`, `gamma` and `beta` are then each rounded to their
  power-of-two grid of that many binary places below their largest
  magnitude (`grid.grid_ste`), which `pack_floats` stores in about
  `grid_bits` + 2 bits a value instead of 16 or 32: lossy, each value
  within 2**-(grid_bits + 1) times its vector's largest magnitude. A channel
  whose input did not vary in training (variance below 1e-4 epsilon: the
  output of a zero kernel) has a scale of up to 1/sqrt(epsilon) that
  multiplies nothing but `x - mean`, about 0; its scale is first clipped to
  the other channels' largest, the difference moved into its offset so that
  the output at the mean stays the same, so that one such channel does not
  coarsen the grid of all the others.

  Args:
    layers: Layers of a plain (decompressed) model; those that are not batch
      norm layers with both `center` and `scale` are left alone. Modified in
      place.
    grid_bits: None, or the binary places (>= 1) of the grids.
  """
  for layer in layers:
    if not (isinstance(layer, keras.layers.BatchNormalization) and
            layer.center and layer.scale):
      continue
    scale, offset = batch_norm_scale_offset(layer)
    if grid_bits:
      constant = layer.moving_variance.numpy() < _CONSTANT_VARIANCE * (
          layer.epsilon)
      if constant.any():
        peak = np.abs(scale[~constant]).max(initial=0)
        clipped = np.where(constant, np.clip(scale, -peak, peak), scale)
        offset = offset + (scale - clipped) * layer.moving_mean.numpy()
        scale = clipped
    gamma = (scale * np.sqrt(1 + layer.epsilon)).astype(np.float32)
    beta = offset.astype(np.float32)
    if grid_bits:
      # The grid training puts decoders and biases on (its forward value).
      gamma = grid.grid_ste(tf.constant(gamma), grid_bits).numpy()
      beta = grid.grid_ste(tf.constant(beta), grid_bits).numpy()
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
    layer.moving_variance.assign(tf.ones_like(layer.moving_variance))


def pack_floats(layers, kernels, float_dtype):
  """Header entries and FLTS payload of the weights that stay float.

  Args:
    layers: The decompressed model's layers holding weights, in file order.
    kernels: `(layer name, weight index)` of the coded kernels, left out.
    float_dtype: "float32" or "float16", for the weights on no grid.

  Returns:
    `(entries, payload)`: the header's `float_params` and the FLTS bytes.

  Raises:
    ValueError: for a weight that is not float32, or overflows float16.
  """
  dtype = FLOAT_DTYPES[float_dtype]
  entries, payload = [], []
  for layer in layers:
    for index, weight in enumerate(layer.weights):
      if (layer.name, index) in kernels:
        continue
      if weight.dtype != tf.float32:
        raise ValueError(f"Weight {weight.name!r} is {weight.dtype.name}; the "
                         "compressed format stores float32 weights only.")
      value = weight.numpy()
      entry = dict(layer=layer.name, index=index, shape=list(value.shape))
      stored = value.astype(dtype).tobytes()
      fill = _fill_value(value)
      # A fill's header entry is no longer than a grid's ([e, k, n]).
      filled = fill is not None and len(json.dumps(fill)) < len(stored)
      coded = None if filled else _grid_coded(value, offset=True)
      if filled:
        entry["fill"] = fill  # JSON reads a float's repr back exactly.
        stored = b""
      elif coded and len(coded[2]) < len(stored):
        entry["grid"] = [coded[0], coded[1], len(coded[2])] + (
            [coded[3]] if coded[3] else [])
        stored = coded[2]
      elif not np.array_equal(np.isfinite(value.astype(dtype)),
                              np.isfinite(value)):
        raise ValueError(f"Weight {weight.name!r} overflows float16; save "
                         "without float16.")
      entries.append(entry)
      payload.append(stored)
  return entries, b"".join(payload)


def pack_decoder(decoder):
  """`(header entry or None, DECO payload)` of a group's `KernelDecoder`."""
  matrix = np.asarray(decoder.matrix.numpy(), "<f4")
  unit = decoder.unit.numpy()
  scale = np.asarray([decoder.scale.numpy()], "<f4")
  coded = _grid_coded(unit)
  # The reader computes `scale * unit` as training does: float32 products.
  if (coded and np.array_equal(scale * unit, matrix) and
      4 + len(coded[2]) < matrix.nbytes):
    return [coded[0], coded[1]], scale.tobytes() + coded[2]
  return None, matrix.tobytes()


def _grid_values(data, count, exponent, k, section, offset=0):
  """float32 `q * 2**exponent` of `count` integers `q - offset`, Rice coded."""
  if count > 8 * len(data):  # Each value takes at least one bit.
    fail(section, f"{len(data)} bytes cannot hold {count} grid values")
  with reading(section, (rice.RiceError,)):
    q = rice.decode(data, count, k) + offset
  if count and np.abs(q).max() >= MAX_GRID_INTEGER:
    fail(section, "a grid value is not a float32")
  return (q * 2.0**exponent).astype(np.float32)


def unpack_decoder(payload, positions, entry, section):
  """The float32 decoder matrix of a DECO payload.

  Args:
    payload: The section's bytes.
    positions: The group's kernel positions.
    entry: The group's `decoder` header entry (`[exponent, k]`), or None
      for a float32 matrix.
    section: The section's name, for errors.
  """
  if entry is None:
    size = 4 * positions**2
    if len(payload) != size:
      fail(section, f"holds {len(payload)} bytes, a {positions}x{positions} "
            f"float32 matrix {size}")
    matrix = np.frombuffer(payload, "<f4")
  else:
    if len(payload) < 4:
      fail(section, f"holds {len(payload)} bytes, less than its float32 scale")
    unit = _grid_values(payload[4:], positions**2, *entry, section)
    matrix = np.frombuffer(payload[:4], "<f4") * unit
  return matrix.reshape(positions, positions)


def unpack_floats(payload, params, float_dtype):
  """The float32 arrays of a FLTS payload, in `params` (header) order."""
  dtype = FLOAT_DTYPES[float_dtype]
  counts = [math.prod(p["shape"]) for p in params]
  sizes = [0 if "fill" in p else p["grid"][2] if "grid" in p
           else n * dtype.itemsize for p, n in zip(params, counts)]
  if len(payload) != sum(sizes):
    fail("float_params", f"holds {len(payload)} bytes, the header's "
          f"{len(counts)} tensors {sum(sizes)}")
  arrays, start = [], 0
  for p, n, size in zip(params, counts, sizes):
    data = payload[start:start + size]
    if "fill" in p:
      values = np.full(n, p["fill"], np.float32)
    elif "grid" in p:
      values = _grid_values(data, n, p["grid"][0], p["grid"][1],
                            "float_params", *p["grid"][3:])
    else:
      values = np.frombuffer(data, dtype).astype(np.float32)
    arrays.append(values.reshape(p["shape"]))
    start += size
  return arrays
