"""The helper layers of `keras.applications` (ConvNeXt's `LayerScale`, ...).

The invariants: `compat.applications_layers` lists every layer class the
applications' modules define; a model made of them (a ConvNeXt-like block
with the real `LayerScale`, `StochasticDepth` and Inception-ResNet-V2's
`CustomScaleLayer`, on real digits) takes a training step, stores them by
class name without a module, the same config on both stacks, loads bit for
bit without custom objects, and exports with float parity; a user's class
of the same name is the user's, and a file naming one with a module is
refused. ConvNeXtTiny itself goes the same way (the ConvNeXt config in
tests/test_tf_ops.py; the whole pipeline is too slow for the suite).
"""

import json
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf.compressed import architecture
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed.custom_objects import MissingCustomObjectError
from lilnetx_tf.data import load_arrays
from lilnetx_tf.data import normalize
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check

L = tf.keras.layers
_NAMES = {"LayerScale", "StochasticDepth", "CustomScaleLayer"}


@pytest.fixture(scope="module")
def digits(data_dir):
  x, y, info = load_arrays("mnist", "test", data_dir=data_dir / "mnist",
                           limit=64)
  return normalize(x, info), y


def _net(classes):
  """A ConvNeXt-like block and an Inception-ResNet-like scaled sum."""
  inputs = L.Input((28, 28, 1))
  x = L.Conv2D(8, 4, strides=4, name="stem")(inputs)
  h = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
  h = L.Dense(16, activation="gelu", name="expand")(h)
  h = L.Dense(8, name="project")(h)
  h = classes["LayerScale"](0.5, 8, name="layer_scale")(h)
  h = classes["StochasticDepth"](0.25, name="drop_path")(h)
  x = x + h
  branch = L.Conv2D(8, 1, name="branch")(x)
  x = classes["CustomScaleLayer"](0.3, name="scaled_sum")([x, branch])
  x = L.GlobalAveragePooling2D()(x)
  return tf.keras.Model(inputs, L.Dense(10, name="logits")(x))


def test_the_list_is_every_layer_class_the_applications_define():
  defined = {}
  for name in dir(tf.keras.applications):
    if name[0].isupper():  # An application function.
      module = sys.modules[getattr(tf.keras.applications, name).__module__]
      defined.update({n: c for n, c in vars(module).items()
                      if isinstance(c, type) and issubclass(c, L.Layer) and
                      c.__module__ == module.__name__})
  assert set(defined) == _NAMES
  assert compat.applications_layers() == defined
  convnext = sys.modules[tf.keras.applications.ConvNeXtTiny.__module__]
  assert compat.applications_layers()["LayerScale"] is convnext.LayerScale


def test_a_model_of_them_trains_stores_loads_and_exports_exactly(digits,
                                                                 tmp_path):
  x, y = digits
  tf.keras.utils.set_random_seed(0)
  classes = compat.applications_layers()
  model = lilnetx_tf.compressible(_net(classes), seed=0,
                                  initial_prior_steps=0)
  model.compile(tf.keras.optimizers.Adam(1e-2), run_eagerly=True,
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  model.fit(x, y, batch_size=64, epochs=1, verbose=0)
  gamma = model.network.get_layer("layer_scale").get_weights()[0]
  assert not np.all(gamma == 0.5)  # Trained.
  expand = model.network.get_layer("expand")
  latent = expand.latent.numpy()
  latent[..., 4:10] = 0  # Six hidden channels, removable through gelu.
  expand.latent.assign(latent)
  bias = expand.bias_variable.numpy()
  bias[4:10] = 0
  expand.bias_variable.assign(bias)

  path = tmp_path / "applications.lnx"
  lilnetx_tf.save_compressed(model, path)
  stored = {e["class_name"]: e for e in sections.parse(
      path.read_bytes())["header"]["architecture"]["config"]["layers"]}
  # By class name, no module, the same config on both stacks.
  assert stored["LayerScale"] == {
      "class_name": "LayerScale", "name": "layer_scale",
      "inbound_nodes": [[["project", 0, 0, {}]]], "config": {"name": "layer_scale", "init_values": 0.5,
                 "projection_dim": 8}}
  assert stored["StochasticDepth"]["config"] == {
      "name": "drop_path", "drop_path_rate": 0.25}
  assert stored["CustomScaleLayer"]["config"] == {"name": "scaled_sum",
                                                  "scale": 0.3}
  assert stored["CustomScaleLayer"]["registered_name"] == (
      "Custom>CustomScaleLayer")
  assert not any("module" in e for e in stored.values())

  loaded = lilnetx_tf.load_compressed(path)  # No custom objects.
  for name, cls in (("layer_scale", "LayerScale"),
                    ("drop_path", "StochasticDepth"),
                    ("scaled_sum", "CustomScaleLayer")):
    assert type(loaded.get_layer(name)) is classes[cls]
  expected = lilnetx_tf.decompressed_model(model)
  for a, b in zip(loaded.get_weights(), expected.get_weights(), strict=True):
    np.testing.assert_array_equal(a, b)
  reference = tflite_check.keras_logits(model, x)
  np.testing.assert_array_equal(tflite_check.keras_logits(loaded, x),
                                tflite_check.keras_logits(expected, x))

  exported = tflite.prepare_for_export(loaded)
  pruned = exported.pruned
  assert pruned.get_layer("expand").units == 10
  assert pruned.get_layer("project").input_shape[-1] == 10
  assert type(pruned.get_layer("layer_scale")) is classes["LayerScale"]
  outputs = tflite_check.TFLiteRunner(tflite.convert(pruned))(x)
  result = tflite_check.verify(reference, outputs, y, float_parity=True)
  assert result.passed, result.failure


class LayerScale(L.Layer):
  """A user's class with the name of ConvNeXt's."""

  def __init__(self, init_values, projection_dim, **kwargs):
    super().__init__(**kwargs)
    self.init_values, self.projection_dim = init_values, projection_dim

  def call(self, x):
    return x * self.init_values

  def get_config(self):
    return dict(super().get_config(), init_values=self.init_values,
                projection_dim=self.projection_dim)


def _user_net(layer_scale):
  classes = dict(compat.applications_layers(), LayerScale=layer_scale)
  return lilnetx_tf.compressible(_net(classes), seed=0)


def test_a_users_class_of_the_same_name_is_the_users(tmp_path):
  with pytest.raises(ValueError, match="'LayerScale'.*rename the class"):
    lilnetx_tf.save_compressed(_user_net(LayerScale), tmp_path / "a.lnx")
  assert not list(tmp_path.iterdir())
  registered = tf.keras.utils.register_keras_serializable(
      package="test_applications_layers")(
          type("LayerScale", (LayerScale,), {}))
  path = tmp_path / "b.lnx"
  lilnetx_tf.save_compressed(_user_net(registered), path)
  with pytest.raises(MissingCustomObjectError,
                     match="test_applications_layers>LayerScale"):
    lilnetx_tf.load_compressed(path)
  loaded = lilnetx_tf.load_compressed(
      path, custom_objects={"LayerScale": registered})
  assert type(loaded.get_layer("layer_scale")) is registered


def test_a_file_naming_them_with_a_module_is_refused():
  config = architecture.without_custom_modules(json.loads(
      _net(compat.applications_layers()).to_json()))
  assert architecture.keras_custom_objects(config, None) == {
      "LayerScale": compat.applications_layers()["LayerScale"],
      "StochasticDepth": compat.applications_layers()["StochasticDepth"],
      "Custom>CustomScaleLayer":
          compat.applications_layers()["CustomScaleLayer"]}
  entry = [e for e in config["config"]["layers"]
           if e["class_name"] == "LayerScale"][0]
  for module in ("os", "builtins", "keras.layers"):
    entry["module"] = module
    problem = architecture.architecture_problem(config)
    assert f"'LayerScale' comes with module '{module}'" in problem, problem
