"""Bytes of the compressed model file: sections, and checks of untrusted input.

`parse` reads a whole file's bytes (layout:
`lilnetx_tf.compressed.fileformat`; the coding tables' section is in
`tables`, the error in `errors`) and checks every field before anything is
allocated or handed to Keras or the range coder: lengths against the bytes
left, each section's CRC before its contents are used, types and ranges of
the header fields, element counts against the bytes that must hold them,
coding tables against tensorflow-compression's invariants (the layout both
range coders read, `coders`), the coder's name, and the
architecture against an allow-list of classes (stock Keras only, plus
`lilnetx_tf>ChannelPad`) and a replay of how Keras rebuilds its layer graph,
so that deserialising it cannot run code, import modules, read files or loop
forever. Every problem is a `CorruptFileError` naming the section.

The checks raise `CorruptFileError` themselves. Where a library reads what
they cannot fully check (zlib, JSON, Keras, the range coder), only the
exception types that library raises on malformed input become one
(`reading`): any other exception is a bug of the reader and propagates as it
is, instead of passing for a damaged file.
"""

import json
import math
import struct
import zlib

import numpy as np

from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import floats as floats_lib
from lilnetx_tf.compressed import rice
from lilnetx_tf.compressed.architecture import MAX_LAYERS
from lilnetx_tf.compressed.architecture import architecture_problem
from lilnetx_tf.compressed.architecture import with_layer_names
from lilnetx_tf.compressed.dictionary import HEADER_DICTIONARY
from lilnetx_tf.compressed.errors import CorruptFileError
from lilnetx_tf.compressed.errors import fail
from lilnetx_tf.compressed.errors import inflate
from lilnetx_tf.compressed.errors import reading
from lilnetx_tf.compressed.tables import MAX_CDF_LENGTH
from lilnetx_tf.compressed.tables import check_tables
from lilnetx_tf.compressed.tables import unpack_tables
from lilnetx_tf.method import grid
from lilnetx_tf.method import groups as groups_lib

__all__ = [
    "CorruptFileError",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "PREAMBLE",
    "READABLE_VERSIONS",
    "SECTION_HEADER_BYTES",
    "pack_section",
    "pack_header",
    "parse",
    "reading",
]

MAGIC = b"\x89LNX\r\n\x1a\n"
FORMAT_VERSION = 8
# Version 1 stored the header as plain JSON; version 2 deflates it; version 3
# stores the coding tables as frequencies (`pack_tables`), which may be 0 for
# values that do not occur, instead of int32 CDFs; version 4 names each
# kernel's weight index (`weights`, for the two kernels of a separable
# convolution) where earlier versions meant weight 0; version 5 stores weights
# on power-of-two grids (decoders' unit matrices, biases) as Rice-coded
# integers (`grid` entries), and float parameters without name and dtype;
# version 6 stores a float parameter whose elements are all one value as that
# value (`fill` entries), with no bytes, a grid's integers less an offset
# (a fourth `grid` entry), and a functional model's layer
# entries without the name their config repeats (`without_layer_names`);
# version 7 names the range coder of the latents (`coder`, `coders.CODERS`),
# which before was always tensorflow-compression; version 8's architecture
# may be null (a weights-only file), which readers of version 7 take for a
# damaged file: as version 8 they refuse it as newer.
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)
# The weight indices a kernel may have (a separable convolution's pointwise
# kernel is its weight 1).
_MAX_KERNEL_INDEX = 1
MAX_HEADER_BYTES = 16 * 2**20
PREAMBLE = struct.Struct("<8sI")  # Magic, format version.
_SECTION = struct.Struct("<4sQI")  # Tag, payload length, CRC-32.
SECTION_HEADER_BYTES = _SECTION.size

# Limits far above any real model that keep a hostile header from making the
# reader loop or allocate without end.
_MAX_GROUPS = 256
_MAX_POSITIONS = 4096  # 64x64 kernels.
_MAX_FLOAT_PARAMS = 10**6
_MAX_DIM = 2**31 - 1  # tensorflow-compression counts symbols in int32.
_MAX_NAME = 1024
# A range-coded string may hold a few bits less than the self-information of
# its symbols (its final bytes are implicit).
_CODER_SLACK_BITS = 64
# Very peaked tables code a latent in a tiny fraction of a bit, and a filled
# float parameter takes no bytes at all. So that a small file cannot make the
# reader allocate gigabytes anyway, a file may declare at most this many
# latents and filled values together per byte of its size (1/512 bit each on
# average), or `_MIN_LATENT_ALLOWANCE` whatever its size.
_LATENTS_PER_BYTE = 4096
_MIN_LATENT_ALLOWANCE = 2**24


def pack_section(tag, payload):
  """The 16-byte header of a section: tag, length, CRC-32 of both + payload."""
  head = struct.pack("<4sQ", tag, len(payload))
  return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head)))


# -- The header ----------------------------------------------------------------


def _is_int(value, low, high):
  return (isinstance(value, int) and not isinstance(value, bool) and
          low <= value <= high)


def _is_name(value):
  return isinstance(value, str) and 0 < len(value) <= _MAX_NAME


def _check_shape(value, what, min_dim):
  if not (isinstance(value, list) and len(value) <= 8 and
          all(_is_int(d, min_dim, _MAX_DIM) for d in value)):
    fail("header", f"{what} has an invalid shape {str(value)[:100]}")


def _check_groups(value, version):
  """Checks the `groups` entries; returns their kernels' (layer, index).

  Headers of versions before 4 get the implied `weights` (all 0).
  """
  if not (isinstance(value, list) and 0 < len(value) <= _MAX_GROUPS):
    fail("header", f"`groups` must be a list of 1 to {_MAX_GROUPS} groups")
  names, kernels = set(), set()
  for group in value:
    name = group.get("name") if isinstance(group, dict) else None
    if not (_is_name(name) and len(name) <= 64) or name in names:
      fail("header", f"invalid or repeated group {str(group)[:100]}")
    names.add(name)
    positions = group.get("positions")
    if not _is_int(positions, 1, _MAX_POSITIONS):
      fail("header", f"group {name!r}: invalid positions {positions!r}")
    if not _is_int(group.get("cdf_length"), 3 * positions, MAX_CDF_LENGTH):
      fail("header", f"group {name!r}: invalid cdf_length "
            f"{group.get('cdf_length')!r}")
    layers, shapes = group.get("layers"), group.get("shapes")
    if not (isinstance(layers, list) and isinstance(shapes, list) and
            0 < len(layers) == len(shapes) <= MAX_LAYERS):
      fail("header", f"group {name!r}: `layers` and `shapes` must be lists "
            "of the same length")
    if version < 4:
      group["weights"] = [0] * len(layers)
    indices = group.get("weights")
    if not (isinstance(indices, list) and len(indices) == len(layers) and
            all(_is_int(i, 0, _MAX_KERNEL_INDEX) for i in indices)):
      fail("header", f"group {name!r}: `weights` must list a kernel index "
            "per layer")
    if "decoder" in group and not (version >= 5 and
                                   _is_grid(group["decoder"], 2)):
      fail("header", f"group {name!r}: invalid decoder "
            f"{str(group['decoder'])[:100]}")
    total, in_group = 0, set()
    for layer, index, shape in zip(layers, indices, shapes):
      if not _is_name(layer) or layer in in_group or (layer, index) in kernels:
        fail("header", f"group {name!r}: invalid or repeated layer "
              f"{str(layer)[:100]}")
      in_group.add(layer)
      kernels.add((layer, index))
      _check_shape(shape, f"layer {layer!r}", 1)
      if (len(shape) not in (2, 3, 4) or
          groups_lib.num_positions(shape) != positions):
        fail("header", f"layer {layer!r}: kernel shape {shape} does not have "
              f"the group's {positions} positions")
      total += math.prod(shape)
    if total > _MAX_DIM:
      fail("header", f"group {name!r}: {total} latents, over the limit of "
            f"{_MAX_DIM}")
  return kernels


def _is_grid(value, length):
  """Whether `value` is `[exponent, Rice parameter(, bytes)]` of a grid."""
  return (isinstance(value, list) and len(value) == length and
          _is_int(value[0], *grid.EXPONENTS) and
          _is_int(value[1], 0, rice.MAX_K) and
          all(_is_int(v, 0, _MAX_DIM) for v in value[2:]))


def _is_offset_grid(value):
  """Whether `value` is `[exponent, Rice parameter, bytes, offset]`."""
  return (isinstance(value, list) and len(value) == 4 and
          _is_grid(value[:3], 3) and
          _is_int(value[3], -floats_lib.MAX_GRID_INTEGER,
                  floats_lib.MAX_GRID_INTEGER))


def _check_float_params(value, kernels, version):
  if not (isinstance(value, list) and len(value) <= _MAX_FLOAT_PARAMS):
    fail("header", "`float_params` must be a list of at most "
          f"{_MAX_FLOAT_PARAMS} entries")
  seen = set()
  for p in value:
    if not (isinstance(p, dict) and _is_name(p.get("layer")) and
            _is_int(p.get("index"), 0, 10**4) and
            (version >= 5 or (_is_name(p.get("name")) and
                              p.get("dtype") == "float32")) and
            ("grid" not in p or (version >= 5 and _is_grid(p["grid"], 3)) or
             (version >= 6 and _is_offset_grid(p["grid"]))) and
            ("fill" not in p or (version >= 6 and "grid" not in p and
                                 floats_lib.is_fill_value(p["fill"])))):
      fail("header", f"invalid float parameter {str(p)[:200]}")
    _check_shape(p.get("shape"), f"weight {p['index']} of {p['layer']!r}", 0)
    key = (p["layer"], p["index"])
    if key in seen or key in kernels:
      fail("header", f"weight {key} is stored twice")
    seen.add(key)


def _check_header(header, version):
  if not isinstance(header, dict):
    fail("header", "the header is not a JSON object")
  if header.get("format_version") != version:
    fail("header", f"format_version {str(header.get('format_version'))[:20]} "
          f"differs from the preamble's {version}")
  if not (isinstance(header.get("float_dtype"), str) and
          header["float_dtype"] in floats_lib.FLOAT_DTYPES):
    fail("header", f"invalid float_dtype {str(header.get('float_dtype'))[:20]}"
          f"; valid: {', '.join(floats_lib.FLOAT_DTYPES)}")
  if version >= 7:
    if not (isinstance(header.get("coder"), str) and
            header["coder"] in coders.CODERS):
      fail("header", f"unknown range coder {str(header.get('coder'))[:40]}; "
            f"known: {', '.join(coders.CODERS)}")
  elif "coder" in header:
    fail("header", f"a coder in a version {version} file, which is always "
          f"coded with {coders.TENSORFLOW_COMPRESSION}")
  else:  # What the file means.
    header["coder"] = coders.TENSORFLOW_COMPRESSION
  kernels = _check_groups(header.get("groups"), version)
  _check_float_params(header.get("float_params"), kernels, version)
  # From version 8 on, a null architecture is a weights-only file's.
  if version < 8 or header.get("architecture", {}) is not None:
    problem = architecture_problem(header.get("architecture"))
    if problem:
      fail("architecture", problem)


# -- Sections ------------------------------------------------------------------


class _Reader:
  """Walks the sections of a file's bytes, checking each before use."""

  def __init__(self, data):
    self.data = memoryview(data)
    self.pos = PREAMBLE.size
    self.sections = []

  def read(self, tag, name, max_bytes=None):
    """The payload of the next section, which must be `tag`."""
    data, pos = self.data, self.pos
    left = len(data) - pos - _SECTION.size
    if left < 0:
      fail(name, f"truncated: {len(data) - pos} bytes at offset {pos}, a "
            f"section starts with {_SECTION.size}")
    found, length, crc = _SECTION.unpack_from(data, pos)
    if found != tag:
      fail(name, f"expected section {tag!r} at offset {pos}, found "
            f"{bytes(found)!r}")
    if max_bytes is not None and length > max_bytes:
      fail(name, f"declares {length} bytes, over the limit of {max_bytes}")
    if length > left:
      fail(name, f"declares {length} bytes, only {left} left (truncated?)")
    start = pos + _SECTION.size
    payload = data[start:start + length]
    if zlib.crc32(payload, zlib.crc32(data[pos:pos + 12])) != crc:
      fail(name, "CRC-32 mismatch (damaged data)")
    self.pos = start + length
    self.sections.append(dict(tag=tag.decode(), name=name, offset=pos,
                              bytes=_SECTION.size + length))
    return payload


def _check_preamble(data):
  """Checks the magic and version; returns the format version."""
  if not data:
    fail("preamble", "empty file")
  if data[:len(MAGIC)] != MAGIC[:len(data)]:
    fail("preamble", f"not a LilNetX file (starts with "
          f"{bytes(data[:8]).hex()}, expected {MAGIC.hex()})")
  if len(data) < PREAMBLE.size:
    fail("preamble", f"truncated: {len(data)} bytes")
  _, version = PREAMBLE.unpack_from(data)
  if version > FORMAT_VERSION:
    fail("preamble", f"format version {version} is newer than this reader, "
          f"which reads versions up to {FORMAT_VERSION} (update lilnetx_tf)")
  if version not in READABLE_VERSIONS:
    fail("preamble", f"unknown format version {version}; readable: "
          f"{', '.join(map(str, READABLE_VERSIONS))}")
  return version


def pack_header(header):
  """The HEAD payload of a header dict: deflated compact JSON.

  Version 5 deflates with the preset `HEADER_DICTIONARY`.

  Raises:
    ValueError: if the JSON is over `MAX_HEADER_BYTES`.
  """
  head = json.dumps(header, separators=(",", ":")).encode("utf-8")
  if len(head) > MAX_HEADER_BYTES:
    raise ValueError(f"The header is {len(head)} bytes, over the format's "
                     f"limit of {MAX_HEADER_BYTES}.")
  deflater = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
  return deflater.compress(head) + deflater.flush()


def _unpack_header(payload, version):
  """The header dict of a HEAD payload (JSON, deflated from version 2 on).

  From version 6 on, the architecture's functional layer entries get back
  their names (`with_layer_names`).
  """
  if version >= 2:
    payload = inflate(payload, MAX_HEADER_BYTES, "header",
                      HEADER_DICTIONARY if version >= 5 else b"")
  # Bad UTF-8 and JSON are ValueErrors, and so are integers of more digits
  # than Python converts; JSON nested too deep exhausts the parser's stack.
  with reading("header", (ValueError, RecursionError)):
    header = json.loads(bytes(payload).decode("utf-8"))
  if version >= 6 and isinstance(header, dict):
    with_layer_names(header.get("architecture"))
  return header


def _read_group(reader, group, version, coder):
  """Reads and checks one group's TABL, DECO and LATS sections."""
  name, positions = group["name"], group["positions"]
  section = f"tables[{name}]"
  tables = reader.read(b"TABL", section)
  cdf, cdf_offset = unpack_tables(tables, group["cdf_length"], positions,
                                   section, version)
  min_bits = check_tables(cdf, cdf_offset, section, version)
  if coder != coders.TENSORFLOW_COMPRESSION:  # `check_tables` counts tfc's.
    min_bits = coders.fewest_bits(coder, cdf, cdf_offset)
  section = f"decoder[{name}]"
  deco = reader.read(b"DECO", section,
                     None if "decoder" in group else 4 * positions**2)
  matrix = floats_lib.unpack_decoder(deco, positions, group.get("decoder"),
                                     section)
  latents = reader.read(b"LATS", f"latents[{name}]")
  rows = sum(math.prod(s) for s in group["shapes"]) // positions
  least = rows * float(np.sum(min_bits))
  if least > 8 * len(latents) + _CODER_SLACK_BITS:
    fail(f"latents[{name}]", f"{rows} slices need at least "
          f"{math.ceil(least / 8)} bytes with these tables, the section holds "
          f"{len(latents)}")
  return dict(
      coded=codec.CodedGroup(
          group=name, layers=list(group["layers"]),
          shapes=[tuple(s) for s in group["shapes"]], cdf=cdf,
          cdf_offset=cdf_offset, data=bytes(latents), coder=coder),
      weights=list(group["weights"]),
      matrix=matrix,
      table_bytes=len(tables), decoder_bytes=len(deco))


def _read_floats(reader, header):
  """Reads the FLTS section: float32 arrays in header order."""
  payload = reader.read(b"FLTS", "float_params")
  return floats_lib.unpack_floats(payload, header["float_params"],
                                  header["float_dtype"])


def parse(data):
  """Checks a whole file's bytes and returns its contents (no Keras involved).

  Args:
    data: The file's bytes.

  Returns:
    A dict: `header` (the checked header JSON, with the fields an older
    version implies: `coder`, and `weights` before version 4), `groups` (per
    group a dict of `coded` (a `codec.CodedGroup`), `weights` (the weight
    index of each of its layers' kernels), `matrix` (float32), `table_bytes`
    and `decoder_bytes`),
    `floats` (float32 arrays in header order), `sections` (per section its
    `tag`, `name`, `offset` and `bytes`) and `file_bytes`.

  Raises:
    CorruptFileError: on anything but a well-formed file of a readable
      version.
  """
  version = _check_preamble(data)
  reader = _Reader(data)
  head = reader.read(b"HEAD", "header", MAX_HEADER_BYTES)
  header = _unpack_header(head, version)
  _check_header(header, version)
  latents = sum(math.prod(s) for g in header["groups"] for s in g["shapes"])
  filled = sum(math.prod(p["shape"]) for p in header["float_params"]
               if "fill" in p)
  allowance = max(_MIN_LATENT_ALLOWANCE, _LATENTS_PER_BYTE * len(data))
  if latents + filled > allowance:
    fail("header", f"declares {latents} latents and {filled} filled values, "
          f"more than a file of {len(data)} bytes may hold ({allowance})")
  groups = [_read_group(reader, g, version, header["coder"])
            for g in header["groups"]]
  floats = _read_floats(reader, header)
  if reader.pos != len(data):
    fail("end", f"{len(data) - reader.pos} unexpected bytes after the last "
          "section")
  return dict(header=header, groups=groups, floats=floats,
              sections=reader.sections, file_bytes=len(data))
