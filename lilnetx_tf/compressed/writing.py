"""The bytes of a compressed model file, written from a model or recoded.

`model_chunks` writes a `LilNetXModel` (`fileformat.save_compressed`);
`recoded_chunks` writes an existing file again with its latents coded by
another range coder (`fileformat.recode_compressed`), keeping everything else.
The byte layout is in `lilnetx_tf.compressed.fileformat`.
"""

import copy
import json

import numpy as np

from lilnetx_tf.compat import keras
from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import floats as floats_lib
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed import tables
from lilnetx_tf.compressed.architecture import architecture_problem
from lilnetx_tf.compressed.architecture import compact_architecture
from lilnetx_tf.compressed.architecture import without_custom_modules
from lilnetx_tf.compressed.architecture import without_layer_names
from lilnetx_tf.compressed.sections import FORMAT_VERSION
from lilnetx_tf.compressed.sections import MAGIC
from lilnetx_tf.method import groups as groups_lib
from lilnetx_tf.method.convert import decompressed_model

__all__ = ["model_chunks", "recoded_chunks", "weighted_layers"]


def weighted_layers(model):
  """The distinct layers holding weights, nested models flattened."""
  layers, seen = [], set()
  stack = list(reversed(model.layers))
  while stack:
    layer = stack.pop()
    if isinstance(layer, keras.Model):
      stack.extend(reversed(layer.layers))
    elif layer.weights and id(layer) not in seen:
      seen.add(id(layer))
      layers.append(layer)
  return layers


def _chunks(header, parts):
  """The file's pieces: preamble, then each section's header and payload."""
  parts = [(b"HEAD", sections.pack_header(header))] + parts
  chunks = [sections.PREAMBLE.pack(MAGIC, FORMAT_VERSION)]
  for tag, payload in parts:
    chunks += [sections.pack_section(tag, payload), payload]
  return chunks


def model_chunks(model, float_dtype, fold_batch_norm, batch_norm_bits, coder):
  """The bytes of a `LilNetXModel`'s file, in pieces.

  Args:
    model: The `LilNetXModel`.
    float_dtype: "float32" or "float16".
    fold_batch_norm: Whether to fold the batch norm statistics.
    batch_norm_bits: Grid places of the folded batch norm, or None.
    coder: The range coder's name.

  Raises:
    ValueError: if the model cannot be stored.
  """
  plain = decompressed_model(model)
  if fold_batch_norm:
    floats_lib.fold_batch_norm_statistics(weighted_layers(plain),
                                          batch_norm_bits)
  architecture = without_custom_modules(json.loads(plain.to_json()))
  problem = architecture_problem(architecture)
  if problem:
    raise ValueError(f"Cannot store model {model.name!r}: {problem}.")
  names = [l.name for l in weighted_layers(plain)]
  if len(set(names)) != len(names):
    raise ValueError(f"Model {model.name!r} has several layers of the same "
                     "name (in nested models); rename them to store it.")
  coded = codec.compress_latents(model, coder)
  refs = {l.name: l.kernel_ref for l in model.latent_layers}
  entries, floats = floats_lib.pack_floats(
      weighted_layers(plain),
      {refs[name] for c in coded for name in c.layers}, float_dtype)
  decoders = [floats_lib.pack_decoder(model.decoders[c.group])
              for c in coded]
  groups = []
  for c, (decoder, _) in zip(coded, decoders):
    groups.append(dict(name=c.group, positions=c.positions,
                       cdf_length=int(c.cdf.shape[0]),
                       layers=[refs[name][0] for name in c.layers],
                       weights=[refs[name][1] for name in c.layers],
                       shapes=[list(s) for s in c.shapes]))
    if decoder:
      groups[-1]["decoder"] = decoder
  header = dict(format_version=FORMAT_VERSION, float_dtype=float_dtype,
                coder=coder, groups=groups, float_params=entries,
                architecture=without_layer_names(
                    compact_architecture(architecture)))
  parts = []
  for c, (_, deco) in zip(coded, decoders):
    parts += [(b"TABL", tables.pack_tables(c.cdf, c.cdf_offset)),
              (b"DECO", deco), (b"LATS", c.data)]
  parts.append((b"FLTS", floats))
  return _chunks(header, parts)


def _recoded_group(coded, coder):
  """`coded`'s latents coded again with `coder`, on the same tables.

  Decoded with the file's coder (its reports of bad data are a
  `CorruptFileError`, as on loading); the new bytes are decoded again and
  compared, so a recoded file never holds other weights than its source.
  """
  with sections.reading(f"latents[{coded.group}]", (codec.DecodeError,)):
    latents = codec.decompress_latents([coded])
  symbols = np.concatenate([groups_lib.to_slices(latents[name])
                            for name in coded.layers]).astype(np.int64)
  recoded = copy.copy(coded)
  recoded.coder = coder
  recoded.data = codec.encode_symbols(symbols, coded.cdf, coded.cdf_offset,
                                      coder)
  again = codec.decompress_latents([recoded])
  if any(not np.array_equal(again[name], latents[name])
         for name in coded.layers):
    raise RuntimeError(f"Group {coded.group!r}: the {coder} coder does not "
                       "decode what it coded (a bug of the coder).")
  return recoded.data


def recoded_chunks(data, coder):
  """A file's bytes, in pieces, with its latents coded by `coder`.

  The new file has the current format version: its header is the source's
  with the fields older versions imply (`coder`, kernel `weights`) written
  out, the float parameters without the names and dtypes of versions before
  5, and the architecture without the layer entries' names (version 6); the
  tables are packed as frequencies (versions 1 and 2 stored int32 CDFs; the
  same tables). The decoders and float weights keep their bytes.

  Args:
    data: The source file's bytes (any readable version).
    coder: The new range coder's name.

  Raises:
    CorruptFileError: if the source is not a valid file.
    coders.CoderUnavailableError: if its coder or `coder` is not installed.
  """
  parsed = sections.parse(data)
  header = copy.deepcopy(parsed["header"])
  version = header["format_version"]
  header.update(format_version=FORMAT_VERSION, coder=coder,
                architecture=without_layer_names(header["architecture"]))
  for entry in header["float_params"]:
    entry.pop("name", None)
    entry.pop("dtype", None)
  # Section payloads by position: HEAD, then TABL, DECO, LATS per group, FLTS.
  payloads = [bytes(data[s["offset"] + sections.SECTION_HEADER_BYTES:
                         s["offset"] + s["bytes"]])
              for s in parsed["sections"]]
  parts = []
  for i, group in enumerate(parsed["groups"]):
    coded = group["coded"]
    table = payloads[1 + 3 * i] if version >= 3 else tables.pack_tables(
        coded.cdf, coded.cdf_offset)
    parts += [(b"TABL", table), (b"DECO", payloads[2 + 3 * i]),
              (b"LATS", _recoded_group(coded, coder))]
  parts.append((b"FLTS", payloads[-1]))
  return _chunks(header, parts)
