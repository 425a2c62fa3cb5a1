"""A `keras.applications` base through LilNetX: the transfer-learning pattern.

MobileNetV2 (alpha 0.35, 32x32, `weights=None`) as the base of a classifier,
in its functional form (the base called with `training=False`) and its
Sequential form, on real MNIST digits as 32x32 RGB images: `compressible`
finds the base's kernels, a training step (functional form), 40% of every
latent convolution's output channels zeroed, the `.lnx` round trip is bit
exact and keeps the base as a model, and the loaded model's export removes
channels and passes the export's own parity rule (in TFLite for the
functional form; the export flattens both forms to the same graph).
`bench/applications.py` runs every model of `keras.applications` the same
way.
"""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf.data import load_arrays
from lilnetx_tf.data import normalize
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.method.layers import LatentDense
from lilnetx_tf.method.layers import LatentDepthwiseConv2D

L = tf.keras.layers


@pytest.fixture(scope="module")
def digits(data_dir):
  """64 MNIST digits as 32x32 RGB images, and their labels."""
  x, y, info = load_arrays("mnist", "train", data_dir=data_dir / "mnist",
                           limit=64)
  x = np.pad(normalize(x, info), ((0, 0), (2, 2), (2, 2), (0, 0)))
  return np.tile(x, (1, 1, 1, 3)), y


def _classifier(form):
  base = tf.keras.applications.MobileNetV2(
      weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
  if form == "sequential":
    return tf.keras.Sequential([L.Input((32, 32, 3)), base,
                                L.GlobalAveragePooling2D(), L.Dense(10)])
  inputs = L.Input((32, 32, 3))
  h = L.GlobalAveragePooling2D()(base(inputs, training=False))
  return tf.keras.Model(inputs, L.Dense(10)(h))


def _zero_output_channels(model, rng, fraction=0.4):
  """Zeroes `fraction` of each latent convolution's output channels."""
  zeroed = 0
  for layer in model.latent_layers:
    if isinstance(layer, LatentDense):
      continue
    latent = layer.latent.numpy()
    axis = latent.ndim - (2 if isinstance(layer, LatentDepthwiseConv2D) else 1)
    index = [slice(None)] * latent.ndim
    index[axis] = rng.choice(latent.shape[axis],
                             round(fraction * latent.shape[axis]),
                             replace=False)
    latent[tuple(index)] = 0
    layer.latent.assign(latent)
    zeroed += 1
  return zeroed


@pytest.mark.parametrize("form", ["functional", "sequential"])
def test_mobilenet_v2_base_stores_and_exports_exactly(form, digits, tmp_path):
  x, y = digits
  tf.keras.utils.set_random_seed(0)
  plain = _classifier(form)
  base_name = plain.layers[1 if form == "functional" else 0].name
  model = lilnetx_tf.compressible(plain, seed=0, initial_prior_steps=0)
  # MobileNetV2: 35 convolutions, 17 depthwise, and the classifier.
  assert len(model.latent_layers) == 53
  if form == "functional":  # The Sequential form trains the same way.
    # One eager step: tracing the train function would take most of the test.
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), run_eagerly=True)
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
  assert _zero_output_channels(model, np.random.default_rng(0)) == 52

  path = tmp_path / "mobilenet_v2.lnx"
  lilnetx_tf.save_compressed(model, path)
  loaded = lilnetx_tf.load_compressed(path)
  expected = lilnetx_tf.decompressed_model(model)
  got, want = loaded.get_weights(), expected.get_weights()
  assert len(got) == len(want) == len(plain.get_weights())
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)
  base = loaded.get_layer(base_name)
  assert isinstance(base, tf.keras.Model)
  assert [l.name for l in base.layers] == [
      l.name for l in plain.get_layer(base_name).layers]
  reference = tflite_check.keras_logits(model, x)
  np.testing.assert_array_equal(tflite_check.keras_logits(loaded, x),
                                tflite_check.keras_logits(expected, x))

  exported = tflite.prepare_for_export(loaded)
  report = exported.prune_report
  assert report.params_after < 0.9 * report.params_before
  if form == "functional":
    outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(x)
  else:  # Flattened, both forms are the same graph: converted once is enough.
    outputs = tflite_check.keras_logits(exported.pruned, x)
  result = tflite_check.verify(reference, outputs, y, float_parity=True)
  assert result.passed, result.failure
