"""The range coders a compressed file's latents may be coded with, by name.

Both code an integer `(rows, positions)` matrix with one table per kernel
position, the tables being tensorflow-compression's flat `cdf` layout that
the file stores (`codec.tables_from_frequencies`): per position `-precision`,
then the cumulative integer frequencies of the values `offset, offset + 1,
...`, whose last step is tfc's overflow escape.

* `"tensorflow-compression"`: `tfc.ContinuousBatchedEntropyModel` on those
  tables, as every file of format versions 1 to 6 is coded. It is the
  default where tensorflow-compression is installed (the pinned stack).
* `"constriction"`: constriction's `stream.queue.RangeEncoder` (32-bit words,
  24-bit probabilities), with, per position, the concrete model
  `stream.model.Categorical(frequencies, perfect=False)` built from that
  position's integer frequencies without the escape's, the values shifted to
  `0 .. n-1`. The matrix is coded column by column: all rows of position 0,
  then of position 1, ... (one model per call, the coder's fast path). A
  position whose table has a single value takes no bits (constriction refuses
  a one-symbol model; the value is known). Its bytes are the coder's words as
  little-endian uint32. It needs no TensorFlow op, so it is the default where
  tensorflow-compression is missing (TensorFlow 2.16 and later, for which no
  tensorflow-compression release exists).

Both coders decode the same tables to the same latents; only the bytes
differ (by a small fraction of a percent in size). Encoding refuses, for
either coder, a symbol its position's table gives no frequency: tfc would
escape a value outside the table (and silently miscode a value of frequency
0), constriction cannot code it. A file whose coder is not installed raises
`CoderUnavailableError`, which is not a `CorruptFileError`: the file is fine,
the stack lacks a package.
"""

import importlib

import numpy as np
import tensorflow as tf

from lilnetx_tf import compat

__all__ = [
    "CODERS",
    "CONSTRICTION",
    "CoderUnavailableError",
    "DecodeError",
    "TENSORFLOW_COMPRESSION",
    "available_coders",
    "check_coder",
    "coder_module",
    "decode",
    "default_coder",
    "encode",
    "fewest_bits",
    "position_frequencies",
    "require",
    "resolve",
]

TENSORFLOW_COMPRESSION = "tensorflow-compression"
CONSTRICTION = "constriction"
CODERS = (TENSORFLOW_COMPRESSION, CONSTRICTION)
# Per coder: the module that implements it, and what to install for it.
_PACKAGES = {TENSORFLOW_COMPRESSION: ("tensorflow_compression",
                                      "tensorflow-compression==2.14.1"),
             CONSTRICTION: ("constriction", "constriction==0.5.0")}
# What the message adds to the install command: tfc pins its TensorFlow.
_INSTALL_NOTES = {TENSORFLOW_COMPRESSION: " (with TensorFlow 2.14; there is "
                                          "none for TensorFlow 2.16+)",
                  CONSTRICTION: ""}
# constriction's range coder quantizes each model to 24-bit probabilities.
_CONSTRICTION_PRECISION = 24


class DecodeError(ValueError):
  """A range-coded bit string does not decode with its tables."""


class CoderUnavailableError(ImportError):
  """The range coder a file (or a call) needs is not installed.

  Not a `CorruptFileError`: the file may be fine, the stack lacks a package.

  Attributes:
    coder: The coder's name.
    package: The pip requirement that installs it.
    file: The file that needs it, when known.
  """

  def __init__(self, coder, file=None):
    self.coder = coder
    self.file = file
    module, self.package = _PACKAGES[coder]
    target = next((c for c in available_coders() if c != coder),
                  CONSTRICTION if coder != CONSTRICTION else
                  TENSORFLOW_COMPRESSION)
    where = f" (needed by {str(file)!r})" if file is not None else ""
    source = str(file) if file is not None else "IN.lnx"
    super().__init__(
        f"The range coder {coder!r}{where} is not installed: `pip install "
        f"{self.package}`{_INSTALL_NOTES[coder]}, or convert the file on a "
        "stack that has it: "
        f"`python -m export.bitstream --recode={source} --coder={target} "
        f"--output=OUT.lnx` (installed: `lilnetx-export-bitstream ...`).",
        name=module)


def check_coder(coder):
  """Raises a `ValueError` listing the known coders unless `coder` is one."""
  if coder not in CODERS:
    raise ValueError(f"Unknown range coder {coder!r}; known: "
                     f"{', '.join(CODERS)}.")


_IMPORTED = {}


def coder_module(coder):
  """The module implementing `coder`, or None where it is not installed.

  The one place that decides whether a coder is available (tests replace it
  to simulate a stack without one).
  """
  check_coder(coder)
  if coder == TENSORFLOW_COMPRESSION:
    return compat.tfc
  if coder not in _IMPORTED:
    try:
      _IMPORTED[coder] = importlib.import_module(_PACKAGES[coder][0])
    except ImportError:
      _IMPORTED[coder] = None
  return _IMPORTED[coder]


def available_coders():
  """The names of the coders installed here, in `CODERS` order."""
  return tuple(c for c in CODERS if coder_module(c) is not None)


def default_coder():
  """tensorflow-compression where it is installed, else constriction.

  Raises:
    CoderUnavailableError: if neither is installed.
  """
  available = available_coders()
  if not available:
    raise CoderUnavailableError(CONSTRICTION)
  return available[0]


def require(coder):
  """The module of `coder`; `CoderUnavailableError` if it is not installed.

  Raises:
    ValueError: for an unknown coder name.
  """
  module = coder_module(coder)
  if module is None:
    raise CoderUnavailableError(coder)
  return module


def resolve(coder):
  """The name of `coder`, or of the default coder for None; installed.

  Raises:
    ValueError: for an unknown coder name.
    CoderUnavailableError: if the coder is not installed.
  """
  coder = default_coder() if coder is None else coder
  require(coder)
  return coder


def position_frequencies(cdf, cdf_offset):
  """Per position `(offset, frequencies)` of tfc-layout tables.

  The frequencies are the steps of the position's CDF without the last one
  (the overflow escape's), as int64: those of the values `offset, offset +
  1, ...`. The tables must be well formed (`tables.check_tables`).
  """
  cdf = np.asarray(cdf, np.int64)
  starts = np.flatnonzero(cdf < 0)
  ends = np.append(starts[1:], len(cdf))
  return [(int(offset), np.diff(cdf[start + 1:end])[:-1])
          for start, end, offset in zip(starts, ends,
                                        np.asarray(cdf_offset, np.int64))]


def fewest_bits(coder, cdf, cdf_offset):
  """Per position, the fewest bits any value costs with `coder`: a bound.

  A file reader checks a LATS section's length against it before decoding.
  tfc codes a value of frequency f in `precision - log2(f)` bits; constriction
  rescales the frequencies without the escape's to 24-bit probabilities,
  every value getting at least one unit, so the most probable value's
  probability is at most its share plus `n` units (none for a position of a
  single value, which takes no bits).
  """
  cdf, bits = np.asarray(cdf, np.int64), []
  for (_, freq), start in zip(position_frequencies(cdf, cdf_offset),
                              np.flatnonzero(cdf < 0)):
    most = int(freq.max())
    if coder == TENSORFLOW_COMPRESSION:
      bits.append(-int(cdf[start]) - np.log2(most))
    elif len(freq) < 2:
      bits.append(0.0)
    else:
      share = most / int(freq.sum()) + len(freq) * 2.0**-_CONSTRICTION_PRECISION
      bits.append(-np.log2(min(1.0, share)))
  return np.asarray(bits, np.float64)


def _integer_symbols(symbols, positions):
  """`symbols` as an int64 `(rows, positions)` matrix, checked."""
  symbols = np.asarray(symbols)
  if symbols.ndim != 2 or symbols.shape[1] != positions:
    raise ValueError(f"Expected symbols of shape (rows, {positions}), got "
                     f"{symbols.shape}.")
  if not np.issubdtype(symbols.dtype, np.integer):
    if not np.all(np.isfinite(symbols)) or np.any(symbols != np.round(symbols)):
      raise ValueError("The symbols to range code are not all integers.")
  return symbols.astype(np.int64, copy=False)


def _relative_columns(symbols, tables):
  """The symbols less their offsets, int32, position-major; checked.

  Refuses any symbol its position's table gives no frequency, for both
  coders, before encoding: constriction cannot code a value outside its
  table, tfc would code it through the escape (or, for a value of frequency 0
  inside its table, silently code another one), and a table fitted to the
  latents (`codec.histogram_tables`) covers them all. Position-major: each
  position's symbols are contiguous, as constriction codes them.

  Args:
    symbols: int64 `(rows, positions)` matrix.
    tables: `position_frequencies` of the tables.
  """
  offsets = np.array([offset for offset, _ in tables], np.int64)
  sizes = np.array([len(freq) for _, freq in tables], np.int64)
  relative = symbols - offsets
  outside = (relative.min(axis=0) < 0) | (relative.max(axis=0) >= sizes)
  if outside.any():
    position = int(np.argmax(outside))
    column, offset = symbols[:, position], offsets[position]
    value = int(column.min() if column.min() < offset else column.max())
    raise ValueError(
        f"Symbol {value} at position {position} is outside its range-coding "
        f"table, which covers {offset} to {offset + sizes[position] - 1}.")
  columns = np.ascontiguousarray(relative.T, np.int32)  # Now in range.
  for position, (column, (offset, freq)) in enumerate(zip(columns, tables)):
    if freq.all():  # Every value in range codes.
      continue
    zero = freq[column] == 0
    if zero.any():
      raise ValueError(
          f"Symbol {int(column[zero.argmax()]) + offset} at position "
          f"{position} has frequency 0 in its range-coding table.")
  return columns


def _tfc_model(cdf, cdf_offset):
  cdf_offset = np.asarray(cdf_offset, np.int32)
  return compat.tfc.ContinuousBatchedEntropyModel(
      prior_shape=cdf_offset.shape, coding_rank=2, compression=True,
      stateless=True, cdf=tf.constant(cdf, tf.int32),
      cdf_offset=tf.constant(cdf_offset), offset_heuristic=False)


def _constriction_model(module, freq):
  # Integer frequencies as they are: constriction normalizes them itself, the
  # same way on encoding and decoding.
  return module.stream.model.Categorical(freq.astype(np.float64),
                                         perfect=False)


def encode(coder, symbols, cdf, cdf_offset):
  """Range codes an integer `(rows, positions)` matrix into bytes.

  Args:
    coder: A coder's name (`CODERS`).
    symbols: Integers (any integer dtype, or integer-valued floats), each in
      its position's table with a nonzero frequency.
    cdf: int32 tables, tfc layout (`codec.tables_from_frequencies`).
    cdf_offset: int32 offsets, one per position.

  Returns:
    The coded bytes (empty for no rows).

  Raises:
    ValueError: for an unknown coder, symbols of the wrong shape or not
      integers, or a symbol its table does not code.
    CoderUnavailableError: if the coder is not installed.
  """
  module = require(coder)
  symbols = _integer_symbols(symbols, len(cdf_offset))
  if not symbols.size:
    return b""
  tables = position_frequencies(cdf, cdf_offset)
  columns = _relative_columns(symbols, tables)
  if coder == TENSORFLOW_COMPRESSION:
    strings = _tfc_model(cdf, cdf_offset).compress(
        tf.constant(symbols, tf.float32))
    return bytes(strings.numpy())
  encoder = module.stream.queue.RangeEncoder()
  for column, (_, freq) in zip(columns, tables):
    if len(freq) > 1:
      encoder.encode(column, _constriction_model(module, freq))
  return encoder.get_compressed().astype("<u4").tobytes()


def decode(coder, data, rows, cdf, cdf_offset):
  """Inverse of `encode`: an int32 `(rows, positions)` matrix.

  Raises:
    DecodeError: where constriction finds `data` invalid for the tables (not
      whole words, data the model cannot have produced, a value of
      frequency 0, words left over). tfc reports bad data as
      `tf.errors.InvalidArgumentError` (`codec.decompress_latents` turns it
      into a `DecodeError`).
    CoderUnavailableError: if the coder is not installed.
  """
  module = require(coder)
  positions = len(cdf_offset)
  if rows == 0:
    return np.zeros((0, positions), np.int32)
  if coder == TENSORFLOW_COMPRESSION:
    values = _tfc_model(cdf, cdf_offset).decompress(
        tf.constant(data, tf.string), [rows])
    return np.asarray(values.numpy(), np.int32).reshape(rows, positions)
  if len(data) % 4:
    raise DecodeError(f"{len(data)} bytes are not whole 32-bit words.")
  decoder = module.stream.queue.RangeDecoder(
      np.frombuffer(data, "<u4").astype(np.uint32))
  # Position-major, as decoded (each position's rows contiguous); the
  # `(rows, positions)` matrix returned is its transpose, a view.
  out = np.empty((positions, rows), np.int32)
  for position, (offset, freq) in enumerate(
      position_frequencies(cdf, cdf_offset)):
    if len(freq) < 2:
      out[position] = offset
      continue
    try:
      column = decoder.decode(_constriction_model(module, freq), rows)
    except AssertionError as e:  # constriction's report of invalid data.
      raise DecodeError(f"position {position}: {e}") from None
    # The encoder never codes a value of frequency 0 (constriction could).
    if not freq.all() and np.any(freq[column] == 0):
      raise DecodeError(f"position {position} decodes to a value of "
                        "frequency 0")
    np.add(column, offset, out=out[position], casting="unsafe")
  # The encoder's words must all have been read, and end where the latents
  # do (constriction's check; it misses a word or so appended, which the
  # file's CRC guards against anyway).
  if not decoder.maybe_exhausted():
    raise DecodeError("the data does not end where the latents do")
  return out.T
