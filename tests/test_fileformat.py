"""Tests of the compressed model file (`lilnetx_tf.compressed.fileformat`).

The invariants: a file decodes to exactly the trained model's decoded weights
(bit for bit) and outputs; its latents take what the entropy model predicts;
and no damaged, truncated, edited or foreign file gets past the reader as
anything but a `CorruptFileError` or the original model.
"""

import collections
import functools
import gzip
import hashlib
import importlib.util
import json
import os
import pathlib
import resource
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf

import by_hand
import lilnetx_tf
from lilnetx_tf import atomic
from lilnetx_tf.compressed import architecture
from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import dictionary
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.compressed import graph_replay
from lilnetx_tf.compressed import reading
from lilnetx_tf.compressed import sections
from lilnetx_tf.method import decoders
from lilnetx_tf.method import groups as groups_lib
from lilnetx_tf.models import ChannelPad
from lilnetx_tf.models import build_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
CorruptFileError = fileformat.CorruptFileError
TFC, CONSTRICTION = coders.TENSORFLOW_COMPRESSION, coders.CONSTRICTION


def _mnist(data_dir, split, limit):
  """Real MNIST images in [0, 1] (N, 28, 28, 1) float32 and int labels."""
  try:
    from lilnetx_tf.data import load_arrays  # pylint: disable=g-import-not-at-top
    x, y, _ = load_arrays("mnist", split, data_dir=str(data_dir / "mnist"),
                          limit=limit)
  except ImportError:  # The data package is optional here: read the IDX files.
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(data_dir / "mnist" / f"{prefix}-images-idx3-ubyte.gz") as f:
      x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(data_dir / "mnist" / f"{prefix}-labels-idx1-ubyte.gz") as f:
      y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    x, y = x[:limit], y[:limit]
  return x.astype(np.float32) / 255.0, y


@pytest.fixture(scope="module")
def trained(data_dir):
  """LeNet-5 trained with LilNetX on 2,000 real MNIST images (10 steps)."""
  tf.keras.utils.set_random_seed(0)
  x, y = _mnist(data_dir, "train", 2000)
  model = lilnetx_tf.compressible(build_model("lenet5", (28, 28, 1), 10),
                                  lambda_rate=1e-2, seed=0)
  model.compile(tf.keras.optimizers.Adam(1e-2), loss=tf.keras.losses.
                SparseCategoricalCrossentropy(from_logits=True))
  before = [l.latent.numpy().round() for l in model.latent_layers]
  model.fit(x, y, batch_size=200, epochs=1, verbose=0)
  after = [l.latent.numpy().round() for l in model.latent_layers]
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))
  x_test, _ = _mnist(data_dir, "test", 200)
  return model, x_test


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
  path = tmp_path_factory.mktemp("lnx") / "lenet5.lnx"
  sizes = fileformat.save_compressed(trained[0], path)
  return path, sizes


def _assert_round_trip(model, loaded, x):
  """Kernels bit-exact, every other weight equal, identical outputs."""
  count, latent = 0, {id(l) for l in model.latent_layers}
  for layer in model.network.layers:
    want = [w.numpy() for w in layer.weights]
    if id(layer) in latent:
      want[0] = layer.decoded_kernel().numpy()
      if layer.use_bias:  # The bias the op uses: on the model's grid.
        want[1] = by_hand.on_grid(want[1], model.grid_bits)
    got = [w.numpy() for w in loaded.get_layer(layer.name).weights]
    assert len(got) == len(want), layer.name
    for a, b in zip(got, want):
      assert np.array_equal(a, b), layer.name
    count += len(got)
  assert count == len(loaded.weights)
  outputs = loaded(x).numpy()
  assert np.array_equal(outputs, model(x, training=False).numpy())
  return outputs


def test_round_trip_is_exact(trained, saved):
  model, x = trained
  loaded = fileformat.load_compressed(saved[0])
  latent_classes = (lilnetx_tf.LatentConv2D, lilnetx_tf.LatentDense,
                    lilnetx_tf.LatentDepthwiseConv2D)
  assert not any(isinstance(l, latent_classes) for l in loaded.layers)
  outputs = _assert_round_trip(model, loaded, x)
  assert len(np.unique(outputs.argmax(-1))) > 1  # A model, not a constant.
  # The reference above is the trained model's rounded latents, decoded.
  layer = model.latent_layers[0]
  matrix = model.decoders[layer.group].matrix.numpy()
  assert np.array_equal(layer.decoded_kernel().numpy(), lilnetx_tf.method.decoders.
                        decode_kernel(np.round(layer.latent.numpy()),
                                      matrix).numpy())


def test_sizes(trained, saved):
  model, _ = trained
  path, sizes = saved
  info = fileformat.inspect_compressed(path)
  # Tables fitted to the latents: each group costs its factorized empirical
  # entropy (counted here by hand) plus a few bytes.
  entropy_bits = by_hand.group_entropy_bits(model)
  for group in info["groups"]:
    entropy = entropy_bits[group["name"]] / 8
    assert entropy - 8 <= group["latent_bytes"] <= 1.03 * entropy + 16
  assert info["sizes"] == sizes
  assert sizes["file_bytes"] == os.path.getsize(path)
  assert info["preamble_bytes"] + sum(s["bytes"] for s in info["sections"]) \
      == sizes["file_bytes"]
  assert sizes["latent_bytes"] == sum(g["latent_bytes"] for g in info["groups"])
  assert sizes["latent_bytes"] < sizes["file_bytes"]
  plain = lilnetx_tf.decompressed_model(model)
  assert sizes["float32_bytes"] == 4 * plain.count_params()
  assert sizes["num_latents"] == model.num_latents
  assert sizes["latent_ratio"] == sizes["float32_bytes"] / sizes["latent_bytes"]
  assert sizes["file_ratio"] == sizes["float32_bytes"] / sizes["file_bytes"]
  assert [g["name"] for g in info["groups"]] == ["conv5x5", "dense"]
  assert [s["tag"] for s in info["sections"]] == [
      "HEAD", "TABL", "DECO", "LATS", "TABL", "DECO", "LATS", "FLTS"]
  # The header (mostly the architecture) is deflated: a fraction of its JSON.
  header = _header(path.read_bytes())
  head_json = json.dumps(header, separators=(",", ":"))
  assert info["sections"][0]["bytes"] < 0.4 * len(head_json)
  # Layer entries name their layer once, in their config (version 6); the
  # loaded model has the trained network's names and graph all the same.
  entries = header["architecture"]["config"]["layers"]
  assert not any("name" in e for e in entries)
  names = [l.name for l in model.network.layers]
  assert [e["config"]["name"] for e in entries] == names
  loaded = fileformat.load_compressed(path)
  assert [l.name for l in loaded.layers] == names
  assert json.loads(loaded.to_json())["config"]["output_layers"] == json.loads(
      model.network.to_json())["config"]["output_layers"]


def _as_old_version(model, data, version):
  """The file in format `version` (1 or 2): int32 CDF tables, no zeros.

  Old readers need strictly increasing CDFs, so every value between a
  column's extremes gets a count of at least 1, and the latents are coded
  again with those tables.
  """
  header = _header(data)
  header["format_version"] = version
  del header["coder"]  # Version 7's: before, always tensorflow-compression.
  architecture.with_layer_names(header["architecture"])  # Version 6's.
  parts = [None]  # The header, once the groups' cdf_length are set.
  symbols = codec.group_symbols(model)
  for p in header["float_params"]:  # Names and float32 values before v5.
    p.pop("grid", None)
    p.update(name=f"{p['layer']}/{p['index']}", dtype="float32")
  plain = lilnetx_tf.decompressed_model(model)
  floats = b"".join(np.asarray(plain.get_layer(p["layer"]).weights[
      p["index"]].numpy(), "<f4").tobytes() for p in header["float_params"])
  for i, group in enumerate(header["groups"]):
    del group["weights"]  # Version 4's; all 0 here.
    group.pop("decoder", None)  # Version 5's: float32 matrices before.
    columns = symbols[group["name"]].T
    lows = [int(c.min()) for c in columns]
    freqs = [codec.quantize_counts(np.bincount(c - low) + 1)
             for c, low in zip(columns, lows)]
    cdf, offsets = codec.tables_from_frequencies(freqs, lows)
    group["cdf_length"] = len(cdf)
    tables = zlib.compress(np.asarray(cdf, "<i4").tobytes() +
                           np.asarray(offsets, "<i4").tobytes())
    matrix = model.decoders[group["name"]].matrix.numpy()
    parts += [(b"TABL", tables), (b"DECO", np.asarray(matrix, "<f4").tobytes()),
              (b"LATS", codec.encode_symbols(
                  symbols[group["name"]], cdf, offsets, TFC))]
  head = json.dumps(header).encode()
  parts[0] = (b"HEAD", head if version == 1 else zlib.compress(head))
  parts.append((b"FLTS", floats))
  return _with_version(data[:12], version) + b"".join(
      sections.pack_section(tag, payload) + payload for tag, payload in parts)


@pytest.mark.needs_tfc
@pytest.mark.parametrize("version", [1, 2])
def test_reads_older_format_versions(trained, saved, tmp_path, version):
  """Version 1 (plain JSON header) and 2 (int32 tables) files still load."""
  model, x = trained
  path = tmp_path / f"v{version}.lnx"
  path.write_bytes(_as_old_version(model, saved[0].read_bytes(), version))
  _assert_round_trip(model, fileformat.load_compressed(path), x)
  info = fileformat.inspect_compressed(path)
  assert info["sizes"]["format_version"] == version


def test_float16(trained, saved, tmp_path):
  """float16 halves the float weights that are on no grid."""
  trained_model, x = trained
  # The same weights, with float32 decoders and biases.
  model = lilnetx_tf.LilNetXModel.from_config(
      dict(trained_model.get_config(), grid_bits=0))
  model.set_weights(trained_model.get_weights())
  full, path = tmp_path / "full.lnx", tmp_path / "half.lnx"
  fileformat.save_compressed(model, full)
  sizes = fileformat.save_compressed(model, path, float16=True)
  assert sizes["float_dtype"] == "float16"
  assert sizes["latent_bytes"] == saved[1]["latent_bytes"]
  floats = [[s["bytes"] for s in fileformat.inspect_compressed(p)["sections"]
             if s["tag"] == "FLTS"][0] for p in (full, path)]
  assert floats[0] - floats[1] == 2 * sizes["num_float_params"]
  loaded = fileformat.load_compressed(path)
  for layer in model.network.layers:
    for i, w in enumerate(layer.weights):
      got = loaded.get_layer(layer.name).weights[i].numpy()
      if i == 0 and layer in model.latent_layers:
        want = layer.decoded_kernel().numpy()
      else:
        want = w.numpy().astype(np.float16).astype(np.float32)
      assert np.array_equal(got, want), w.name
  assert np.allclose(loaded(x).numpy(), model(x, training=False).numpy(),
                     atol=1e-2)


def _assert_on_folded_grids(norms, loaded, bits, constant=None):
  """Checks the loaded folded batch norm against a by-hand rounding."""
  for layer in norms:
    gamma, beta, mean, var = (w.numpy().astype(np.float64)
                              for w in layer.weights)
    scale = gamma / np.sqrt(var + layer.epsilon)
    offset = beta - mean * scale
    if constant is not None:
      peak = np.abs(np.delete(scale, constant)).max()
      assert abs(scale[constant]) > 10 * peak
      clipped = np.sign(scale[constant]) * peak
      offset[constant] += (scale[constant] - clipped) * mean[constant]
      scale[constant] = clipped
    g, b = (w.numpy() for w in loaded.get_layer(layer.name).weights[:2])
    for got, want in ((g, scale * np.sqrt(1 + layer.epsilon)), (b, offset)):
      step = 2.0**(np.floor(np.log2(np.abs(want).max())) - bits)
      np.testing.assert_array_equal(np.round(got / step) * step, got)
      assert np.all(np.abs(got - want) <= step / 2 * (1 + 1e-6))


def test_folded_batch_norm_keeps_the_outputs_in_half_the_bytes(
    trained, saved, data_dir, tmp_path):
  """fold_batch_norm: mean 0, variance 1, the affine map in gamma and beta."""
  tf.keras.utils.set_random_seed(2)
  model = lilnetx_tf.compressible(
      build_model("resnet20", (32, 32, 3), 10, width=1), seed=2)
  rng = np.random.default_rng(2)
  norms = [l for l in model.network.layers
           if isinstance(l, tf.keras.layers.BatchNormalization)]
  for layer in norms:  # Statistics as if trained.
    c = layer.gamma.shape[0]
    layer.set_weights([rng.uniform(0.2, 2, c), rng.normal(0, 1, c),
                       rng.normal(0, 3, c), rng.uniform(0.01, 9, c)])
  full, folded = tmp_path / "full.lnx", tmp_path / "folded.lnx"
  fileformat.save_compressed(model, full)
  sizes = fileformat.save_compressed(model, folded, fold_batch_norm=True)
  loaded = fileformat.load_compressed(folded)
  for layer in norms:
    gamma, beta, mean, var = (w.numpy().astype(np.float64)
                              for w in layer.weights)
    g, b, m, v = (w.numpy() for w in loaded.get_layer(layer.name).weights)
    assert np.array_equal(m, np.zeros_like(m))
    assert np.array_equal(v, np.ones_like(v))
    # What inference computes, by hand: x * scale + offset.
    scale = gamma / np.sqrt(var + layer.epsilon)
    np.testing.assert_allclose(g / np.sqrt(1 + layer.epsilon), scale,
                               rtol=1e-6)
    np.testing.assert_allclose(b, beta - mean * scale, rtol=1e-6, atol=1e-6)
  for layer in model.latent_layers:  # Kernels stay exact.
    assert np.array_equal(loaded.get_layer(layer.name).kernel.numpy(),
                          layer.decoded_kernel().numpy())
  channels = sum(l.gamma.shape[0] for l in norms)
  flts = [[s["bytes"] for s in fileformat.inspect_compressed(p)["sections"]
           if s["tag"] == "FLTS"][0] for p in (full, folded)]
  # Two float32 vectors a channel take no bytes: the header holds their one
  # value each (format version 6's fills).
  assert flts[0] - flts[1] == 8 * channels
  fills = {(p["layer"], p["index"]): p["fill"]
           for p in _header(folded.read_bytes())["float_params"] if "fill" in p}
  want = {(l.name, i): v for l in norms for i, v in ((2, 0.0), (3, 1.0))}
  want["logits", 1] = 0.0  # The untrained classifier's bias: zeros.
  assert fills == want
  assert sizes["file_bytes"] == os.path.getsize(folded)
  images, _ = _mnist(data_dir, "test", 8)  # Real digits, CIFAR-shaped.
  x = np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
  want = model(x, training=False).numpy()
  np.testing.assert_allclose(loaded(x).numpy(), want,
                             atol=1e-5 * np.abs(want).max())
  # Without batch norm the option changes nothing.
  lenet = tmp_path / "lenet.lnx"
  fileformat.save_compressed(trained[0], lenet, fold_batch_norm=True)
  assert lenet.read_bytes() == saved[0].read_bytes()

  # batch_norm_bits: the folded vectors on 8-place grids.
  gridded = tmp_path / "gridded.lnx"
  fileformat.save_compressed(model, gridded, fold_batch_norm=True,
                             batch_norm_bits=8)
  loaded = fileformat.load_compressed(gridded)
  _assert_on_folded_grids(norms, loaded, 8)
  flts = [[s["bytes"] for s in fileformat.inspect_compressed(p)["sections"]
           if s["tag"] == "FLTS"][0] for p in (folded, gridded)]
  # Two float32 vectors a channel become about 2 x 10 bits (Rice coded).
  assert flts[0] - flts[1] >= (64 - 2 * 11) * channels // 8
  # The scales, all positive, are coded less an offset: their integers'
  # rounded median, computed here from the loaded values.
  offsets = {p["layer"]: p["grid"] for p in _header(gridded.read_bytes())[
      "float_params"] if p["index"] == 0 and len(p.get("grid", ())) == 4}
  assert len(offsets) >= len(norms) // 2
  for name, (exponent, _, _, offset) in offsets.items():
    q = loaded.get_layer(name).gamma.numpy().astype(np.float64) / 2.0**exponent
    assert offset == round(float(np.median(q))) > 0
  np.testing.assert_allclose(loaded(x).numpy(), want,
                             atol=0.05 * np.abs(want).max())
  # A channel of constant input (variance 0: a zero kernel's) has its scale
  # clipped to the others' largest first, the same output at the mean.
  dead = norms[-1]
  gamma, beta, mean, var = dead.get_weights()
  var[3], mean[3] = 0.0, 2.5
  dead.set_weights([gamma, beta, mean, var])
  fileformat.save_compressed(model, gridded, fold_batch_norm=True,
                             batch_norm_bits=8)
  _assert_on_folded_grids([dead], fileformat.load_compressed(gridded), 8,
                          constant=3)
  with pytest.raises(ValueError, match="fold_batch_norm=True"):
    fileformat.save_compressed(model, gridded, batch_norm_bits=8)
  for bad in (0, 17, 2.5, True):
    with pytest.raises(ValueError, match="batch_norm_bits"):
      fileformat.save_compressed(model, gridded, fold_batch_norm=True,
                                 batch_norm_bits=bad)


def test_mobilenet_v2_with_depthwise_groups_round_trips(data_dir, tmp_path):
  tf.keras.utils.set_random_seed(1)
  model = lilnetx_tf.compressible(
      build_model("mobilenet_v2", (32, 32, 3), 10, alpha=0.35), seed=1)
  assert "depthwise3x3" in model.group_layers
  rng = np.random.default_rng(1)
  for layer in model.network.layers:  # Batch norm statistics as if trained.
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                         for w in layer.get_weights()])
  path = tmp_path / "mobilenet.lnx"
  sizes = fileformat.save_compressed(model, path)
  entropy = sum(by_hand.group_entropy_bits(model).values()) / 8
  groups = len(model.group_layers)
  assert entropy - 8 * groups <= sizes["latent_bytes"]
  assert sizes["latent_bytes"] <= 1.03 * entropy + 16 * groups
  images, _ = _mnist(data_dir, "test", 8)  # Real digits, CIFAR-shaped.
  x = np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
  _assert_round_trip(model, fileformat.load_compressed(path), x)


# -- Bad input -----------------------------------------------------------------


def _layout(data):
  """[(tag, offset, payload offset, payload length)] of a file's sections."""
  out, pos = [], sections.PREAMBLE.size
  while pos < len(data):
    tag, length, _ = struct.unpack_from("<4sQI", data, pos)
    out.append((tag, pos, pos + 16, length))
    pos += 16 + length
  return out


def _payloads(data):
  """[(tag, payload)] of a file's sections after the header."""
  return [(tag, data[body:body + length])
          for tag, _, body, length in _layout(data)[1:]]


def _with_payload(data, index, payload):
  """The file with section `index` replaced (consistent length and CRC)."""
  tag, start, body, length = _layout(data)[index]
  return (data[:start] + sections.pack_section(tag, payload) + payload +
          data[body + length:])


def _zdict(data):
  """The preset dictionary of the file's header stream (version 5 on)."""
  version = struct.unpack_from("<I", data, 8)[0]
  return dictionary.HEADER_DICTIONARY if version >= 5 else b""


def _deflate_head(data, raw):
  """`raw` as the HEAD payload of a file like `data`."""
  deflater = zlib.compressobj(9, zdict=_zdict(data))
  return deflater.compress(raw) + deflater.flush()


def _inflate_head(data, payload):
  return zlib.decompressobj(zdict=_zdict(data)).decompress(payload)


def _header(data):
  _, _, body, length = _layout(data)[0]
  return json.loads(_inflate_head(data, data[body:body + length]))


def _with_header(data, edit):
  header = _header(data)
  edit(header)
  return _with_payload(data, 0,
                       _deflate_head(data, json.dumps(header).encode()))


def _set(path, value):
  """A header edit: sets header[path[0]][path[1]]... to `value`."""
  def edit(header):
    obj = header
    for key in path[:-1]:
      obj = obj[key]
    obj[path[-1]] = value
  return edit


def _architecture_edit(class_name, **fields):
  """Makes the last layer of the architecture a `class_name` layer."""
  def edit(header):
    layer = header["architecture"]["config"]["layers"][-1]
    layer["class_name"] = class_name
    layer.update(fields)
  return edit


def _layers(header):
  return header["architecture"]["config"]["layers"]


def _dense_units(units):
  def edit(header):
    for layer in header["architecture"]["config"]["layers"]:
      if layer["class_name"] == "Dense":
        layer["config"]["units"] = units
  return edit


def _header_edits():
  g0, g1 = ["groups", 0], ["groups", 1]
  return {
      "version bumped": _set(["format_version"], 5),
      "version 3 in a version 4 file": _set(["format_version"], 3),
      "version string": _set(["format_version"], "1"),
      "float64": _set(["float_dtype"], "float64"),
      "no groups": _set(["groups"], []),
      "groups not a list": _set(["groups"], {"a": 1}),
      "positions changed": _set(g0 + ["positions"], 9),
      "positions huge": _set(g0 + ["positions"], 2**40),
      "cdf_length +1": lambda h: h["groups"][0].update(
          cdf_length=h["groups"][0]["cdf_length"] + 1),
      "cdf_length huge": _set(g0 + ["cdf_length"], 2**62),
      "shape doubled": lambda h: h["groups"][0]["shapes"][1].__setitem__(
          2, 2 * h["groups"][0]["shapes"][1][2]),
      "shape huge": _set(g1 + ["shapes", 0], [2**31 - 1, 2**31 - 1]),
      "shape too many for the file": _set(g1 + ["shapes", 0], [40000, 50000]),
      "shape too many for the section": _set(g1 + ["shapes", 0], [8000, 5000]),
      "shape zero": _set(g1 + ["shapes", 0], [0, 500]),
      "shape negative": _set(g1 + ["shapes", 0], [-800, -500]),
      "shape float": _set(g1 + ["shapes", 0], [800.0, 500]),
      "shape rank 3": _set(g1 + ["shapes", 0], [800, 500, 1]),
      "shapes swapped": lambda h: h["groups"][1]["shapes"].reverse(),
      "kernel weights missing": lambda h: h["groups"][0].pop("weights"),
      "kernel weight 2": _set(g0 + ["weights", 0], 2),
      "kernel weight 1 of a Conv2D": _set(g0 + ["weights", 0], 1),
      "kernel weight string": _set(g0 + ["weights", 0], "0"),
      "kernel weights short": _set(g0 + ["weights"], []),
      "layer renamed": _set(g1 + ["layers", 0], "nowhere"),
      "layer in two groups": _set(g1 + ["layers", 0], "conv1"),
      "layer dropped": lambda h: (h["groups"][1]["layers"].pop(),
                                  h["groups"][1]["shapes"].pop()),
      "float shape huge": _set(["float_params", 0, "shape"], [2**31 - 1] * 3),
      "float shape wrong": _set(["float_params", 0, "shape"], [10, 2]),
      "float index": _set(["float_params", 0, "index"], 0),
      "float dtype": _set(["float_params", 0, "dtype"], "int64"),
      "float dropped": lambda h: h["float_params"].pop(),
      "float doubled": lambda h: h["float_params"].append(
          h["float_params"][0]),
      "no architecture": lambda h: h.pop("architecture"),
      "Lambda": _architecture_edit("Lambda"),
      "TFOpLambda": _architecture_edit("TFOpLambda"),
      "unknown class": _architecture_edit("Popen", module="subprocess"),
      "foreign module": _architecture_edit("Dense", module="os"),
      "registered name": _architecture_edit("Dense",
                                            registered_name="os>system"),
      "function": _architecture_edit("function", module="builtins"),
      "activation by registered name": lambda h: h["architecture"]["config"][
          "layers"][-1]["config"].update(activation="lilnetx_tf>GroupPrior"),
      "dense huge": _dense_units(10**9),
      "dense wider": _dense_units(501),
      # Keras would wait forever for a node that is never made.
      "inbound node index": lambda h: _layers(h)[2]["inbound_nodes"][0][0]
                                      .__setitem__(1, 1),
      "layer cycle": lambda h: _layers(h)[1].update(
          inbound_nodes=[[[_layers(h)[-1]["config"]["name"], 0, 0, {}]]]),
      "second output as a keyword argument": lambda h: _layers(h)[2][
          "inbound_nodes"][0][0].__setitem__(3, {"mask": ["conv1", 0, 1]}),
      "output node index": _set(["architecture", "config", "output_layers",
                                 0, 1], 1),
      "layer called on nothing": lambda h: _layers(h)[2].update(
          inbound_nodes=[[]]),
      "Sequential of a list": _set(["architecture"], dict(
          class_name="Sequential", config=[])),
      "layer dtype float16": lambda h: _layers(h)[-1]["config"].update(
          dtype="float16"),
      "layer dtype float64": lambda h: _layers(h)[-1]["config"].update(
          dtype="float64"),
      # Legal: float32 weights, float16 arithmetic; the original model.
      "mixed precision": lambda h: _layers(h)[-1]["config"].update(dtype=dict(
          module="keras.mixed_precision", class_name="Policy",
          config=dict(name="mixed_float16"), registered_name=None)),
      "header list": lambda h: h.clear(),
      "coder unknown": _set(["coder"], "range"),
      "coder a number": _set(["coder"], 1),
      "coder missing": lambda h: h.pop("coder"),
      # Version 6 entries take their config's name; without one, none.
      "layer config without a name": lambda h: _layers(h)[2]["config"].pop(
          "name"),
      "layer config name a number": _set(["architecture", "config", "layers",
                                          2, "config", "name"], 7),
      "layer entry config a list": _set(["architecture", "config", "layers",
                                         2, "config"], []),
  }


def _variants(data, rng):
  """Yields (description, corrupted bytes): several thousand of them."""
  layout = _layout(data)
  n = len(data)
  yield "empty", b""
  yield "png", b"\x89PNG\r\n\x1a\n" + bytes(100)
  yield "zip", b"PK\x03\x04" + bytes(100)
  yield "gzip", gzip.compress(data[:1000])
  yield "text", b"hello world\n" * 10
  yield "magic only", data[:8]
  yield "trailing byte", data + b"\0"
  yield "trailing section", data + data[layout[-1][1]:]
  yield "prefixed", b"\0" + data
  edges = {edge + d for _, start, body, length in layout
           for edge in (start, body + length) for d in (-1, 0, 1, 15, 16)}
  for cut in sorted(set(range(64)) | set(rng.integers(0, n, 800).tolist()) |
                    edges):
    if 0 <= cut < n:
      yield f"truncated at {cut}", data[:cut]
  for tag, start, body, length in layout:  # Flips in every section.
    for bit in rng.integers(0, 8 * (16 + length), 300).tolist():
      yield f"bit {bit} of {tag}", _flip(data, 8 * start + bit)
  for bit in range(8 * sections.PREAMBLE.size):
    yield f"preamble bit {bit}", _flip(data, bit)
  for _ in range(1500):
    bits = rng.integers(0, 8 * n, rng.integers(2, 9)).tolist()
    yield f"bits {bits}", _flip(data, *bits)
  for _ in range(200):
    at, size = int(rng.integers(0, n)), int(rng.integers(1, 64))
    yield f"bytes {at}+{size} zeroed", (data[:at] + bytes(size) +
                                        data[at + size:])
  for tag, start, body, length in layout:
    for new in (0, length - 1, length + 1, 2**31, 2**63, 2**64 - 1):
      yield (f"{tag} length {new}",
             data[:start + 4] + struct.pack("<Q", new) + data[start + 12:])
    yield f"{tag} tag", data[:start] + b"ZZZZ" + data[start + 4:]
  head_start = layout[0][1]
  yield "header 16 MiB + 1", (data[:head_start + 4] +
                              struct.pack("<Q", 16 * 2**20 + 1) +
                              data[head_start + 12:])
  big = json.dumps({"pad": "x" * (16 * 2**20)}).encode()
  yield "header inflates over 16 MiB", _with_payload(data, 0,
                                                     _deflate_head(data, big))
  yield "header not deflated", _with_payload(data, 0, b'{"a": 1}')
  head = _deflate_head(data, json.dumps(_header(data)).encode())
  yield "header stream cut", _with_payload(data, 0, head[:-5])
  yield "header stream + junk", _with_payload(data, 0, head + b"junk")
  yield "header not JSON", _with_payload(
      data, 0, _deflate_head(data, b"{not json"))
  yield "header not UTF-8", _with_payload(
      data, 0, _deflate_head(data, b"\xff\xfe"))
  yield "header deep", _with_payload(
      data, 0, _deflate_head(data, b"[" * 100000 + b"]" * 100000))
  for name, edit in _header_edits().items():
    yield f"header: {name}", _with_header(data, edit)
  yield "version 3", _with_version(data, 3)
  yield "version 1", _with_version(data, 1)
  yield "version 0", _with_version(data, 0)
  for name, payload in _table_edits(data, layout).items():
    yield f"tables: {name}", _with_payload(data, 1, payload)
  yield "decoder short", _with_payload(data, 2, bytes(4 * 25 * 25 - 4))
  yield "latents empty", _with_payload(data, 3, b"")
  yield "floats short", _with_payload(data, len(layout) - 1,
                                      data[layout[-1][2]:-4])


def _flip(data, *bits):
  out = bytearray(data)
  for bit in bits:
    out[bit // 8] ^= 1 << (bit % 8)
  return bytes(out)


def _with_version(data, version):
  return data[:8] + struct.pack("<I", version) + data[12:]


def _leb128(numbers):
  out = bytearray()
  for n in numbers:
    while n >= 0x80:
      out.append(n & 0x7F | 0x80)
      n >>= 7
    out.append(n)
  return bytes(out)


def _tables_v3(payload):
  """The numbers of a version-3 TABL payload (decoded independently)."""
  return _leb128_numbers(zlib.decompress(payload))


def _leb128_numbers(raw):
  """Unsigned LEB128 numbers; an unfinished last one is left out."""
  numbers, value, shift = [], 0, 0
  for byte in raw:
    value |= (byte & 0x7F) << shift
    shift += 7
    if byte < 0x80:
      numbers.append(value)
      value, shift = 0, 0
  return numbers


def _table_edits(data, layout):
  """Edited coding tables of the first group, consistently re-deflated."""
  _, _, body, length = layout[1]
  numbers = _tables_v3(data[body:body + length])
  starts, pos = [], 0
  while pos < len(numbers):  # precision, zigzag offset, count, frequencies
    starts.append(pos)
    pos += 3 + numbers[pos + 2]

  def edit(index, value, numbers=numbers):
    edited = list(numbers)
    edited[index] = value
    return edited

  edits = {
      "precision 17": edit(starts[3], 17),
      "precision 0": edit(starts[3], 0),
      "frequencies over the precision": edit(starts[2] + 3, 2**16),
      "count beyond the tables": edit(starts[-1] + 2, 10**6),
      "count 0": edit(starts[1] + 2, 0),
      "offset huge": edit(starts[0] + 1, 2**40),
      "one table less": numbers[:starts[-1]],
      "numbers after the tables": numbers + [1, 2, 3],
  }
  payloads = {name: zlib.compress(_leb128(v)) for name, v in edits.items()}
  payloads["number too long"] = zlib.compress(bytes([0x80] * 9 + [1]))
  payloads["ends inside a number"] = zlib.compress(_leb128(numbers) + b"\x80")
  payloads["not zlib"] = b"not zlib data"
  payloads["zlib bomb"] = zlib.compress(bytes(50 * 2**20))
  payloads["tiny stream"] = zlib.compress(b"")
  return payloads


def test_mutations_raise_or_load_the_original(trained, saved):
  """Thousands of damaged files: each is refused or is the original model."""
  data = saved[0].read_bytes()
  reference = [w.numpy() for w in fileformat.load_compressed(saved[0]).weights]
  outcomes, failures = {"refused": 0, "original": 0}, []
  for description, variant in _variants(data, np.random.default_rng(0)):
    try:
      # Parsing checks everything but range decoding and building the model;
      # a variant that passes it is loaded in full.
      model = fileformat.load_compressed_bytes(variant)
    except CorruptFileError:
      outcomes["refused"] += 1
      continue
    except Exception as e:  # pylint: disable=broad-except
      failures.append(f"{description}: {type(e).__name__}: {e}")
      continue
    weights = [w.numpy() for w in model.weights]
    if len(weights) == len(reference) and all(
        np.array_equal(a, b) for a, b in zip(weights, reference)):
      outcomes["original"] += 1
    else:
      failures.append(f"{description}: loaded a different model")
  assert not failures, failures[:10]
  assert sum(outcomes.values()) > 5000, outcomes


# -- Deliberate edits ----------------------------------------------------------
#
# Edits made on purpose rather than damage: payloads and the inflated header
# are changed with their lengths and CRCs recomputed, so only the reader's own
# checks stand between an edit and the model. The file edited is the version 5
# golden file: five groups (one a separable convolution's pointwise kernel,
# weight 1), batch norm, Conv1D, decoders and float weights both on grids
# (Rice codes) and in float32; small enough to load a few hundred times.

_GOLDEN_V4 = ROOT / "tests" / "data" / "golden_v4.lnx"
_GOLDEN_V5 = ROOT / "tests" / "data" / "golden_v5.lnx"
# Version 7, the same network as version 6's, one file per range coder.
_GOLDEN_V7 = {TFC: ROOT / "tests" / "data" / "golden_v7_tfc.lnx",
              CONSTRICTION: ROOT / "tests" / "data" /
                            "golden_v7_constriction.lnx"}
# Kinds of edit that always make a legal file.
_LEGAL_KINDS = ("DECO values", "FLTS values", "sections consistent")

# What a hostile header puts anywhere.
_HOSTILE_VALUES = (
    0, -1, 1, 2, 3, 9, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -2**63, 10**40,
    0.0, -0.0, 0.5, 3.0, 1e308, float("nan"), float("inf"), float("-inf"),
    "NaN", "Infinity", "-1", "", "0", "x" * 5000, "float32", "float16",
    "conv2d", "dense", "batch_normalization", "keras.layers", "Dense",
    "lilnetx_tf>ChannelPad", None, True, False, [], [0], [1, 1], [3, 3, 3, 4],
    [[]], [2**31] * 4, [None], {}, {"name": 1}, {"class_name": "Lambda"},
    [[[[[[[[[[0]]]]]]]]]])
# Numbers a hostile coding table holds (LEB128 takes up to 5 bytes: 2**35).
_HOSTILE_NUMBERS = (0, 1, 2, 15, 16, 17, 255, 2**16 - 1, 2**16, 2**16 + 1,
                    2**31 - 1, 2**31, 2**32, 2**35 - 1, 2**35)
# Float32 bit patterns worth writing: NaN, infinities, denormal, the extremes.
_HOSTILE_FLOATS = np.array([0x7FC00000, 0x7F800001, 0x7F800000, 0xFF800000,
                            0x00000001, 0x7F7FFFFF, 0x80000000],
                           np.uint32).astype("<u4").tobytes()


def _nodes(obj, path=()):
  """Paths of every value of a JSON tree, containers included."""
  yield path
  if isinstance(obj, dict):
    items = obj.items()
  elif isinstance(obj, list):
    items = enumerate(obj)
  else:
    items = ()
  for key, value in items:
    yield from _nodes(value, path + (key,))


def _at(obj, path):
  for key in path:
    obj = obj[key]
  return obj


def _factorings(shape, rng):
  """Other shapes of the same number of elements, some of another rank."""
  size = int(np.prod(shape))
  divisors = [d for d in range(1, size + 1) if size % d == 0]
  a = int(rng.choice(divisors))
  b = int(rng.choice([d for d in divisors if (size // a) % d == 0]))
  return [[int(d) for d in rng.permutation(shape)], [a, size // a],
          [a, b, size // a // b], [b, a, 1, size // a // b], [size],
          list(shape) + [1]]


def _edit_header_node(header, path, rng, paths):
  """Applies one random edit at `path` of `header` (in place).

  Returns:
    What was done, for the case's description.
  """
  parent, key = _at(header, path[:-1]), path[-1]
  value = parent[key]
  ops = ["set", "set", "drop", "repeat", "swap"]
  if isinstance(value, int) and not isinstance(value, bool):
    ops += ["lie"] * 3  # Counts, shapes, indices, lengths.
  if isinstance(value, str):
    ops += ["string"]
  if (isinstance(value, list) and value and
      all(isinstance(d, int) and d > 0 for d in value)):
    ops += ["reshape"] * 3  # A shape that holds as many elements.
  # Values elsewhere in the same region, neither inside the other.
  others = [p for p in paths if p[:len(path)] != path and
            path[:len(p)] != p]
  op = ops[rng.integers(len(ops))]
  if op == "repeat" and not isinstance(parent, list):
    op = "swap"
  if op == "swap" and not others:
    op = "set"
  if op == "set":
    new = _HOSTILE_VALUES[rng.integers(len(_HOSTILE_VALUES))]
    parent[key] = json.loads(json.dumps(new))
    return f"set to {str(new)[:40]}"
  if op == "lie":
    new = [value - 1, value + 1, 2 * value, value // 2, -value, value + 2**32,
           0][rng.integers(7)]
    parent[key] = new
    return f"{value} -> {new}"
  if op == "string":
    new = [value + "_", value.upper(), value[:-1], value * 2,
           value + "\u00e9\0"][rng.integers(5)]
    parent[key] = new
    return f"{value[:40]!r} -> {new[:40]!r}"
  if op == "reshape":
    options = _factorings(value, rng)
    parent[key] = options[rng.integers(len(options))]
    return f"{value} -> {parent[key]}"
  if op == "drop":
    del parent[key]
    return "dropped"
  if op == "repeat":
    parent.insert(key, json.loads(json.dumps(value)))
    return "repeated"
  other = others[rng.integers(len(others))]
  parent[key] = json.loads(json.dumps(_at(header, other)))
  _at(header, other[:-1])[other[-1]] = json.loads(json.dumps(value))
  return f"swapped with {'/'.join(map(str, other))}"


def _header_cases(data, rng, count):
  """Random edits anywhere in the inflated header, re-deflated."""
  header = _header(data)
  regions = {name: list(_nodes(header[name], (name,)))
             for name in ("groups", "float_params", "architecture")}
  regions["top"] = [(key,) for key in header]
  names = ["groups", "float_params", "architecture", "top"]
  for _ in range(count):
    region = names[rng.choice(4, p=[0.48, 0.32, 0.07, 0.13])]
    paths = regions[region]
    path = paths[rng.integers(len(paths))]
    edited = json.loads(json.dumps(header))
    what = _edit_header_node(edited, path, rng, paths)
    yield (f"header {region}", "/".join(map(str, path)) + f": {what}",
           _with_payload(data, 0,
                         _deflate_head(data, json.dumps(edited).encode())),
           None)


def _byte_edit(raw, rng, floats=False):
  """`raw` with a random edit of its bytes (its length may change)."""
  raw = bytearray(raw)
  at = int(rng.integers(len(raw) + 1))
  op = rng.integers(8 if raw else 2)
  if op == 0:
    raw[at:at] = rng.bytes(int(rng.integers(1, 5)))
    return bytes(raw), f"inserted at {at}"
  if op == 1:
    raw += rng.bytes(int(rng.integers(1, 9)))
    return bytes(raw), "extended"
  at = min(at, len(raw) - 1)
  if op == 2:
    del raw[at:at + int(rng.integers(1, 5))]
    return bytes(raw), f"deleted at {at}"
  if op == 3:
    return bytes(raw[:at]), f"cut at {at}"
  if op == 4:
    raw[at] ^= 1 << int(rng.integers(8))
    return bytes(raw), f"bit flipped at {at}"
  if op == 5 and floats and len(raw) >= 4:
    at -= at % 4
    k = int(rng.integers(len(_HOSTILE_FLOATS) // 4))
    raw[at:at + 4] = _HOSTILE_FLOATS[4 * k:4 * k + 4]
    return bytes(raw), f"float at {at} made pattern {k}"
  new = [0x00, 0x7F, 0x80, 0xFF, int(rng.integers(256))][rng.integers(5)]
  raw[at] = new
  return bytes(raw), f"byte {at} set to {new:#x}"


def _table_layout(numbers):
  """Start of each table in a list of TABL numbers, or None if malformed."""
  starts, pos = [], 0
  while pos + 3 <= len(numbers):
    starts.append(pos)
    pos += 3 + numbers[pos + 2]
  return starts if pos == len(numbers) else None


def _table_cases(data, rng, count):
  """Edited coding tables: numbers, table structure and raw bytes.

  Half the time the header's `cdf_length` is set to what the edited tables
  hold, so that the edit gets past that check.
  """
  layout, header = _layout(data), _header(data)
  for _ in range(count):
    g = int(rng.integers(len(header["groups"])))
    _, _, body, length = layout[1 + 3 * g]
    payload = data[body:body + length]
    numbers = _tables_v3(payload)
    starts = _table_layout(numbers)
    assert starts is not None
    op = rng.integers(6)
    if op == 0:  # Precision, offset, count or a frequency of one table.
      t = int(rng.integers(len(starts)))
      field = starts[t] + int(rng.integers(3 + numbers[starts[t] + 2]))
      value = numbers[field]
      new = max(0, [value - 1, value + 1, _HOSTILE_NUMBERS[
          rng.integers(len(_HOSTILE_NUMBERS))]][rng.integers(3)])
      edited = list(numbers)
      edited[field] = new
      what = f"table {t} number {field - starts[t]}: {value} -> {new}"
    elif op == 1:  # A value more or less, with the count to match.
      t = starts[rng.integers(len(starts))]
      edited = list(numbers)
      end = t + 3 + numbers[t + 2]
      if rng.integers(2) and numbers[t + 2] > 1:
        del edited[end - 1]
        edited[t + 2] -= 1
        what = f"table {starts.index(t)} one value less"
      else:
        edited.insert(end, int(rng.integers(0, 3)))
        edited[t + 2] += 1
        what = f"table {starts.index(t)} one value more"
    elif op == 2:  # Whole tables dropped, repeated or swapped.
      tables = [numbers[s:e] for s, e in zip(starts,
                                             starts[1:] + [len(numbers)])]
      i, j = rng.integers(len(tables), size=2)
      what = ["dropped", "repeated", "swapped"][rng.integers(3)]
      if what == "dropped":
        del tables[i]
      elif what == "repeated":
        tables.insert(i, tables[i])
      else:
        tables[i], tables[j] = tables[j], tables[i]
      what = f"tables {i}, {j} {what}"
      edited = [n for table in tables for n in table]
    elif op == 3:  # Any number, anywhere.
      edited = list(numbers)
      i = int(rng.integers(len(edited)))
      edited[i] = _HOSTILE_NUMBERS[rng.integers(len(_HOSTILE_NUMBERS))]
      what = f"number {i} -> {edited[i]}"
    if op <= 3:
      raw = _leb128(edited)
    elif op == 4:  # The LEB128 bytes themselves.
      raw, what = _byte_edit(zlib.decompress(payload), rng)
    else:  # The zlib stream: its checksum refuses it, or it is unchanged.
      edited, what = _byte_edit(payload, rng)
      yield ("TABL zlib", f"group {g}: {what}",
             _with_payload(data, 1 + 3 * g, edited), set())
      continue
    variant = _with_payload(data, 1 + 3 * g, zlib.compress(raw))
    edited = _leb128_numbers(raw)
    implied = _table_layout(edited)
    if rng.integers(2) and implied is not None:
      cdf_length = sum(edited[s + 2] + 3 for s in implied)
      variant = _with_header(variant, _set(["groups", g, "cdf_length"],
                                           cdf_length))
      what += f", cdf_length {cdf_length}"
    yield "TABL", f"group {g}: {what}", variant, _kernels_of(header, g)


def _kernels_of(header, g):
  group = header["groups"][g]
  return set(zip(group["layers"], group["weights"]))


def _payload_cases(data, rng, count):
  """Edited DECO, LATS and FLTS payloads, some resized."""
  layout, header = _layout(data), _header(data)
  offsets = np.cumsum([0] + _float_sizes(header))
  for _ in range(count):
    tag = [b"LATS", b"DECO", b"FLTS"][rng.choice(3, p=[0.45, 0.35, 0.2])]
    index = int(rng.choice([i for i, (t, *_) in enumerate(layout) if t == tag]))
    _, _, body, length = layout[index]
    payload = data[body:body + length]
    edited, what = _byte_edit(payload, rng, floats=tag != b"LATS")
    if rng.integers(3) == 0:  # Several edits.
      edited, more = _byte_edit(edited, rng, floats=tag != b"LATS")
      what += ", " + more
    kind = tag.decode()
    if tag == b"FLTS":
      changed = np.flatnonzero(np.frombuffer(edited[:length], np.uint8) !=
                               np.frombuffer(payload[:len(edited)], np.uint8))
      hit = {int(np.searchsorted(offsets, i, "right")) - 1 for i in changed}
      may_change = {(header["float_params"][i]["layer"],
                     header["float_params"][i]["index"]) for i in hit}
      coded = any("grid" in header["float_params"][i] for i in hit)
    else:
      may_change = _kernels_of(header, (index - 1) // 3)
      coded = "decoder" in header["groups"][(index - 1) // 3]
    if len(edited) != length:
      kind += " resized"
    elif tag != b"LATS":
      # Any float32 bytes are legal values; Rice codes (grids) may not be.
      kind += " bits" if coded else " values"
    yield kind, what, _with_payload(data, index, edited), may_change


def _structure_cases(data, rng):
  """Sections dropped, repeated, swapped or moved, CRCs intact."""
  layout = _layout(data)
  chunks = [data[start:body + length] for _, start, body, length in layout]
  n = len(chunks)
  for i in range(n):
    yield "sections", f"{i} dropped", data[:12] + b"".join(
        chunks[:i] + chunks[i + 1:]), None
    yield "sections", f"{i} repeated", data[:12] + b"".join(
        chunks[:i + 1] + chunks[i:]), None
    j = int(rng.integers(n))
    swapped = list(chunks)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    yield "sections", f"{i} and {j} swapped", data[:12] + b"".join(
        swapped), None
  groups = [chunks[1 + 3 * g:4 + 3 * g] for g in range((n - 2) // 3)]
  reordered = data[:12] + b"".join(
      [chunks[0]] + [c for g in reversed(groups) for c in g] + [chunks[-1]])
  yield "sections", "groups reversed", reordered, None
  # Reversed in the header too: a legal file of the same model.
  yield "sections consistent", "groups reversed with the header", (
      _with_header(reordered, lambda h: h["groups"].reverse())), set()


def _json_text_cases(data, rng, count):
  """Byte edits of the header's JSON text, and of its zlib stream."""
  _, _, body, length = _layout(data)[0]
  text = _inflate_head(data, data[body:body + length])
  for _ in range(count):
    edited, what = _byte_edit(text, rng)
    yield "HEAD text", what, _with_payload(
        data, 0, _deflate_head(data, edited)), None
  for _ in range(count // 3):
    edited, what = _byte_edit(data[body:body + length], rng)
    yield "HEAD zlib", what, _with_payload(data, 0, edited), set()


def _deliberate_edits(data, rng):
  """Yields (kind, description, bytes, may_change) for the fuzz test.

  `may_change` is the set of weights `(layer, index)` that may differ from
  the original file's, if the edit is legal; None where the edit may
  legally change anything (the file's own contents then define the model).
  """
  # Few enough of the edits that load (each builds a Keras model) to keep the
  # test to a minute on a slow machine.
  yield from _header_cases(data, rng, 1800)
  yield from _table_cases(data, rng, 450)
  yield from _payload_cases(data, rng, 150)
  yield from _structure_cases(data, rng)
  yield from _json_text_cases(data, rng, 150)


def _read_by_hand(data):
  """(layer, weight index) -> float32 array: the weights a file holds.

  Read from the bytes with the test's own helpers, the range coder and
  `decode_kernel` (which define the format), none of the reader's checks.
  """
  layout, header = _layout(data), _header(data)
  payloads = [data[body:body + length] for _, _, body, length in layout]
  groups = header["groups"]
  assert [t for t, *_ in layout] == (
      [b"HEAD"] + [b"TABL", b"DECO", b"LATS"] * len(groups) + [b"FLTS"])
  weights = {}
  for g, group in enumerate(groups):
    weights.update(_group_by_hand(*payloads[1 + 3 * g:4 + 3 * g],
                                  json.dumps(group),
                                  header.get("coder", TFC)))
  dtype = np.dtype({"float32": "<f4", "float16": "<f2"}[header["float_dtype"]])
  start, floats = 0, payloads[-1]
  for p, size in zip(header["float_params"], _float_sizes(header)):
    n = int(np.prod(p["shape"]))
    if "grid" in p:
      values = _grid_by_hand(floats[start:start + size], n, *p["grid"][:2])
    else:
      values = np.frombuffer(floats[start:start + size], dtype)
    weights[(p["layer"], p["index"])] = values.astype(np.float32).reshape(
        p["shape"])
    start += size
  assert start == len(floats)
  return weights


def _float_sizes(header):
  """The bytes of each float parameter in the FLTS section."""
  itemsize = {"float32": 4, "float16": 2}[header["float_dtype"]]
  return [p["grid"][2] if "grid" in p else itemsize * int(np.prod(p["shape"]))
          for p in header["float_params"]]


def _grid_by_hand(data, count, exponent, k):
  """float32 `q * 2**exponent` of Rice-coded integers `q`."""
  q = by_hand.rice_decode(data, count, k)
  assert count == 0 or np.abs(q).max() < 2**24  # Else not a float32.
  return np.float32(q * 2.0**exponent)


@functools.lru_cache(maxsize=64)
def _group_by_hand(tables, matrix, latents, group, coder):
  """The kernels of one group (its TABL, DECO, LATS, header entry, coder)."""
  group, weights = json.loads(group), {}
  raw = zlib.decompress(tables)
  assert raw and raw[-1] < 0x80  # Complete LEB128 numbers.
  numbers, positions = _leb128_numbers(raw), group["positions"]
  cdf, offsets = [], []
  for start in _table_layout(numbers):
    precision, zigzag, count = numbers[start:start + 3]
    assert 1 <= precision <= 16 and count >= 1
    frequencies = numbers[start + 3:start + 3 + count]
    assert 0 < sum(frequencies) < 2**precision
    cdf += [-precision, 0] + list(np.cumsum(frequencies)) + [2**precision]
    offsets.append(zigzag // 2 if zigzag % 2 == 0 else -(zigzag + 1) // 2)
  assert len(cdf) == group["cdf_length"] and len(offsets) == positions
  assert all(len(s) in (2, 3, 4) and np.prod(s[:-2]) == positions
             for s in group["shapes"])
  rows = [int(np.prod(shape)) // positions for shape in group["shapes"]]
  symbols = codec.decode_symbols(bytes(latents), sum(rows), cdf, offsets,
                                 coder)
  if "decoder" in group:  # scale * unit, the unit matrix on its grid.
    exponent, k = group["decoder"]
    matrix = np.frombuffer(matrix[:4], "<f4") * _grid_by_hand(
        matrix[4:], positions**2, exponent, k)
  matrix = np.frombuffer(matrix, "<f4").reshape(positions, positions)
  start = 0
  for layer, index, shape, n in zip(group["layers"], group["weights"],
                                    group["shapes"], rows):
    latent = groups_lib.from_slices(
        symbols[start:start + n].astype(np.float32), shape)
    weights[(layer, index)] = decoders.decode_kernel(latent, matrix).numpy()
    start += n
  return weights


def _loaded_weights(model):
  """(layer, weight index) -> value of a loaded model's weights."""
  weights, stack = {}, list(model.layers)
  while stack:
    layer = stack.pop()
    if isinstance(layer, tf.keras.Model):
      stack.extend(layer.layers)
    for index, weight in enumerate(layer.weights):
      weights[(layer.name, index)] = weight.numpy()
  return weights


def _same(a, b):
  return (a.dtype == b.dtype and a.shape == b.shape and
          np.array_equal(a, b, equal_nan=True))


def _check_loaded(model, variant, original, may_change):
  """Why a loaded variant is not a legal reading of its bytes, or None."""
  got = _loaded_weights(model)
  try:
    want = _read_by_hand(variant)
  except Exception as e:  # pylint: disable=broad-except
    return f"loaded, but the file is not valid: {type(e).__name__}: {e}"
  if len(got) != len(model.weights) or set(got) != set(want):
    return f"loaded weights {sorted(set(got) ^ set(want))[:4]} differ"
  wrong = [key for key in got if not _same(got[key], want[key])]
  if wrong:
    return f"loaded weights {wrong[:4]} differ from the file's"
  changed = {key for key in got
             if key not in original or not _same(got[key], original[key])}
  if may_change is not None and not changed <= may_change:
    return f"weights {sorted(changed - may_change)[:4]} changed"
  return None


@pytest.mark.needs_tfc  # The version 5 golden file is tfc-coded.
def test_deliberate_edits_raise_or_load_what_the_file_says():
  """Thousands of edited files with consistent CRCs, refused or read right.

  Every case is refused with a `CorruptFileError` or loads as a model holding
  exactly the weights its bytes say (read by hand, which also refuses what no
  legal file holds, e.g. a resized decoder or float section), and a loaded
  edit of one group's tables, decoder or latents, or of some float weights,
  changes those weights only; decoder and float values always load. No case
  may take a GiB of memory more than the cases before it; the slow ones (over
  2 s: a hang shows as one that never ends) are listed in the messages.
  """
  data = _GOLDEN_V5.read_bytes()
  original = _loaded_weights(fileformat.load_compressed_bytes(data))
  assert set(original) == set(_read_by_hand(data))
  assert all(_same(original[k], v) for k, v in _read_by_hand(data).items())
  outcomes = collections.Counter()
  failures, slow, peaks = [], [], []
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  for kind, description, variant, may_change in _deliberate_edits(
      data, np.random.default_rng(4)):
    case = f"{kind}: {description}"
    start = time.perf_counter()
    try:
      model = fileformat.load_compressed_bytes(variant)
    except CorruptFileError:
      outcome, problem = "refused", None
    except Exception as e:  # pylint: disable=broad-except
      outcome, problem = "raised", f"{type(e).__name__}: {str(e)[:300]}"
    else:
      problem = _check_loaded(model, variant, original, may_change)
      outcome = "loaded" if problem is None else "loaded wrongly"
    if outcome == "refused" and kind in _LEGAL_KINDS:
      problem = "a legal edit was refused"
    seconds = time.perf_counter() - start
    if seconds > 2:
      slow.append(f"{case}: {seconds:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if peak - rss > 2**20:  # KiB: a case took over 1 GiB more than any before.
      peaks.append(f"{case}: peak memory +{(peak - rss) // 1024} MiB")
    rss = peak
    outcomes[kind, outcome] += 1
    if problem:
      failures.append(f"{case}: {problem}")
  summary = f"{dict(outcomes)}; slow cases: {slow}"
  print(summary)
  assert not failures, (failures[:10], summary)
  assert not peaks, (peaks, summary)
  assert sum(outcomes.values()) > 2500, summary
  # The edits reach past the checks: some of every kind that may be legal
  # load, so the comparisons above were made.
  for kind in ("header groups", "header float_params", "header architecture",
               "TABL", "LATS", "DECO bits") + _LEGAL_KINDS:
    assert outcomes[kind, "loaded"] > 0, (kind, summary)


def _golden_edit(edit):
  return _with_header(_GOLDEN_V4.read_bytes(), edit)


@pytest.mark.parametrize("edit, reason", [
    # Keras's own loop would wait forever for these nodes.
    (lambda h: _layers(h)[3]["inbound_nodes"][0][0].__setitem__(1, 1),
     "never made"),
    (lambda h: _layers(h)[1].update(inbound_nodes=[[["re_lu", 0, 0, {}]]]),
     "never made"),
    (lambda h: _layers(h)[3]["inbound_nodes"][0][0].__setitem__(
        3, {"mask": ["conv2d", 0, 1]}), "keyword argument"),
    # Keras would fail an assertion, or on a variable it never set.
    (_set(["architecture", "config", "output_layers", 0, 0], "nowhere"),
     "not a node that is made"),
    (lambda h: _layers(h)[3].update(inbound_nodes=[[]]), "no inputs"),
    (lambda h: _layers(h)[3].update(
        inbound_nodes=[[["_CONSTANT_VALUE", 0, 1.0, {}]]]), "constant"),
    (_set(["architecture"], dict(class_name="Sequential", config=[])),
     "Sequential"),
    (_set(["architecture"], json.loads("[" * 70 + "]" * 70)),
     "not a Keras model config"),
    (lambda h: h["architecture"]["config"].update(
        deep=json.loads("[" * 70 + "]" * 70)), "nested more than 64 deep"),
])
def test_graphs_keras_cannot_rebuild_are_refused_before_keras(edit, reason):
  data = _golden_edit(edit)
  for read in (sections.parse, fileformat.load_compressed_bytes):
    with pytest.raises(CorruptFileError) as error:
      read(data)
    assert error.value.section == "architecture", error.value
    assert reason in error.value.reason, error.value
    assert error.value.__cause__ is None  # Refused by the check, not Keras.


def test_graphs_keras_rebuilds_are_accepted(tmp_path):
  """Shared layers and models, keyword tensors, several outputs round trip."""
  tf.keras.utils.set_random_seed(3)
  layers = tf.keras.layers
  inputs = tf.keras.Input((6,), name="x")
  mask = tf.keras.Input((3, 3), dtype="bool", name="mask")
  shared = layers.Dense(6, name="shared")
  block = tf.keras.Sequential([layers.Dense(6, name="inner_a"),
                               layers.Dense(6, name="inner_b")], name="block")
  h = block(block(shared(shared(inputs))))  # Each called twice.
  q = layers.Reshape((3, 2))(h)
  attention = layers.MultiHeadAttention(1, 2, name="attention")(
      q, q, attention_mask=mask)  # A tensor as a keyword argument.
  outputs = [layers.Dense(2, name="head")(layers.Flatten()(attention)), h]
  plain = tf.keras.Model([inputs, mask], outputs)
  config = json.loads(plain.to_json())
  assert architecture.architecture_problem(config) is None
  model = lilnetx_tf.compressible(plain, seed=0)
  path = tmp_path / "graph.lnx"
  fileformat.save_compressed(model, path)
  loaded = fileformat.load_compressed(path)
  rng = np.random.default_rng(3)
  x = [rng.normal(size=(2, 6)).astype(np.float32),
       rng.random((2, 3, 3)) < 0.7]
  want = model(x, training=False)
  for got, expected in zip(loaded(x), want):
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
  # MultiHeadAttention makes its weights inside its call, where Keras turns
  # the reader's refusal into an exception of its own.
  huge = _with_header(path.read_bytes(), lambda h: [
      l for l in _layers(h) if l["config"]["name"] == "attention"][0][
          "config"].update(num_heads=10**6))
  with pytest.raises(CorruptFileError, match="more weights than the file"):
    fileformat.load_compressed_bytes(huge)


def _raise(error):
  def planted(*args, **kwargs):
    del args, kwargs
    raise error("planted bug")
  return planted


@pytest.mark.parametrize("module, name, error", [
    (codec, "decompress_latents", RuntimeError),
    (codec, "decompress_latents", AssertionError),
    (codec, "decode_symbols", ValueError),  # Inside a block that reads.
    (codec, "tables_from_frequencies", IndexError),
    (reading, "decode_kernel", TypeError),
    (reading, "_assign", AttributeError),
    (sections, "check_tables", ZeroDivisionError),
    (sections, "_check_float_params", KeyError),
    (graph_replay, "graph_problem", TypeError),
])
def test_reader_bugs_are_not_disguised_as_corrupt_files(monkeypatch, module,
                                                        name, error):
  """A bug of the reader surfaces as itself, never as a CorruptFileError."""
  monkeypatch.setattr(module, name, _raise(error))
  with pytest.raises(error) as raised:  # constriction: on every stack.
    fileformat.load_compressed(_GOLDEN_V7[CONSTRICTION])
  assert type(raised.value) is error  # pylint: disable=unidiomatic-typecheck
  assert raised.value.args == ("planted bug",)


def test_what_the_range_coder_reports_is_a_corrupt_file(monkeypatch):
  """The other side of the line: the coder's report of bad data is one."""
  monkeypatch.setattr(codec, "decode_symbols", _raise(
      lambda message: tf.errors.InvalidArgumentError(None, None, message)))
  with pytest.raises(CorruptFileError) as raised:
    fileformat.load_compressed(_GOLDEN_V7[CONSTRICTION])
  assert raised.value.section == "latents[conv1x1]"
  assert "planted bug" in raised.value.reason
  assert isinstance(raised.value.__cause__, codec.DecodeError)


@pytest.mark.parametrize("edit, reason", [
    (lambda latents: latents + b"\0", "not whole 32-bit words"),
    (lambda latents: latents + bytes(range(12)), "does not end where"),
    (lambda latents: b"\xff" * len(latents), "invalid for the employed"),
])
def test_what_constriction_finds_in_bad_latents_is_a_corrupt_file(edit,
                                                                   reason):
  """Latents constriction did not write (consistent CRCs) are refused."""
  data = _GOLDEN_V7[CONSTRICTION].read_bytes()
  _, _, body, length = _layout(data)[3]  # conv1x1's LATS.
  variant = _with_payload(data, 3, edit(data[body:body + length]))
  sections.parse(variant)  # Well formed: only decoding finds the fault.
  with pytest.raises(CorruptFileError) as raised:
    fileformat.load_compressed_bytes(variant)
  assert raised.value.section == "latents[conv1x1]"
  assert reason in raised.value.reason, raised.value
  assert isinstance(raised.value.__cause__, codec.DecodeError)


def _filled(shape=None, grid=False, value=0.0):
  """A header edit: float parameter 0 becomes a fill of `value`."""
  def edit(header):
    entry = header["float_params"][0]
    if not grid:
      entry.pop("grid", None)
    entry["fill"] = value
    if shape is not None:
      entry["shape"] = shape
  return edit


def test_a_fill_reads_as_its_value_in_no_bytes(trained, saved, tmp_path):
  """A reader-side check of `fill`, on a file the writer made without one."""
  model, x = trained
  data = saved[0].read_bytes()
  entry = _header(data)["float_params"][0]
  layer = model.network.get_layer(entry["layer"])
  assert entry["index"] == 1 and layer.use_bias  # LeNet-5's first bias.
  size = entry["grid"][2]
  edited = _with_header(data, _filled(value=-0.75))
  tag, _, body, length = _layout(edited)[-1]
  assert tag == b"FLTS"
  edited = _with_payload(edited, -1, edited[body + size:body + length])
  path = tmp_path / "filled.lnx"
  path.write_bytes(edited)
  loaded = fileformat.load_compressed(path)
  bias = loaded.get_layer(layer.name).weights[1].numpy()
  assert bias.dtype == np.float32 and np.all(bias == -0.75)
  assert bias.shape == tuple(entry["shape"])
  # The other weights are the saved ones: layer by layer, bias set by hand.
  original = layer.bias_variable.numpy()
  layer.bias_variable.assign(np.full(bias.shape, -0.75, np.float32))
  try:
    _assert_round_trip(model, loaded, x)
  finally:
    layer.bias_variable.assign(original)


def test_a_grid_offset_is_added_to_its_integers(saved, tmp_path):
  """A reader-side check of grid offsets, on an offset the writer left out."""
  data = saved[0].read_bytes()
  entry = _header(data)["float_params"][0]
  exponent = entry["grid"][0]
  assert len(entry["grid"]) == 3  # Biases centre on zero: no offset.
  edited = _with_header(data, lambda h: h["float_params"][0]["grid"].append(
      -3))
  path = tmp_path / "offset.lnx"
  path.write_bytes(edited)
  layer = entry["layer"]
  want = fileformat.load_compressed(saved[0]).get_layer(layer).weights[
      entry["index"]].numpy().astype(np.float64) - 3 * 2.0**exponent
  got = fileformat.load_compressed(path).get_layer(layer).weights[
      entry["index"]].numpy()
  np.testing.assert_array_equal(got, want.astype(np.float32))


def test_specific_refusals(saved, tmp_path):
  data = saved[0].read_bytes()
  cases = {
      "newer.lnx": (_with_version(data, 9), "preamble",
                    "reads versions up to 8"),
      "coder unknown.lnx": (_with_header(data, _set(["coder"], "zstd")),
                            "header", "unknown range coder zstd; known: "
                            "tensorflow-compression, constriction"),
      "coder missing.lnx": (_with_header(data, lambda h: h.pop("coder")),
                            "header", "unknown range coder None"),
      "coder in v6.lnx": (_with_header(
          (ROOT / "tests" / "data" / "golden_v6.lnx").read_bytes(),
          _set(["coder"], CONSTRICTION)), "header",
                          "a coder in a version 6 file"),
      "empty.lnx": (b"", "preamble", "empty"),
      "png.lnx": (b"\x89PNG\r\n\x1a\n" + bytes(40), "preamble",
                  "not a LilNetX file"),
      "cut.lnx": (data[:-1], "float_params", "truncated"),
      "lambda.lnx": (_with_header(data, _architecture_edit("Lambda")),
                     "architecture", "Lambda"),
      "huge.lnx": (_with_header(data, _dense_units(10**9)), "architecture",
                   "more weights than the file holds"),
      "flip.lnx": (_flip(data, 8 * (len(data) - 3)), "float_params", "CRC"),
      "many.lnx": (_with_header(data, _set(["groups", 1, "shapes", 0],
                                           [8000, 5000])),
                   "latents[dense]", "slices need at least"),
      # A fill takes no bytes: its values count against the file's size.
      "filled.lnx": (_with_header(data, _filled([60000, 60000])), "header",
                     "3600000000 filled values"),
      "fill and grid.lnx": (_with_header(data, _filled(grid=True)), "header",
                            "invalid float parameter"),
      "fill v5.lnx": (_with_header(_GOLDEN_V5.read_bytes(), _filled()),
                      "header", "invalid float parameter"),
  }
  for offset in (2**24 + 1, -2**24 - 1, 1.0, "1", None, True):
    cases[f"grid offset {offset!r}.lnx"] = (
        _with_header(data, lambda h, o=offset: h["float_params"][0][
            "grid"].append(o)), "header", "invalid float parameter")
  cases["grid of 5.lnx"] = (_with_header(data, lambda h: h["float_params"][0][
      "grid"].extend([1, 1])), "header", "invalid float parameter")
  cases["grid offset v5.lnx"] = (_with_header(
      _GOLDEN_V5.read_bytes(), lambda h: [
          p for p in h["float_params"] if "grid" in p][0]["grid"].append(1)),
                                 "header", "invalid float parameter")
  for fill in ("0", None, True, 1, 0.1, float("nan"), float("inf"), 1e300,
               [0.0]):  # Integers: the writer writes floats (JSON 1.0).
    cases[f"fill {fill!r}.lnx"] = (_with_header(data, _filled(value=fill)),
                                   "header", "invalid float parameter")
  for name, (content, section, reason) in cases.items():
    path = tmp_path / name
    path.write_bytes(content)
    # Only building the model finds that an architecture is too big.
    readers = [fileformat.load_compressed]
    if name != "huge.lnx":
      readers.append(fileformat.inspect_compressed)
    for read in readers:
      with pytest.raises(CorruptFileError) as error:
        read(path)
      assert error.value.section == section, (name, error.value)
      assert reason in error.value.reason, (name, error.value)
      assert str(path) in str(error.value)
      assert isinstance(error.value, ValueError)


def test_library_layers_are_stored_by_registered_name(tmp_path):
  """ChannelPad is found by its Keras name, whatever module a file names."""
  inputs = tf.keras.Input((4, 4, 3))
  x = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
  x = ChannelPad(1, 2, name="pad")(x)
  model = lilnetx_tf.compressible(tf.keras.Model(inputs, x), seed=0)
  path = tmp_path / "pad.lnx"
  fileformat.save_compressed(model, path)
  data = path.read_bytes()

  def pad_entry(header):
    return [l for l in header["architecture"]["config"]["layers"]
            if l["config"]["name"] == "pad"][0]

  entry = pad_entry(_header(data))
  assert entry["class_name"] == "ChannelPad" and "module" not in entry
  assert entry["registered_name"] == "lilnetx_tf>ChannelPad"
  x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype(np.float32)
  expected = model(x, training=False).numpy()
  for module in ("lilnetx_tf.models.layers", "lilnetx_tf.nowhere", "os"):
    variant = tmp_path / "variant.lnx"
    variant.write_bytes(_with_header(
        data, lambda h, m=module: pad_entry(h).update(module=m)))
    loaded = fileformat.load_compressed(variant)
    np.testing.assert_array_equal(loaded(x).numpy(), expected)
  variant.write_bytes(_with_header(
      data, lambda h: pad_entry(h).update(class_name="Dense")))
  with pytest.raises(CorruptFileError, match="registered name"):
    fileformat.load_compressed(variant)


def test_models_with_code_are_not_stored(tmp_path):
  inputs = tf.keras.Input((4,))
  x = tf.keras.layers.Dense(3, name="dense")(inputs)
  outputs = tf.keras.layers.Lambda(lambda t: t * 2, name="double")(x)
  model = lilnetx_tf.compressible(tf.keras.Model(inputs, outputs), seed=0)
  with pytest.raises(ValueError, match="Lambda"):
    fileformat.save_compressed(model, tmp_path / "code.lnx")
  assert not list(tmp_path.iterdir())
  with pytest.raises(TypeError, match="LilNetXModel"):
    fileformat.save_compressed(tf.keras.Model(inputs, x), tmp_path / "x.lnx")


def test_writes_are_atomic(trained, saved, tmp_path, monkeypatch):
  model, _ = trained
  path = tmp_path / "model.lnx"

  def failing_fsync(fd):
    del fd
    raise OSError("disk full")

  with monkeypatch.context() as patch:
    patch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
      fileformat.save_compressed(model, path)
  assert not list(tmp_path.iterdir())  # No file, no temporary file.

  def interrupted():
    yield b"partial data"
    raise KeyboardInterrupt

  path.write_bytes(saved[0].read_bytes())  # An older export stays intact.
  with pytest.raises(KeyboardInterrupt):
    atomic.atomic_write(path, interrupted())
  assert [p.name for p in tmp_path.iterdir()] == ["model.lnx"]
  assert path.read_bytes() == saved[0].read_bytes()

  # A complete write has the permissions of a new file (not mkstemp's 0600).
  old_umask = os.umask(0o027)
  try:
    fileformat.save_compressed(model, tmp_path / "new.lnx")
  finally:
    os.umask(old_umask)
  assert (tmp_path / "new.lnx").stat().st_mode & 0o777 == 0o640
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lnx", "new.lnx"]


def test_cli_exports_and_inspects(trained, tmp_path):
  model, x = trained
  workdir = tmp_path / "run"
  workdir.mkdir()
  model.save(workdir / "model.keras")
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run(
      # No batch norm to fold: the flags must be accepted and change nothing.
      [sys.executable, "-m", "export.bitstream", f"--workdir={workdir}",
       "--fold_batch_norm", "--batch_norm_bits=6"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  output = workdir / "model.lnx"
  sizes = fileformat.inspect_compressed(output)["sizes"]
  assert f"{sizes['latent_bytes']:,}" in result.stdout
  assert f"{sizes['file_bytes']:,}" in result.stdout
  assert "latents (model size)" in result.stdout
  assert "Range coding" in result.stderr  # absl progress logging.
  _assert_round_trip(model, fileformat.load_compressed(output), x)

  result = subprocess.run(
      [sys.executable, "-m", "export.bitstream", "--inspect", str(output)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  for text in ("HEAD header", "LATS latents[conv5x5]", "TABL tables[dense]",
               "FLTS float_params", "whole file", "bits/latent"):
    assert text in result.stdout, text

  result = subprocess.run(
      [sys.executable, "-m", "export.bitstream", f"--workdir={workdir}",
       f"--output={tmp_path / 'refused.lnx'}", "--batch_norm_bits=6"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode != 0
  assert "error: batch_norm_bits rounds the folded" in result.stderr
  assert not (tmp_path / "refused.lnx").exists()


def _golden_entries():
  return json.loads((ROOT / "tests" / "data" / "golden.json").read_text())[
      "files"]


def _weights_sha256(model):
  digest = hashlib.sha256()
  for w in model.weights:
    digest.update(np.ascontiguousarray(w.numpy(), "<f4").tobytes())
  return digest.hexdigest()


def _golden_input():
  return np.random.default_rng(7).random((2, 8, 8, 3), dtype=np.float32)


@pytest.mark.needs_tfc  # Versions 1 to 6 are all coded with it.
def test_golden_files_of_every_format_version_load_exactly():
  """Files written by past releases keep decoding to the same weights."""
  golden = _golden_entries()
  assert [f["format_version"] for f in golden] == [1, 2, 3, 3, 4, 5, 6, 7, 7,
                                                   8]
  assert sections.FORMAT_VERSION == 8  # A new version needs a golden file.
  # Version 6's feature is in its golden file: fills.
  v6 = _header((ROOT / "tests" / "data" / "golden_v6.lnx").read_bytes())
  assert sum("fill" in p for p in v6["float_params"]) == 4
  assert not any("name" in l for l in v6["architecture"]["config"]["layers"])
  # golden_v3_channelpad.lnx names ChannelPad's module of its day, which is
  # gone: the class is found by its registered name.
  assert importlib.util.find_spec("lilnetx_tf.models.layers") is None
  x = _golden_input()
  old = [entry for entry in golden if entry["format_version"] < 7]
  assert len(old) == 7
  for entry in old:
    path = ROOT / "tests" / "data" / entry["file"]
    loaded = fileformat.load_compressed(path)
    sizes = fileformat.inspect_compressed(path)["sizes"]
    assert sizes["format_version"] == entry["format_version"]
    assert sizes["coder"] == TFC  # What the versions before 7 mean.
    assert len(loaded.weights) == entry["num_weights"], entry["file"]
    assert _weights_sha256(loaded) == entry["weights_sha256"], entry["file"]
    np.testing.assert_allclose(loaded(x).numpy(), entry["outputs"],
                               rtol=1e-5, atol=1e-6)


def _load_golden(path, entry):
  """The model of a golden file; a weights-only one fills its `into` file's."""
  if "into" not in entry:
    return fileformat.load_compressed(path)
  into = fileformat.load_compressed(ROOT / "tests" / "data" / entry["into"])
  assert fileformat.load_compressed(path, into=into) is into
  return into


def test_golden_weights_only_file_of_version_8_fills_a_model_exactly(
    monkeypatch):
  """Version 8: a null architecture, and nothing else new; constriction."""
  golden = {entry["file"]: entry for entry in _golden_entries()}
  entry = golden["golden_v8_weights_only.lnx"]
  path = ROOT / "tests" / "data" / entry["file"]
  data = path.read_bytes()
  assert struct.unpack_from("<I", data, 8) == (8,)  # The preamble says 8.
  assert _header(data)["architecture"] is None
  # Every section but the header is golden_v7_constriction.lnx's, byte for
  # byte: the same model's file, its weights only.
  assert _payloads(data) == _payloads(_GOLDEN_V7[CONSTRICTION].read_bytes())
  sizes = fileformat.inspect_compressed(path)["sizes"]
  assert sizes["weights_only"] and sizes["format_version"] == 8
  assert sizes["coder"] == entry["coder"] == CONSTRICTION

  loaded = _load_golden(path, entry)
  assert len(loaded.weights) == entry["num_weights"]
  assert _weights_sha256(loaded) == entry["weights_sha256"]
  # The recipe's weights: golden_v6.lnx's, whose file has an architecture.
  assert entry["weights_sha256"] == golden["golden_v6.lnx"]["weights_sha256"]
  np.testing.assert_allclose(loaded(_golden_input()).numpy(),
                             entry["outputs"], rtol=1e-5, atol=1e-6)
  for load in (lambda: fileformat.load_compressed(path),
               lambda: fileformat.load_compressed_bytes(data)):
    with pytest.raises(ValueError, match=r"holds weights only \(saved with "
                       r"weights_only=True\).*into=model") as raised:
      load()
    assert not isinstance(raised.value, CorruptFileError)

  # The same bytes as version 7: a null architecture is a damaged file.
  as_v7 = _with_header(_with_version(data, 7), _set(["format_version"], 7))
  for read in (fileformat.load_compressed_bytes, sections.parse,
               lambda d: fileformat.load_compressed_bytes(d, into=loaded)):
    with pytest.raises(CorruptFileError) as raised:
      read(as_v7)
    assert raised.value.section == "architecture"
    assert "not a Keras model config" in raised.value.reason
  # A reader of version 7 refuses the file by its preamble, as newer.
  monkeypatch.setattr(sections, "FORMAT_VERSION", 7)
  with pytest.raises(CorruptFileError) as raised:
    fileformat.load_compressed(path, into=loaded)
  assert raised.value.section == "preamble"
  assert ("format version 8 is newer than this reader, which reads versions "
          "up to 7 (update lilnetx_tf)") in raised.value.reason


def test_round_trip_with_constriction_is_exact(trained, saved, tmp_path):
  """A constriction file decodes to the trained model's weights exactly."""
  model, x = trained
  path = tmp_path / "constriction.lnx"
  sizes = fileformat.save_compressed(model, path, coder=CONSTRICTION)
  assert sizes["coder"] == CONSTRICTION
  assert _header(path.read_bytes())["coder"] == CONSTRICTION
  _assert_round_trip(model, fileformat.load_compressed(path), x)
  # Within a few bytes a group of the latents' factorized entropy.
  entropy_bits = by_hand.group_entropy_bits(model)
  for group in fileformat.inspect_compressed(path)["groups"]:
    entropy = entropy_bits[group["name"]] / 8
    assert entropy - 8 <= group["latent_bytes"] <= 1.03 * entropy + 16
  if saved[1]["coder"] == CONSTRICTION:  # The default where tfc is missing.
    assert path.read_bytes() == saved[0].read_bytes()


@pytest.mark.needs_tfc
def test_both_coders_code_a_trained_model_alike(trained, saved, tmp_path):
  """The same latents from either coder; sizes within 0.5%."""
  model, x = trained
  assert saved[1]["coder"] == TFC  # The default where it is installed.
  path = tmp_path / "constriction.lnx"
  sizes = fileformat.save_compressed(model, path, coder=CONSTRICTION)
  tfc_sizes = saved[1]
  for key in ("latent_bytes", "file_bytes"):
    assert abs(sizes[key] - tfc_sizes[key]) <= 0.005 * tfc_sizes[key], key
  tfc_model = fileformat.load_compressed(saved[0])
  constriction_model = fileformat.load_compressed(path)
  assert _weights_sha256(tfc_model) == _weights_sha256(constriction_model)
  np.testing.assert_array_equal(tfc_model(x).numpy(),
                                constriction_model(x).numpy())
  # Only the LATS sections differ.
  a, b = saved[0].read_bytes(), path.read_bytes()
  for (tag, _, body_a, len_a), (_, _, body_b, len_b) in zip(_layout(a),
                                                            _layout(b)):
    if tag in (b"TABL", b"DECO", b"FLTS"):
      assert a[body_a:body_a + len_a] == b[body_b:body_b + len_b], tag
    elif tag == b"LATS":
      assert a[body_a:body_a + len_a] != b[body_b:body_b + len_b]


def test_recoding_keeps_the_weights(saved, tmp_path, monkeypatch):
  """Recoded to every coder and back: the same weights, then the same bytes."""
  source = saved[0]
  original = fileformat.load_compressed(source)
  own = saved[1]["coder"]
  for coder in coders.available_coders():
    path = tmp_path / f"{coder}.lnx"
    sizes = fileformat.recode_compressed(source, path, coder)
    assert sizes["coder"] == coder == _header(path.read_bytes())["coder"]
    assert sizes["num_latents"] == saved[1]["num_latents"]
    assert _weights_sha256(fileformat.load_compressed(path)) == (
        _weights_sha256(original))
    back = tmp_path / f"{coder}_back.lnx"
    fileformat.recode_compressed(path, back, own)
    assert back.read_bytes() == source.read_bytes()
  with pytest.raises(ValueError, match="Unknown range coder 'zstd'; known: "
                     "tensorflow-compression, constriction"):
    fileformat.recode_compressed(source, tmp_path / "x.lnx", "zstd")
  # Recoding needs the file's coder (really missing where tfc is).
  real = coders.coder_module
  monkeypatch.setattr(coders, "coder_module",
                      lambda coder: None if coder == TFC else real(coder))
  with pytest.raises(coders.CoderUnavailableError) as raised:
    fileformat.recode_compressed(_GOLDEN_V7[TFC], tmp_path / "y.lnx",
                                 CONSTRICTION)
  assert raised.value.coder == TFC
  assert raised.value.file == _GOLDEN_V7[TFC]
  assert not (tmp_path / "x.lnx").exists() and not (tmp_path / "y.lnx").exists()


@pytest.mark.needs_tfc  # Decoding versions 1 to 6 (and golden_v7_tfc).
def test_every_golden_file_recodes_to_constriction_exactly(tmp_path):
  """Old files convert for a stack without tfc: the same weights, version 8."""
  for entry in _golden_entries():
    source = ROOT / "tests" / "data" / entry["file"]
    path = tmp_path / entry["file"]
    target = TFC if entry.get("coder") == CONSTRICTION else CONSTRICTION
    sizes = fileformat.recode_compressed(source, path, target)
    assert sizes["format_version"] == 8 and sizes["coder"] == target
    header = _header(path.read_bytes())
    assert header["coder"] == target and header["format_version"] == 8
    loaded = _load_golden(path, entry)
    assert _weights_sha256(loaded) == entry["weights_sha256"], entry["file"]
    np.testing.assert_allclose(loaded(_golden_input()).numpy(),
                               entry["outputs"], rtol=1e-5, atol=1e-6)


def test_cli_exports_and_recodes_with_a_coder(trained, tmp_path):
  """--coder for an export, --recode to convert a file."""
  model, x = trained
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  checkpoint = tmp_path / "model.keras"
  model.save(checkpoint)

  def run(*flags):
    return subprocess.run(
        [sys.executable, "-m", "export.bitstream", *flags], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=300, check=False)

  result = run(f"--checkpoint={checkpoint}", f"--coder={CONSTRICTION}")
  assert result.returncode == 0, result.stderr[-3000:]
  exported = tmp_path / "model.lnx"
  assert fileformat.inspect_compressed(exported)["sizes"]["coder"] == (
      CONSTRICTION)
  assert f"range coder {CONSTRICTION}" in result.stdout
  _assert_round_trip(model, fileformat.load_compressed(exported), x)
  recoded = tmp_path / "recoded.lnx"
  result = run(f"--recode={_GOLDEN_V7[CONSTRICTION]}",
               f"--coder={CONSTRICTION}", f"--output={recoded}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"wrote {recoded}" in result.stdout
  # The same file in the current version: only the version differs.
  new, old = recoded.read_bytes(), _GOLDEN_V7[CONSTRICTION].read_bytes()
  assert _header(new) == dict(_header(old), format_version=8)
  assert _payloads(new) == _payloads(old)
  result = run(f"--recode={recoded}", "--coder=zstd",
               f"--output={tmp_path / 'refused.lnx'}")
  assert result.returncode != 0
  assert "error: Unknown range coder 'zstd'" in result.stderr
  result = run(f"--recode={recoded}")  # Where to?
  assert result.returncode != 0 and "--recode needs --output" in result.stderr
  assert not (tmp_path / "refused.lnx").exists()
