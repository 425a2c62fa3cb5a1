"""The user's own layers and functions in a `.lnx` file, and custom_objects.

The invariants: a registered custom layer (with weights) and activation are
stored by their registered names, without a module, and load bit for bit
with the same outputs on real data, given as custom_objects by registered or
plain name; without them loading says what to pass, and it rebuilds nothing
but the objects the caller gives; unregistered classes and functions are not
stored; the export CLIs take them with `--custom_objects=MODULE`.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import data
from lilnetx_tf.compressed import architecture
from lilnetx_tf.compressed import custom_objects
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.compressed import sections
from lilnetx_tf.deploy import tflite_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
L = tf.keras.layers
CorruptFileError = lilnetx_tf.CorruptFileError
MissingCustomObjectError = lilnetx_tf.MissingCustomObjectError


@tf.keras.utils.register_keras_serializable(package="myapp")
class ChannelScale(L.Layer):
  """Multiplies each channel by a weight of its own."""

  def build(self, input_shape):
    self.scale = self.add_weight("scale", shape=(input_shape[-1],),
                                 initializer="ones")

  def call(self, x):
    return x * self.scale


@tf.keras.utils.register_keras_serializable(package="myapp")
def shifted_relu(x):
  return tf.nn.relu(x - 0.25)


OBJECTS = {"myapp>ChannelScale": ChannelScale,
           "myapp>shifted_relu": shifted_relu}


@pytest.fixture(scope="module")
def mnist(data_dir):
  x, y, info = data.load_arrays("mnist", "test", data_dir=data_dir / "mnist",
                                limit=64)
  return data.normalize(x, info), y


def _net(layer=ChannelScale, activation=shifted_relu):
  inputs = L.Input((28, 28, 1))
  h = L.Conv2D(6, 5, strides=2, activation=activation, name="conv")(inputs)
  h = layer(name="scale")(h)
  return tf.keras.Model(inputs, L.Dense(10, name="logits")(L.Flatten()(h)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A LilNetX model with a custom layer and activation, and its file."""
  tf.keras.utils.set_random_seed(7)
  model = lilnetx_tf.compressible(_net(), seed=0)
  scale = model.network.get_layer("scale")
  scale.set_weights([np.random.default_rng(7).normal(1, 0.5, 6)])
  path = tmp_path_factory.mktemp("custom") / "custom.lnx"
  lilnetx_tf.save_compressed(model, path)
  return model, path


def _edited(data_bytes, edit):
  """A file's bytes with `edit(header)` applied to its header."""
  parsed = sections.parse(data_bytes)
  header = json.loads(json.dumps(parsed["header"]))
  edit(header)
  head = parsed["sections"][0]
  payload = sections.pack_header(header)
  return (data_bytes[:head["offset"]] +
          sections.pack_section(b"HEAD", payload) + payload +
          data_bytes[head["offset"] + head["bytes"]:])


def _entry(header, name):
  return [l for l in header["architecture"]["config"]["layers"]
          if l["config"]["name"] == name][0]


def test_custom_layer_and_activation_round_trip_exactly(saved, mnist):
  model, path = saved
  header = sections.parse(path.read_bytes())["header"]
  entry = _entry(header, "scale")
  assert entry["class_name"] == "ChannelScale" and "module" not in entry
  assert entry["registered_name"] == "myapp>ChannelScale"
  assert _entry(header, "conv")["config"]["activation"]["config"] == (
      "myapp>shifted_relu")
  assert __name__ not in json.dumps(header)  # No module of the test's.
  x = mnist[0]
  want = model(x, training=False).numpy()
  for objects in (OBJECTS, {"ChannelScale": ChannelScale,
                            "shifted_relu": shifted_relu}):
    loaded = lilnetx_tf.load_compressed(path, objects)
    assert type(loaded.get_layer("scale")) is ChannelScale
    assert loaded.get_layer("conv").activation is shifted_relu
    np.testing.assert_array_equal(
        loaded.get_layer("scale").get_weights()[0],
        model.network.get_layer("scale").get_weights()[0])
    np.testing.assert_array_equal(loaded(x).numpy(), want)
  loaded = fileformat.load_compressed_bytes(path.read_bytes(),
                                            custom_objects=OBJECTS)
  np.testing.assert_array_equal(loaded(x).numpy(), want)


def test_missing_custom_objects_say_what_to_pass(saved):
  _, path = saved
  data_bytes = path.read_bytes()
  with pytest.raises(MissingCustomObjectError) as error:
    lilnetx_tf.load_compressed(path)
  assert not isinstance(error.value, CorruptFileError)
  assert isinstance(error.value, ValueError)
  assert ("custom_objects={'myapp>ChannelScale': ChannelScale} to "
          "load_compressed") in str(error.value)
  with pytest.raises(MissingCustomObjectError,
                     match="'myapp>shifted_relu': shifted_relu"):
    fileformat.load_compressed_bytes(
        data_bytes, {"myapp>ChannelScale": ChannelScale})
  with pytest.raises(TypeError, match="custom_objects must be a dict"):
    lilnetx_tf.load_compressed(path, [ChannelScale, shifted_relu])
  # Inspecting builds nothing: it needs none.
  assert lilnetx_tf.inspect_compressed(path)["sizes"]["num_float_params"] > 0


def test_only_the_callers_objects_are_rebuilt(saved):
  model, path = saved
  data_bytes = path.read_bytes()

  class ChannelScale(L.Layer):  # pylint: disable=redefined-outer-name
    """Not the registered class of that name."""

  cases = [
      ("for class 'myapp>ChannelScale'", "myapp>ChannelScale", L.Dense),
      ("registered in Keras as", "myapp>ChannelScale", ChannelScale),
      ("for function 'myapp>shifted_relu'", "myapp>shifted_relu", L.ReLU),
      ("registered in Keras as", "myapp>shifted_relu", tf.nn.relu6)]
  for message, name, wrong in cases:
    with pytest.raises(MissingCustomObjectError, match=message):
      fileformat.load_compressed_bytes(data_bytes, {**OBJECTS, name: wrong})
  # The module a file names is never read.
  moved = _edited(data_bytes, lambda h: _entry(h, "scale").update(
      module="os"))
  x = np.ones((1, 28, 28, 1), np.float32)
  want = model(x, training=False).numpy()
  np.testing.assert_array_equal(
      fileformat.load_compressed_bytes(moved, OBJECTS)(x).numpy(), want)
  # An activation named by a string goes by the same rule.
  named = _edited(data_bytes, lambda h: _entry(h, "conv")["config"].update(
      activation="myapp>shifted_relu"))
  np.testing.assert_array_equal(
      fileformat.load_compressed_bytes(named, OBJECTS)(x).numpy(), want)
  with pytest.raises(MissingCustomObjectError,
                     match="activation object 'myapp>shifted_relu'"):
    fileformat.load_compressed_bytes(
        named, {"myapp>ChannelScale": OBJECTS["myapp>ChannelScale"]})
  # The library's package, unregistered classes and stock class names are
  # not the user's to name.
  for edit, reason in [
      (dict(registered_name="lilnetx_tf>ChannelScale"), "library's objects"),
      (dict(class_name="Popen", module="subprocess", registered_name=None),
       "'Popen' is not a stock Keras class and is not registered"),
      (dict(class_name="Dense", registered_name="myapp>Dense"),
       "a stock Keras class name")]:
    variant = _edited(data_bytes, lambda h, e=edit: _entry(h, "scale").update(
        e))
    with pytest.raises(CorruptFileError, match=reason):
      fileformat.load_compressed_bytes(variant, OBJECTS)


class Unregistered(L.Layer):

  def call(self, x):
    return x


def test_unregistered_classes_and_functions_are_not_stored(tmp_path):
  model = lilnetx_tf.compressible(_net(layer=Unregistered), seed=0)
  with pytest.raises(ValueError) as error:
    lilnetx_tf.save_compressed(model, tmp_path / "x.lnx")
  assert not list(tmp_path.iterdir())

  def own_relu(x):  # Keras cannot even clone a model holding it.
    return tf.nn.relu(x)

  plain = _net(activation=own_relu)
  problem = architecture.architecture_problem(
      json.loads(plain.to_json()), custom_objects.registered_in(plain))
  for message, name in ((str(error.value), "'Unregistered'"),
                        (problem, "'own_relu'")):
    assert f"{name} is not a stock Keras" in message, message
    assert "not registered: register it with @keras.utils.register_keras_" \
        "serializable" in message, message


def test_a_class_registered_again_is_not_stored_under_its_name(tmp_path):
  registry = tf.keras.utils.get_custom_objects()

  @tf.keras.utils.register_keras_serializable(package="myapp")
  class Reused(L.Layer):

    def call(self, x):
      return x

  model = lilnetx_tf.compressible(_net(layer=Reused), seed=0)
  first = registry["myapp>Reused"]
  try:
    tf.keras.utils.register_keras_serializable(package="myapp")(
        type("Reused", (L.Layer,), {}))
    with pytest.raises(ValueError, match="registered again"):
      lilnetx_tf.save_compressed(model, tmp_path / "x.lnx")
  finally:
    registry["myapp>Reused"] = first
  lilnetx_tf.save_compressed(model, tmp_path / "x.lnx")


_USER_MODULE = '''
"""A user's layers, as a CLI imports them."""
import tensorflow as tf
from lilnetx_tf.compat import keras


@keras.utils.register_keras_serializable(package="cliapp")
class Gain(keras.layers.Layer):

  def build(self, input_shape):
    self.gain = self.add_weight("gain", shape=(input_shape[-1],),
                                initializer="ones")

  def call(self, x):
    return x * self.gain


@keras.utils.register_keras_serializable(package="cliapp")
def soft_clip(x):
  return tf.nn.relu6(x) - 1.0
'''


def test_export_clis_take_custom_objects_modules(mnist, tmp_path):
  """`--custom_objects=MODULE`: .keras -> .lnx -> .tflite, the same logits."""
  (tmp_path / "cliapp_layers.py").write_text(_USER_MODULE)
  sys.path.insert(0, str(tmp_path))
  try:
    import cliapp_layers  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(tmp_path))
  tf.keras.utils.set_random_seed(3)
  model = lilnetx_tf.compressible(
      _net(layer=cliapp_layers.Gain, activation=cliapp_layers.soft_clip),
      seed=0)
  model.network.get_layer("scale").set_weights(
      [np.random.default_rng(3).normal(1, 0.5, 6)])
  model.save(tmp_path / "model.keras")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                     str(tmp_path)]))

  def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=600, check=False)

  lnx, output = tmp_path / "model.lnx", tmp_path / "model.tflite"
  result = run("export.bitstream", f"--checkpoint={tmp_path / 'model.keras'}",
               "--custom_objects=cliapp_layers", f"--output={lnx}")
  assert result.returncode == 0, result.stderr[-3000:]
  tflite_args = [f"--compressed={lnx}", f"--output={output}",
                 "--check_samples=0", "--latency_rounds=0"]
  result = run("export.tflite", *tflite_args)
  assert result.returncode != 0 and not output.exists()
  assert "'cliapp>Gain'" in result.stderr, result.stderr[-3000:]
  assert "--custom_objects=MODULE" in result.stderr
  result = run("export.tflite", *tflite_args, "--custom_objects=cliapp_layers")
  assert result.returncode == 0, result.stderr[-3000:]
  x = mnist[0]
  np.testing.assert_allclose(
      tflite_check.TFLiteRunner(output.read_bytes())(x),
      model(x, training=False).numpy(), atol=1e-4)
