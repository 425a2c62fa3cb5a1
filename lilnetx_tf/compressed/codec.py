"""Range coding of the integer latents with tables fitted to them.

This is the *compressed* form of a weight: per group, one range-coded bit
string of all its layers' integer latents in slice layout, plus the integer
coding tables it was coded with: per kernel position, the quantized histogram
of the latents coded (`histogram_tables`), so that the coded size is within a
fraction of a percent of their factorized empirical entropy (the learned
priors drive training; they need not match the final latents exactly).
`compress_latents` and `decompress_latents` are exact inverses; the file
format (`lilnetx_tf.compressed.fileformat`) stores what they produce. The
range coder is chosen by name (`coders`: tensorflow-compression's or
constriction's, the default being `coders.default_coder()`); both decode the
same tables to the same latents.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed.coders import DecodeError
from lilnetx_tf.method import groups

__all__ = [
    "CodedGroup",
    "DecodeError",
    "compress_latents",
    "decompress_latents",
    "encode_symbols",
    "decode_symbols",
    "rounded_latents",
    "empirical_entropy_bits",
    "group_symbols",
    "histogram_tables",
    "quantize_counts",
    "tables_from_frequencies",
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
    coder: The range coder that made `data` (a name in `coders.CODERS`).
  """
  group: str
  layers: list
  shapes: list
  cdf: np.ndarray
  cdf_offset: np.ndarray
  data: bytes
  coder: str

  @property
  def positions(self):
    return int(self.cdf_offset.shape[0])

  @property
  def num_latents(self):
    return int(sum(np.prod(s) for s in self.shapes))


PRECISION = 16  # Bits of the range coder's probability tables (tfc's most).


def quantize_counts(counts, precision=PRECISION):
  """Integer frequencies summing to `2**precision - 1` that fit `counts`.

  Every symbol that occurs gets a frequency of at least 1, every symbol that
  does not gets 0, and the rest of the rounding is settled greedily where it
  costs the fewest bits (a frequency `f` for a symbol seen `c` times costs
  `c * log2(total / f)` bits).

  Args:
    counts: 1-D non-negative integer counts, at least one positive.
    precision: Table precision in bits.

  Returns:
    An int64 array of frequencies, same length.

  Raises:
    ValueError: if more symbols occur than the precision can represent.
  """
  counts = np.asarray(counts, np.int64)
  total = (1 << precision) - 1  # One unit is left for the overflow escape.
  present = counts > 0
  if present.sum() > total:
    raise ValueError(f"{int(present.sum())} distinct values do not fit "
                     f"range-coding tables of precision {precision}.")
  freq = np.where(present, np.maximum(
      1, np.floor(counts * (total / counts.sum()))), 0).astype(np.int64)
  deficit = total - int(freq.sum())
  if deficit > 0:  # Flooring lost less than one unit per symbol present.
    gain = np.where(present, counts * np.log1p(1 / np.maximum(freq, 1)),
                    -np.inf)
    freq[np.argsort(-gain, kind="stable")[:deficit]] += 1
  while deficit < 0:  # Rare symbols raised to 1 took units from the others.
    spare = np.maximum(freq - 1, 0)  # Absent symbols (0) have none.
    take = np.floor(-deficit * spare / spare.sum()).astype(np.int64)
    if not take.any():  # The last few units: where they cost the fewest bits.
      with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(freq > 1, counts * np.log(freq / (freq - 1)), np.inf)
      take[np.argmin(loss)] = 1
    freq -= take
    deficit = total - int(freq.sum())
  return freq


def tables_from_frequencies(frequencies, offsets, precision=PRECISION):
  """tensorflow-compression's flat `cdf` from per-position frequencies.

  Args:
    frequencies: One 1-D integer array per position, the frequencies of the
      values `offset, offset + 1, ...`; each must sum to less than
      `2**precision` (the remainder is the overflow escape's frequency).
    offsets: The first value of each position.
    precision: Table precision in bits: one for all positions, or one per
      position.

  Returns:
    `(cdf, cdf_offset)` int32 arrays: per position `-precision`, then the
    cumulative frequencies from 0 to `2**precision`, the last step being the
    overflow escape.
  """
  parts = []
  precisions = np.broadcast_to(precision, (len(frequencies),))
  for freq, bits in zip(frequencies, precisions):
    freq = np.asarray(freq, np.int64)
    overflow = (1 << int(bits)) - int(freq.sum())
    parts += [[-bits], [0], np.cumsum(np.append(freq, overflow))]
  return (np.concatenate(parts).astype(np.int32),
          np.asarray(offsets, np.int32))


def _varint_bytes(values):
  """Bytes of non-negative integers as unsigned LEB128 numbers."""
  values = np.asarray(values, np.int64)
  return int(np.sum(1 + (values >= 2**7) + (values >= 2**14) +
                    (values >= 2**21) + (values >= 2**28)))


def _column_table(counts):
  """Frequencies and precision of one position's table.

  Each position gets the precision that makes its table plus its coded
  latents smallest, among those that code the latents within 2% of their
  entropy: a short column (a kernel position of a small layer) gains more
  from a smaller table than it loses in coding.
  """
  counts = np.asarray(counts, np.int64)
  present = counts[counts > 0]
  entropy = float(np.sum(present * np.log2(counts.sum() / present)))
  best = None
  lowest = max(1, int(np.ceil(np.log2(len(present) + 1))))
  for precision in range(lowest, PRECISION + 1):
    freq = quantize_counts(counts, precision)
    bits = float(np.sum(present * (precision - np.log2(freq[counts > 0]))))
    size = bits / 8 + _varint_bytes(freq)
    if bits <= 1.02 * entropy + 2 and (best is None or size < best[0]):
      best = (size, freq, precision)
  if best is None:
    return quantize_counts(counts), PRECISION
  return best[1], best[2]


def histogram_tables(symbols):
  """Range-coding tables fitted to an integer `(rows, positions)` matrix.

  One table per position, over the values from the column's minimum to its
  maximum, with the column's histogram quantized by `quantize_counts`:
  coding the matrix with them costs its factorized empirical entropy plus
  the quantization's small loss. Values that do not occur get frequency 0
  and are never coded.

  Returns:
    `(cdf, cdf_offset, frequencies)`: the tfc tables and, per position, the
    frequencies they were built from (what the file stores).
  """
  symbols = np.asarray(symbols, np.int64)
  frequencies, offsets, precisions = [], [], []
  for column in symbols.T:
    low = int(column.min()) if column.size else 0
    counts = np.bincount(column - low) if column.size else np.ones(1, np.int64)
    freq, precision = _column_table(counts)
    frequencies.append(freq)
    precisions.append(precision)
    offsets.append(low)
  cdf, cdf_offset = tables_from_frequencies(frequencies, offsets, precisions)
  return cdf, cdf_offset, frequencies


def encode_symbols(symbols, cdf, cdf_offset, coder=None):
  """Range codes an integer `(rows, positions)` matrix into bytes.

  Args:
    symbols: The matrix; every symbol must have a nonzero frequency in its
      position's table (`coders.encode`).
    cdf: int32 tables, tfc layout.
    cdf_offset: int32 offsets, one per position.
    coder: The range coder's name; None: `coders.default_coder()`.

  Raises:
    ValueError: for symbols of the wrong shape, or that their tables do not
      code, or an unknown coder.
    coders.CoderUnavailableError: if the coder is not installed.
  """
  return coders.encode(coders.resolve(coder), symbols, cdf, cdf_offset)


def decode_symbols(data, rows, cdf, cdf_offset, coder=None):
  """Inverse of `encode_symbols`: an int32 `(rows, positions)` matrix."""
  return coders.decode(coders.resolve(coder), data, rows, cdf, cdf_offset)


def empirical_entropy_bits(symbols):
  """Factorized empirical entropy of an integer `(rows, positions)` matrix.

  The bits needed to code the matrix with one table per position that fits
  its column's histogram exactly: sum over positions of rows * H(column).
  The bound that coding with fitted tables approaches.
  """
  symbols = np.asarray(symbols)
  bits = 0.0
  for column in symbols.reshape(symbols.shape[0], -1).T:
    _, counts = np.unique(column, return_counts=True)
    bits -= float(np.sum(counts * np.log2(counts / column.size)))
  return bits


def group_symbols(model):
  """Group name -> its integer slice matrix (the symbols that get coded)."""
  latents = rounded_latents(model)
  return {g: np.concatenate([groups.to_slices(latents[l.name])
                             for l in layers], axis=0).astype(np.int64)
          for g, layers in model.group_layers.items()}


def rounded_latents(model):
  """Layer name -> the rounded latent kernel (float32 integers)."""
  return {l.name: np.round(l.latent.numpy()) for l in model.latent_layers}


def compress_latents(model, coder=None):
  """Range codes every group of a `LilNetXModel`.

  Each kernel position's table is the quantized histogram of the latents
  being coded (`histogram_tables`), so the coded size is their factorized
  empirical entropy plus a few bytes, whatever the priors' fit.

  Args:
    model: A `LilNetXModel`.
    coder: The range coder's name; None: `coders.default_coder()`.

  Returns:
    A list of `CodedGroup`, one per group, in sorted group order.

  Raises:
    coders.CoderUnavailableError: if the coder is not installed.
  """
  coder = coders.resolve(coder)  # Before the histograms, which take a while.
  symbols = group_symbols(model)
  coded = []
  for group in sorted(model.group_layers):
    layers = model.group_layers[group]
    cdf, cdf_offset, _ = histogram_tables(symbols[group])
    coded.append(CodedGroup(
        group=group, layers=[l.name for l in layers],
        shapes=[tuple(int(d) for d in l.latent.shape) for l in layers],
        cdf=cdf, cdf_offset=cdf_offset,
        data=encode_symbols(symbols[group], cdf, cdf_offset, coder),
        coder=coder))
  return coded


def decompress_latents(coded_groups, coder=None):
  """Decodes `CodedGroup`s into layer name -> integer latent kernel (float32).

  Args:
    coded_groups: `CodedGroup`s, each decoded with its own `coder`.
    coder: Where given, the coder every group must have been coded with
      (a `ValueError` otherwise); None: any.

  Raises:
    DecodeError: if a bit string does not decode to the declared shapes.
    coders.CoderUnavailableError: if a group's coder is not installed.
  """
  latents = {}
  for coded in coded_groups:
    if coder is not None and coded.coder != coder:
      raise ValueError(f"Group {coded.group!r} is coded with {coded.coder!r}, "
                       f"not {coder!r}.")
    rows = [int(np.prod(s)) // groups.num_positions(s) for s in coded.shapes]
    try:
      symbols = decode_symbols(coded.data, sum(rows), coded.cdf,
                               coded.cdf_offset, coded.coder)
    except tf.errors.InvalidArgumentError as e:  # What tfc reports.
      raise DecodeError(f"Group {coded.group!r}: the range-coded latents do "
                        f"not decode ({e.message}).") from None
    except DecodeError as e:  # What `coders` finds with constriction.
      raise DecodeError(f"Group {coded.group!r}: the range-coded latents do "
                        f"not decode ({e}).") from None
    start = 0
    for name, shape, n in zip(coded.layers, coded.shapes, rows):
      latents[name] = groups.from_slices(
          symbols[start:start + n].astype(np.float32), shape)
      start += n
  return latents
