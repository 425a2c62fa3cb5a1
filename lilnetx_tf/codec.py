"""Range coding of the integer latents with the learned priors.

This is the *compressed* form of a weight: per group, one range-coded bit
string of all its layers' integer latents in slice layout, plus the integer
coding tables it was coded with. `compress_latents` and `decompress_latents`
are exact inverses; the file format (`lilnetx_tf.fileformat`) stores what they
produce.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from lilnetx_tf import groups

__all__ = [
    "CodedGroup",
    "compress_latents",
    "decompress_latents",
    "encode_symbols",
    "decode_symbols",
    "rounded_latents",
]


@dataclasses.dataclass
class CodedGroup:
  """One group's range-coded latents.

  Attributes:
    group: Group name (e.g. `"conv3x3"`).
    layers: Names of the group's layers, in coding order.
    shapes: Their kernel shapes.
    cdf: int32 range-coding table (tfc layout; embeds the precision).
    cdf_offset: int32 offsets, one per kernel position.
    data: The range-coded bit string.
  """
  group: str
  layers: list
  shapes: list
  cdf: np.ndarray
  cdf_offset: np.ndarray
  data: bytes

  @property
  def positions(self):
    return int(self.cdf_offset.shape[0])

  @property
  def num_latents(self):
    return int(sum(np.prod(s) for s in self.shapes))


def _coder(cdf, cdf_offset):
  cdf_offset = np.asarray(cdf_offset, np.int32)
  return tfc.ContinuousBatchedEntropyModel(
      prior_shape=cdf_offset.shape, coding_rank=2, compression=True,
      stateless=True, cdf=tf.constant(cdf, tf.int32),
      cdf_offset=tf.constant(cdf_offset), offset_heuristic=False)


def encode_symbols(symbols, cdf, cdf_offset):
  """Range codes an integer `(rows, positions)` matrix into bytes."""
  symbols = np.asarray(symbols)
  if symbols.ndim != 2 or symbols.shape[1] != len(cdf_offset):
    raise ValueError(f"Expected symbols of shape (rows, {len(cdf_offset)}), "
                     f"got {symbols.shape}.")
  if not symbols.size:
    return b""
  strings = _coder(cdf, cdf_offset).compress(
      tf.constant(symbols, tf.float32))
  return bytes(strings.numpy())


def decode_symbols(data, rows, cdf, cdf_offset):
  """Inverse of `encode_symbols`: an int32 `(rows, positions)` matrix."""
  positions = len(cdf_offset)
  if rows == 0:
    return np.zeros((0, positions), np.int32)
  values = _coder(cdf, cdf_offset).decompress(
      tf.constant(data, tf.string), [rows])
  return np.asarray(values.numpy(), np.int32).reshape(rows, positions)


def rounded_latents(model):
  """Layer name -> the rounded latent kernel (float32 integers)."""
  return {l.name: np.round(l.latent.numpy()) for l in model.latent_layers}


def compress_latents(model):
  """Range codes every group of a `LilNetXModel` with its prior.

  Args:
    model: A `LilNetXModel`.

  Returns:
    A list of `CodedGroup`, one per group, in sorted group order.
  """
  latents = rounded_latents(model)
  coded = []
  for group in sorted(model.group_layers):
    layers = model.group_layers[group]
    cdf, cdf_offset = model.priors[group].coding_tables()
    symbols = np.concatenate(
        [groups.to_slices(latents[l.name]) for l in layers], axis=0)
    coded.append(CodedGroup(
        group=group, layers=[l.name for l in layers],
        shapes=[tuple(int(d) for d in l.latent.shape) for l in layers],
        cdf=cdf, cdf_offset=cdf_offset,
        data=encode_symbols(symbols, cdf, cdf_offset)))
  return coded


def decompress_latents(coded_groups):
  """Decodes `CodedGroup`s into layer name -> integer latent kernel (float32).

  Raises:
    ValueError: if a bit string does not decode to the declared shapes.
  """
  latents = {}
  for coded in coded_groups:
    rows = [int(np.prod(s)) // groups.num_positions(s) for s in coded.shapes]
    try:
      symbols = decode_symbols(coded.data, sum(rows), coded.cdf,
                               coded.cdf_offset)
    except tf.errors.OpError as e:
      raise ValueError(f"Group {coded.group!r}: the range-coded latents do not "
                       f"decode ({e.message}).") from None
    start = 0
    for name, shape, n in zip(coded.layers, coded.shapes, rows):
      latents[name] = groups.from_slices(
          symbols[start:start + n].astype(np.float32), shape)
      start += n
  return latents
