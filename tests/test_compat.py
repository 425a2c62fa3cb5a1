"""Tests of `lilnetx_tf.compat`: every helper, on whichever stack runs them.

Each helper wraps something that differs between the stacks or a private
name of Keras / TensorFlow; here each one runs on small models (functional,
Sequential, a layer holding layers, a nested model, a shared layer) and its
result is checked against values built independently of it: the layers the
test itself made, in the order it made them, and the arguments it passed.
"""

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf.deploy import fold
from lilnetx_tf.deploy import prune
from lilnetx_tf.deploy import tflite

ROOT = pathlib.Path(__file__).resolve().parents[1]
keras = compat.keras


class _Pair(keras.layers.Layer):
  """A layer that holds two layers: only `flatten_layers` lists them."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.first = keras.layers.Dense(4, name="pair_first")
    self.second = keras.layers.Dense(4, name="pair_second")

  def call(self, inputs):
    return self.second(self.first(inputs))


class _Subclassed(keras.Model):

  def __init__(self):
    super().__init__(name="subclassed")
    self.dense = keras.layers.Dense(2)

  def call(self, inputs):
    return self.dense(inputs)


@pytest.fixture(name="parts")
def _parts():
  """A functional model and every layer and tensor it was made of.

  The input, a layer called twice, a nested Sequential model (with its own
  input layer), a `_Pair` and two more Dense layers.
  """
  p = {}
  p["inputs"] = keras.Input((3,), name="x")
  p["shared"] = keras.layers.Dense(3, name="shared")
  p["seq_input"] = keras.layers.InputLayer(input_shape=(3,), name="seq_in")
  p["seq_dense"] = keras.layers.Dense(4, name="seq_dense")
  p["seq_relu"] = keras.layers.ReLU(name="seq_relu")
  p["seq"] = keras.Sequential([p["seq_input"], p["seq_dense"], p["seq_relu"]],
                              name="seq")
  p["pair"] = _Pair(name="pair")
  p["back"] = keras.layers.Dense(3, name="back")
  p["out"] = keras.layers.Dense(2, name="out")
  p["h_shared"] = p["shared"](p["inputs"])
  p["h_seq"] = p["seq"](p["h_shared"])
  h = p["shared"](p["back"](p["pair"](p["h_seq"])))
  p["outputs"] = p["out"](h)
  p["model"] = keras.Model(p["inputs"], p["outputs"], name="model")
  return p


def _ids(layers):
  return [id(l) for l in layers]


def test_keras_is_keras_2():
  if compat.TF_VERSION >= (2, 16):
    assert compat.keras.__name__ == "tf_keras"
    assert compat.keras.__version__.startswith("2.")
  else:
    assert compat.keras.Model is tf.keras.Model
  assert compat.TF_VERSION == tuple(
      int(p) for p in tf.__version__.split(".")[:2])


def test_keras_is_keras_2_without_the_legacy_variable():
  """Without TF_USE_LEGACY_KERAS, `tf.keras` is Keras 3 on TF 2.16+; the
  library still builds and converts its models with Keras 2."""
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env["PYTHONPATH"] = str(ROOT)
  script = (
      "import json, os\n"
      "import lilnetx_tf\n"
      "from lilnetx_tf import compat\n"
      "import tensorflow as tf\n"
      "keras = compat.keras\n"
      "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
      "converted = lilnetx_tf.compressible(model, seed=0)\n"
      "version = getattr(tf.keras, 'version', None)\n"
      "print(json.dumps(dict(\n"
      "    name=compat.keras.__name__,\n"
      "    variable=os.environ.get('TF_USE_LEGACY_KERAS'),\n"
      "    tf_keras_version=version() if version else None,\n"
      "    converted=type(converted).__name__)))\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  seen = json.loads(result.stdout.strip().splitlines()[-1])
  assert seen["converted"] == "LilNetXModel"
  assert seen["name"] == compat.keras.__name__
  if compat.TF_VERSION >= (2, 16):
    assert seen["name"] == "tf_keras"
    # The variable really was unset: `tf.keras` there is Keras 3.
    assert seen["variable"] is None
    assert seen["tf_keras_version"].startswith("3.")


def test_check_keras_model():
  inputs = keras.Input((3,))
  functional = keras.Model(inputs, keras.layers.Dense(2)(inputs))
  sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  subclassed = _Subclassed()
  for model in (functional, sequential, subclassed,
                lilnetx_tf.compressible(functional, seed=0)):
    assert compat.check_keras_model(model) is None
  for thing in (object(), keras.layers.Dense(2), tf.Module(), None):
    with pytest.raises(TypeError, match="must be a Keras model, got"):
      compat.check_keras_model(thing)
  with pytest.raises(TypeError, match="The network must be"):
    compat.check_keras_model("model", what="network")


def test_keras_3_models_get_the_clear_error():
  keras_3 = pytest.importorskip("keras")
  if int(keras_3.__version__.split(".")[0]) < 3:
    pytest.skip(f"keras {keras_3.__version__} is Keras 2 on this stack")
  model = keras_3.Sequential([keras_3.Input((8,)), keras_3.layers.Dense(4),
                              keras_3.layers.Dense(2)], name="k3")

  def finetune(m):
    return tflite.quantization_aware_finetune(
        m, np.zeros((2, 8), np.float32), np.zeros(2), epochs=1)

  entry_points = {
      "check_keras_model": compat.check_keras_model,
      "compressible": lilnetx_tf.compressible,
      "plain_model": tflite.plain_model,
      "prepare_for_export": tflite.prepare_for_export,
      "convert": tflite.convert,
      "quantization_aware_finetune": finetune,
      "remove_zero_channels": prune.remove_zero_channels,
      "fold_batch_norm": fold.fold_batch_norm,
  }
  for name, entry_point in entry_points.items():
    with pytest.raises(TypeError) as error:
      entry_point(model)
    message = str(error.value)
    assert "'k3' is a Keras 3 model" in message, name
    assert compat.KERAS_3_MESSAGE in message, name


def test_flatten_layers(parts):
  p = parts
  expected = [p["model"].get_layer("x"), p["shared"], p["seq"], p["seq_input"], p["seq_dense"],
              p["seq_relu"], p["pair"], p["pair"].first, p["pair"].second,
              p["back"], p["out"]]
  model = p["model"]
  assert _ids(compat.flatten_layers(model, include_self=False)) == _ids(
      expected)
  assert _ids(compat.flatten_layers(model)) == _ids([model] + expected)
  # The public `layers` lists only the top level.
  assert _ids(model.layers) == _ids(
      [expected[0], p["shared"], p["seq"], p["pair"], p["back"], p["out"]])
  assert _ids(compat.flatten_layers(p["pair"])) == _ids(
      [p["pair"], p["pair"].first, p["pair"].second])
  assert _ids(compat.flatten_layers(p["seq"], include_self=False)) == _ids(
      [p["seq_input"], p["seq_dense"], p["seq_relu"]])


def test_is_graph_network(parts):
  assert compat.is_graph_network(parts["model"])
  assert compat.is_graph_network(parts["seq"])
  subclassed = _Subclassed()
  subclassed(tf.zeros((1, 3)))
  assert not compat.is_graph_network(subclassed)
  # A Sequential model without an input shape has no graph yet.
  assert not compat.is_graph_network(keras.Sequential([keras.layers.Dense(2)]))
  assert not compat.is_graph_network(keras.layers.Dense(2))


def test_nodes_by_depth(parts):
  p = parts
  nodes = compat.nodes_by_depth(p["model"])
  by_layer = {}
  for depth, depth_nodes in nodes.items():
    for node in depth_nodes:
      by_layer.setdefault(id(node.layer), []).append(depth)
  # Every top-level layer, once per call: `shared` twice.
  assert set(by_layer) == set(_ids(p["model"].layers))
  assert {i: len(d) for i, d in by_layer.items()} == {
      id(l): 2 if l is p["shared"] else 1 for l in p["model"].layers}
  # Depth counts from the outputs: a layer is deeper than what it feeds.
  order = ["x", "shared", "seq", "pair", "back", "shared", "out"]
  depths = sorted(nodes, reverse=True)
  assert depths == list(range(len(order)))[::-1]
  assert [[n.layer.name for n in nodes[d]] for d in depths] == [
      [name] for name in order]


def test_keras_history_layer(parts):
  p = parts
  assert compat.keras_history_layer(p["inputs"]) is p["model"].get_layer("x")
  assert compat.keras_history_layer(p["h_shared"]) is p["shared"]
  assert compat.keras_history_layer(p["h_seq"]) is p["seq"]
  assert compat.keras_history_layer(p["outputs"]) is p["out"]
  assert compat.keras_history_layer(p["model"].outputs[0]) is p["out"]


def test_steps_per_execution_and_cluster_coordinator(parts):
  model = parts["model"]
  assert compat.steps_per_execution(model) is None
  assert compat.cluster_coordinator(model) is None
  model.compile("sgd", "mse", steps_per_execution=3)
  assert compat.steps_per_execution(model) == 3
  assert isinstance(compat.steps_per_execution(model), int)
  assert compat.cluster_coordinator(model) is None
  model.compile("sgd", "mse")
  assert compat.steps_per_execution(model) == 1
  # A LilNetX model with a compression interval refuses several steps per
  # execution: it reads the value through the helper.
  converted = lilnetx_tf.compressible(model, seed=0, compression_interval=2)
  converted.compile("sgd", "mse", steps_per_execution=2)
  with pytest.raises(ValueError, match="steps_per_execution 1"):
    converted.make_train_function()


def test_lite_interpreter_and_its_name():
  installed = importlib.util.find_spec("ai_edge_litert") is not None
  assert compat.lite_runtime_name() == (
      "ai_edge_litert" if installed else "tf.lite")
  inputs = keras.Input((5,))
  model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
  content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
  x = np.random.default_rng(0).normal(size=(1, 5)).astype(np.float32)
  kernel, bias = model.layers[1].get_weights()
  # With the default delegate (XNNPACK), and with the builtin kernels alone.
  for options in ({}, dict(
      experimental_op_resolver_type=compat.lite_builtin_kernels())):
    interpreter = compat.lite_interpreter(model_content=content,
                                          num_threads=1, **options)
    assert type(interpreter).__module__.split(".")[0] == (
        "ai_edge_litert" if installed else "tensorflow")
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-5, atol=1e-6)
  assert compat.lite_builtin_kernels().name == (
      "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
  assert type(compat.lite_builtin_kernels()).__module__.split(".")[0] == (
      "ai_edge_litert" if installed else "tensorflow")


def test_tfc_is_tensorflow_compression_where_installed():
  if importlib.util.find_spec("tensorflow_compression") is None:
    assert compat.tfc is None
  else:
    assert compat.tfc.__name__ == "tensorflow_compression"


def test_every_public_helper_is_called_by_a_test():
  """Each function of `compat.__all__` runs in some test (here, mostly)."""
  called = set()
  for path in (ROOT / "tests").glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if (isinstance(node, ast.Call) and
          isinstance(node.func, ast.Attribute) and
          isinstance(node.func.value, ast.Name) and
          node.func.value.id == "compat"):
        called.add(node.func.attr)
  functions = {name for name in compat.__all__
               if callable(getattr(compat, name)) and
               not isinstance(getattr(compat, name), type(compat))}
  assert "flatten_layers" in functions and "keras" not in functions
  assert functions - called == set()
