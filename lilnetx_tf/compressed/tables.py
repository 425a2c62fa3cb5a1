"""The coding tables of a group in the file (TABL), packed and unpacked.

Version 3 on stores, per kernel position, tensorflow-compression's
range-coding table as its frequencies (LEB128 numbers, deflated; see the
byte layout in `lilnetx_tf.compressed.fileformat`); versions 1 and 2 stored
int32 CDFs. `unpack_tables` reads either and `check_tables` checks the
result against the range coder's invariants before it is used.
"""

import zlib

import numpy as np

from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed.errors import fail
from lilnetx_tf.compressed.errors import inflate

__all__ = ["MAX_CDF_LENGTH", "check_tables", "pack_tables", "unpack_tables"]

# Far above any real model; keeps a hostile header from making readers
# allocate without end.
MAX_CDF_LENGTH = 2**24

# The most deflate can expand (about 1032:1), with room to spare.
_ZLIB_MAX_RATIO = 1100


def _varints(values):
  """Unsigned LEB128 bytes of non-negative integers."""
  out = bytearray()
  for value in values:
    value = int(value)
    while value >= 0x80:
      out.append(value & 0x7F | 0x80)
      value >>= 7
    out.append(value)
  return bytes(out)


def _read_varints(raw, section):
  """Inverse of `_varints` (at most 5 bytes a value), vectorised."""
  data = np.frombuffer(raw, np.uint8)
  if data.size and data[-1] & 0x80:
    fail(section, "the tables end inside a number")
  ends = np.flatnonzero(data < 0x80)
  starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
  lengths = ends - starts + 1
  if lengths.size and lengths.max() > 5:
    fail(section, "a number in the tables is too long")
  values = np.zeros(len(ends), np.int64)
  for k in range(5):
    rows = np.flatnonzero(lengths > k)
    values[rows] |= (data[starts[rows] + k] & 0x7F).astype(np.int64) << 7 * k
  return values


def pack_tables(cdf, cdf_offset):
  """The TABL payload (version 3) of tfc range-coding tables.

  Per position: the precision, the offset (zigzag), the number of values
  before the overflow escape and their frequencies (the steps of the CDF; the
  escape's is the rest of `2**precision`), all as unsigned LEB128 numbers,
  deflated.
  """
  cdf = np.asarray(cdf, np.int64)
  starts = np.flatnonzero(cdf < 0)
  numbers = []
  for start, end, offset in zip(starts, np.append(starts[1:], len(cdf)),
                                np.asarray(cdf_offset, np.int64)):
    steps = np.diff(cdf[start + 1:end])[:-1]  # Without the escape's.
    numbers += [-cdf[start], 2 * offset if offset >= 0 else -2 * offset - 1,
                len(steps)] + list(steps)
  return zlib.compress(_varints(numbers), 9)


def unpack_tables(payload, cdf_length, positions, section, version):
  """Inflates a TABL payload into `(cdf, cdf_offset)` int32 arrays."""
  if version >= 3:
    # At most 3 bytes per CDF value, 5 for an offset.
    expected = 3 * cdf_length + 5 * positions
  else:
    expected = 4 * (cdf_length + positions)
  if expected > _ZLIB_MAX_RATIO * len(payload) + 1024:
    fail(section, f"a {len(payload)}-byte zlib stream cannot hold the "
          f"declared {cdf_length} table values")
  raw = inflate(payload, expected, section)
  if version < 3:
    if len(raw) != expected:
      fail(section, f"the tables do not inflate to the declared {expected} "
            "bytes")
    cdf = np.frombuffer(raw, "<i4", cdf_length).astype(np.int32)
    cdf_offset = np.frombuffer(raw, "<i4", positions, 4 * cdf_length)
    return cdf, cdf_offset.astype(np.int32)
  numbers = _read_varints(raw, section)
  precisions, frequencies, offsets, pos = [], [], [], 0
  for _ in range(positions):
    if pos + 3 > len(numbers):
      fail(section, f"the tables hold fewer than {positions} positions")
    precision, zigzag, count = numbers[pos:pos + 3]
    if not 1 <= precision <= 16 or not 1 <= count < 1 << precision:
      fail(section, f"a table has precision {precision} and {count} values")
    steps = numbers[pos + 3:pos + 3 + count]
    pos += 3 + count
    if len(steps) != count:
      fail(section, "the tables end inside a table")
    escape = (1 << int(precision)) - int(steps.sum())
    if escape < 1 or not steps.any():
      fail(section, "a table's frequencies do not fit its precision")
    offset = zigzag // 2 if zigzag % 2 == 0 else -(zigzag + 1) // 2
    # Clipped into int32 here; `_check_tables` refuses what is out of range.
    offsets.append(min(max(offset, -2**31), 2**31 - 1))
    precisions.append(precision)
    frequencies.append(steps)
  if pos != len(numbers):
    fail(section, f"{len(numbers) - pos} numbers after the last table")
  cdf, cdf_offset = codec.tables_from_frequencies(frequencies, offsets,
                                                  precisions)
  if len(cdf) != cdf_length:
    fail(section, f"the tables hold {len(cdf)} CDF values, the header "
          f"declares {cdf_length}")
  return cdf, cdf_offset


def check_tables(cdf, cdf_offset, section, version):
  """Checks range-coding tables; returns the fewest bits per position.

  Each of the `len(cdf_offset)` tables must be `-precision` (1 to 16), then a
  CDF from 0 to `2**precision` with at least one symbol besides the overflow
  escape, strictly increasing up to version 2 (what tensorflow-compression
  produces); from version 3 on, values that never occur may have frequency 0
  (the escape never does).

  Returns:
    Per position, -log2 of its most probable symbol's probability: the fewest
    bits any of its symbols costs.
  """
  positions = len(cdf_offset)
  starts = np.flatnonzero(cdf < 0)
  if len(starts) != positions or starts[0] != 0:
    fail(section, f"expected {positions} tables, found {len(starts)}")
  ends = np.append(starts[1:], len(cdf))
  if np.any(ends - starts < 3):
    fail(section, "a table has fewer than two CDF values")
  precision = -cdf[starts].astype(np.int64)
  if np.any((precision < 1) | (precision > 16)):
    fail(section, "a table's precision is outside [1, 16]")
  if np.any(cdf[starts + 1] != 0) or np.any(cdf[ends - 1] != 1 << precision):
    fail(section, "a CDF does not run from 0 to 2**precision")
  steps = np.diff(cdf.astype(np.int64))
  inner = np.ones(len(steps), bool)
  inner[starts] = False
  inner[starts[1:] - 1] = False
  if np.any(steps[inner] < (0 if version >= 3 else 1)):
    fail(section, "a CDF is not increasing")
  if np.any(steps[ends - 2] < 1):
    fail(section, "a table's overflow escape has frequency 0")
  if np.any(np.abs(cdf_offset.astype(np.int64)) > 2**30):
    fail(section, "a CDF offset is out of range")
  steps[~inner] = 0
  return precision - np.log2(np.maximum.reduceat(steps, starts))
