"""The bytes of a compressed model file, written from a model or recoded.

`model_chunks` writes a `LilNetXModel` (`fileformat.save_compressed`), with
its architecture or weights only; `recoded_chunks` writes an existing file
again with its latents coded by another range coder
(`fileformat.recode_compressed`), keeping everything else. The byte layout is
in `lilnetx_tf.compressed.fileformat`.
"""

import copy
import json

import numpy as np
import tensorflow as tf

from lilnetx_tf import compat
from lilnetx_tf.compat import keras
from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import floats as floats_lib
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed import tables
from lilnetx_tf.compressed.architecture import architecture_problem
from lilnetx_tf.compressed.architecture import compact_architecture
from lilnetx_tf.compressed.architecture import without_custom_modules
from lilnetx_tf.compressed.architecture import without_layer_names
from lilnetx_tf.compressed.custom_objects import registered_in
from lilnetx_tf.compressed.sections import FORMAT_VERSION
from lilnetx_tf.compressed.sections import MAGIC
from lilnetx_tf.method import groups as groups_lib
from lilnetx_tf.method import named_weights
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


class _Weight:
  """A weight's value, as `floats.pack_floats` reads a variable."""

  def __init__(self, name, value):
    self.name, self.dtype, self.value = name, tf.as_dtype(value.dtype), value

  def numpy(self):
    return self.value


class _Layer:
  """A layer of the plain form, as `floats.pack_floats` reads one."""

  def __init__(self, name, weights):
    self.name, self.weights = name, weights


def _plain_layers(network, fold_batch_norm):
  """The weighted layers of `network`'s plain form, without building it.

  A subclassed network has no copy to decode into (`decompressed_model`):
  its layers' weights as their plain layers hold them (`named_weights`),
  and with `fold_batch_norm` each batch norm layer as a built copy, which
  folding changes instead of the model's.
  """
  layers = []
  for layer, values in named_weights.plain_entries(network):
    if fold_batch_norm and isinstance(layer,
                                      keras.layers.BatchNormalization):
      if layer.get_build_config() is None:
        raise ValueError(f"Cannot fold batch norm layer {layer.name!r}: it "
                         "was built without being called (no input shape "
                         "known); save without fold_batch_norm.")
      copy_ = type(layer).from_config(layer.get_config())
      copy_.build_from_config(layer.get_build_config())
      copy_.set_weights(values)
      layers.append(copy_)
    else:
      layers.append(_Layer(layer.name, [
          _Weight(f"{layer.name}/{i}", v) for i, v in enumerate(values)]))
  return layers


def _chunks(header, parts):
  """The file's pieces: preamble, then each section's header and payload."""
  parts = [(b"HEAD", sections.pack_header(header))] + parts
  chunks = [sections.PREAMBLE.pack(MAGIC, FORMAT_VERSION)]
  for tag, payload in parts:
    chunks += [sections.pack_section(tag, payload), payload]
  return chunks


# How to store a model whose architecture a file cannot hold.
_WEIGHTS_ONLY_HINT = ("; store its weights alone with save_compressed(model, "
                      "path, weights_only=True) and load them into the plain "
                      "model built in code with load_compressed(path, "
                      "into=plain_model)")


def model_chunks(model, float_dtype, fold_batch_norm, batch_norm_bits, coder,
                 weights_only=False):
  """The bytes of a `LilNetXModel`'s file, in pieces.

  Args:
    model: The `LilNetXModel`.
    float_dtype: "float32" or "float16".
    fold_batch_norm: Whether to fold the batch norm statistics.
    batch_norm_bits: Grid places of the folded batch norm, or None.
    coder: The range coder's name.
    weights_only: Leave the architecture out (a subclassed network's, or one
      the user builds in code): the header's `architecture` is null.

  Raises:
    ValueError: if the model cannot be stored.
  """
  architecture = None
  if weights_only:
    layers = _plain_layers(model.network, fold_batch_norm)
  else:
    network = model.network
    if not (isinstance(network, keras.Sequential) or
            compat.is_graph_network(network)):
      raise ValueError(
          f"Cannot store the architecture of model {model.name!r}: its "
          f"network {network.name!r} is a subclassed "
          f"{type(network).__name__}, whose architecture is code"
          f"{_WEIGHTS_ONLY_HINT}.")
    plain = decompressed_model(model)
    architecture = without_custom_modules(json.loads(plain.to_json()))
    # The user's classes and functions go by their registered names.
    problem = architecture_problem(architecture, registered_in(plain))
    if problem:
      raise ValueError(f"Cannot store model {model.name!r}: {problem}"
                       f"{_WEIGHTS_ONLY_HINT}.")
    layers = weighted_layers(plain)
    names = [l.name for l in layers]
    if len(set(names)) != len(names):
      raise ValueError(f"Model {model.name!r} has several layers of the "
                       "same name (in nested models); rename them to store "
                       "it.")
  if fold_batch_norm:
    floats_lib.fold_batch_norm_statistics(layers, batch_norm_bits)
  coded = codec.compress_latents(model, coder)
  refs = {l.name: l.kernel_ref for l in model.latent_layers}
  entries, floats = floats_lib.pack_floats(
      layers, {refs[name] for c in coded for name in c.layers}, float_dtype)
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
  if architecture is not None:
    architecture = without_layer_names(compact_architecture(architecture))
  header = dict(format_version=FORMAT_VERSION, float_dtype=float_dtype,
                coder=coder, groups=groups, float_params=entries,
                architecture=architecture)
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
  header.update(format_version=FORMAT_VERSION, coder=coder)
  if header["architecture"] is not None:  # Null: a weights-only file.
    header["architecture"] = without_layer_names(header["architecture"])
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
