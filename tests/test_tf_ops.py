"""TensorFlow ops in a `.lnx` architecture: the allowed ones, and no others.

The invariants: each allowed name rebuilds as the public TensorFlow function
of that name; what Keras records for the common calls (and for the op layers
of `keras.applications` models) is allowed; a model calling such ops stores,
loads with bit-for-bit the same outputs on real data and exports exactly; an
op off the list, or an op layer carrying anything but its op, is refused
before Keras sees it, naming the op.
"""

import copy
import functools
import inspect
import json

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import data
from lilnetx_tf.compressed import architecture
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed import tf_ops
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check

L = tf.keras.layers
CorruptFileError = fileformat.CorruptFileError


@pytest.fixture(scope="module")
def mnist(data_dir):
  x, y, info = data.load_arrays("mnist", "test", data_dir=data_dir / "mnist",
                                limit=128)
  return data.normalize(x, info), y


def _edited(data_bytes, edit):
  """A file's bytes with `edit(header)` applied to its header."""
  parsed = sections.parse(data_bytes)
  header = copy.deepcopy(parsed["header"])
  edit(header)
  head = parsed["sections"][0]
  payload = sections.pack_header(header)
  return (data_bytes[:head["offset"]] +
          sections.pack_section(b"HEAD", payload) + payload +
          data_bytes[head["offset"] + head["bytes"]:])


def _op_layers(config):
  return [l for l in config["config"]["layers"]
          if l["class_name"] in tf_ops.OP_LAYERS]


def test_each_allowed_name_is_the_tensorflow_function_of_that_name():
  for name in sorted(tf_ops.TF_OPS):
    cls = "SlicingOpLambda" if name == "__operators__.getitem" else (
        "TFOpLambda")
    layer = tf.keras.layers.deserialize(
        {"class_name": cls, "config": {"name": "op", "function": name}})
    public = functools.reduce(getattr, name.split("."), tf)
    assert inspect.unwrap(layer.function) is inspect.unwrap(public), name
    assert type(layer) is tf_ops.op_layer_class(cls)


def test_what_keras_records_for_common_calls_is_allowed():
  x, y = L.Input((8, 8, 4)), L.Input((8, 8, 4))
  outputs = [
      x * 0.5, 0.5 * x, x + y, 1.0 + x, x - y, x / 2.0, -x, x ** 2,
      tf.add(x, y), tf.maximum(x, y), tf.clip_by_value(x, 0.0, 1.0),
      tf.sqrt(tf.abs(x)), tf.math.rsqrt(tf.square(x) + 1.0),
      tf.exp(x), tf.math.log(tf.abs(x) + 1.0), tf.nn.relu(x),
      tf.nn.relu6(x), tf.nn.silu(x), tf.nn.swish(x), tf.nn.gelu(x),
      tf.sigmoid(x), tf.tanh(x), tf.nn.softmax(x), tf.nn.leaky_relu(x),
      tf.nn.elu(x), tf.nn.softplus(x), tf.reshape(x, (-1, 64, 4)),
      tf.transpose(x, (0, 3, 1, 2)), tf.squeeze(tf.expand_dims(x, 1), 1),
      tf.identity(x), tf.concat([x, y], -1), tf.stack([x, y], 1),
      tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"),
      tf.nn.depth_to_space(x, 2), tf.nn.space_to_depth(x, 2),
      x[:, 1:3, ::2, 0], x[..., :2], tf.reduce_mean(x, [1, 2]),
      tf.reduce_sum(x, -1), tf.reduce_max(x, -1), tf.reduce_min(x, -1),
      tf.image.resize(x, (16, 16)),
      tf.image.resize(x, (4, 4), method="nearest")]
  config = json.loads(tf.keras.Model([x, y], outputs).to_json())
  recorded = {l["config"]["function"] for l in _op_layers(config)}
  assert recorded - tf_ops.TF_OPS == set()
  assert {"math.multiply", "__operators__.getitem", "compat.v1.transpose",
          "image.resize"} <= recorded
  stored = architecture.without_custom_modules(config)
  assert architecture.architecture_problem(stored) is None


def test_the_op_layers_of_keras_applications_are_allowed():
  """MobileNetV3's hard swish, and ConvNeXt's residual additions."""
  apps = tf.keras.applications
  mobile = apps.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75,
                                 weights=None, classes=10)
  config = architecture.without_custom_modules(json.loads(mobile.to_json()))
  assert len(_op_layers(config)) > 20
  assert architecture.architecture_problem(config) is None
  # ConvNeXt's op layers pass, and its LayerScale, a class of
  # keras.applications' own (tests/test_applications_layers.py).
  convnext = apps.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None,
                               classes=10)
  config = architecture.without_custom_modules(json.loads(convnext.to_json()))
  assert {l["config"]["function"] for l in _op_layers(config)} == {
      "__operators__.add"}
  assert architecture.architecture_problem(config) is None
  assert set(architecture.keras_custom_objects(config, None)) == {
      "LayerScale"}


def _op_net():
  """Conv, batch norm, `tf.nn.relu6(x) * 0.5`, slicing, a reduction."""
  inputs = L.Input((28, 28, 1))
  h = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, name="conv1")(inputs))
  h = tf.nn.relu6(h) * 0.5
  h = L.ReLU()(L.Conv2D(12, 3, strides=2, name="conv2")(h))
  h = h[:, 1:-1, ..., :10]
  h = tf.reduce_mean(h, axis=[1, 2])
  return tf.keras.Model(inputs, L.Dense(10, name="logits")(h))


def test_a_model_calling_tf_ops_round_trips_and_exports_exactly(mnist,
                                                                tmp_path):
  tf.keras.utils.set_random_seed(5)
  model = lilnetx_tf.compressible(_op_net(), seed=0)
  rng = np.random.default_rng(5)
  bn = model.network.get_layer("bn")
  bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.5, 8),
                  rng.normal(0, 0.5, 8), rng.uniform(0.5, 2.0, 8)])
  conv2 = model.network.get_layer("conv2")
  latent = conv2.latent.numpy()
  latent[..., [2, 11]] = 0  # A dead channel kept by the slice, one cut off.
  conv2.latent.assign(latent)
  x = mnist[0][:64]
  path = tmp_path / "ops.lnx"
  lilnetx_tf.save_compressed(model, path)
  entries = _op_layers(json.loads(json.dumps(
      sections.parse(path.read_bytes())["header"]["architecture"])))
  assert [e["config"]["function"] for e in entries] == [
      "nn.relu6", "math.multiply", "__operators__.getitem",
      "math.reduce_mean"]
  assert not any("module" in e for e in entries)

  loaded = lilnetx_tf.load_compressed(path)
  reference = model(x, training=False).numpy()
  np.testing.assert_array_equal(loaded(x).numpy(), reference)
  np.testing.assert_array_equal(
      loaded.get_layer("conv2").kernel.numpy(),
      conv2.decoded_kernel().numpy())

  exported = tflite.prepare_for_export(loaded)
  for keras_model in (exported.dense, exported.pruned):
    logits = tflite_check.keras_logits(keras_model, x)
    assert np.max(np.abs(logits - reference)) <= 1e-5 * np.max(
        np.abs(reference))
  outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(x)
  result = tflite_check.verify(reference, outputs, mnist[1][:64],
                               float_parity=True)
  assert result.passed and result.agreement == 1.0, result


def test_ops_off_the_list_are_refused(tmp_path):
  inputs = L.Input((6,))
  h = L.Dense(4, name="dense")(inputs)
  model = lilnetx_tf.compressible(
      tf.keras.Model(inputs, tf.math.cumsum(h, axis=-1)), seed=0)
  with pytest.raises(ValueError, match="'math.cumsum'.*register_keras_"):
    lilnetx_tf.save_compressed(model, tmp_path / "cumsum.lnx")
  assert not list(tmp_path.iterdir())


def _op_entry(header, function):
  return [l for l in header["architecture"]["config"]["layers"]
          if l["config"].get("function") == function][0]


@pytest.mark.parametrize("edit, reason", [
    (lambda e: e["config"].update(function="io.write_file"),
     "TensorFlow op 'io.write_file'"),
    (lambda e: e["config"].update(function="nn.relu6 "),
     "TensorFlow op 'nn.relu6 '"),
    (lambda e: e["config"].update(function=["nn.relu6"]),
     "names no TensorFlow function"),
    (lambda e: e.update(class_name="SlicingOpLambda"),
     "only indexing, as SlicingOpLambda"),
    (lambda e: e["config"].update(dynamic=True), "arguments ['dynamic']"),
    (lambda e: e.update(registered_name="os>system"), "registered name"),
])
def test_op_layers_hold_nothing_but_an_allowed_op(tmp_path, edit, reason):
  inputs = L.Input((4, 4, 2))
  h = tf.nn.relu6(L.Conv2D(3, 1, name="conv")(inputs))
  model = lilnetx_tf.compressible(tf.keras.Model(inputs, h[:, 1:, ...]),
                                  seed=0)
  path = tmp_path / "op.lnx"
  lilnetx_tf.save_compressed(model, path)
  variant = _edited(path.read_bytes(),
                    lambda h: edit(_op_entry(h, "nn.relu6")))
  for read in (sections.parse, fileformat.load_compressed_bytes):
    with pytest.raises(CorruptFileError) as error:
      read(variant)
    assert error.value.section == "architecture"
    assert reason in error.value.reason, error.value.reason
    assert error.value.__cause__ is None  # Refused before Keras.
  # Slices Keras could not read, and a module, which is never read.
  def a_dict_of_inputs(entry, header):
    relu6 = _op_entry(header, "nn.relu6")["config"]["name"]
    entry.update(inbound_nodes=[{"x": [relu6, 0, 0]}])

  for bad in (lambda e, h: e["inbound_nodes"][0][3]["slice_spec"].append(
      {"start": 1}), a_dict_of_inputs):
    variant = _edited(path.read_bytes(), lambda h, b=bad: b(_op_entry(
        h, "__operators__.getitem"), h))
    with pytest.raises(CorruptFileError, match="a slice holds"):
      fileformat.load_compressed_bytes(variant)
  moved = _edited(path.read_bytes(), lambda h: _op_entry(
      h, "nn.relu6").update(module="os"))
  x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype(np.float32)
  np.testing.assert_array_equal(
      fileformat.load_compressed_bytes(moved)(x).numpy(),
      model(x, training=False).numpy())
