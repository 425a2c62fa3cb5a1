"""Models nested in models (the Keras transfer-learning pattern) end to end.

A classifier around a functional base that holds a Sequential stem, in its
functional and its Sequential form: `compressible` finds the nested kernels,
a few training steps on real MNIST digits, the `.lnx` round trip is exact and
keeps the user's structure, and the loaded model exports exactly.
"""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf.data import load_arrays
from lilnetx_tf.data import normalize
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check

L = tf.keras.layers


def _base():
  inputs = L.Input((28, 28, 1))
  stem = tf.keras.Sequential([L.Input((28, 28, 1)), L.Conv2D(6, 3),
                              L.BatchNormalization(), L.ReLU()], name="stem")
  h = L.ReLU()(L.Conv2D(8, 3, strides=2, name="reduce")(stem(inputs)))
  return tf.keras.Model(inputs, L.Conv2D(12, 3, name="top")(h), name="base")


def _classifier(form):
  base = _base()
  if form == "sequential":
    return tf.keras.Sequential([L.Input((28, 28, 1)), base,
                                L.GlobalAveragePooling2D(), L.Dense(10)])
  inputs = L.Input((28, 28, 1))
  h = L.GlobalAveragePooling2D()(base(inputs, training=False))
  return tf.keras.Model(inputs, L.Dense(10)(h))


@pytest.fixture(scope="module")
def digits(data_dir):
  x, y, info = load_arrays("mnist", "train", data_dir=data_dir / "mnist",
                           limit=512)
  return normalize(x, info), y


@pytest.mark.parametrize("form", ["functional", "sequential"])
def test_nested_models_train_store_load_and_export(form, digits, tmp_path):
  x, y = digits
  tf.keras.utils.set_random_seed(0)
  model = lilnetx_tf.compressible(_classifier(form), seed=0)
  # The kernels of every level: stem conv, reduce, top, the classifier.
  assert len(model.latent_layers) == 4
  model.compile(tf.keras.optimizers.Adam(1e-2),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  model.fit(x, y, batch_size=128, epochs=1, verbose=0)

  path = tmp_path / "nested.lnx"
  lilnetx_tf.save_compressed(model, path)
  loaded = lilnetx_tf.load_compressed(path)
  expected = lilnetx_tf.decompressed_model(model)
  # Bit for bit, weight by weight, in the original order.
  got, want = loaded.get_weights(), expected.get_weights()
  assert len(got) == len(want) == len(model.network.get_weights())
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)
  by_name = {l.name: l for l in compat.flatten_layers(loaded)}
  for layer in model.latent_layers:  # Each kernel where the user put it.
    np.testing.assert_array_equal(by_name[layer.name].kernel.numpy(),
                                  layer.decoded_kernel().numpy())
  # The user's structure: the base and its stem are models with their layers.
  base = loaded.get_layer("base")
  assert isinstance(base, tf.keras.Model)
  assert isinstance(base.get_layer("stem"), tf.keras.Sequential)
  assert [l.name for l in base.layers] == [
      l.name for l in model.network.get_layer("base").layers]
  np.testing.assert_array_equal(loaded(x[:32]).numpy(),
                                model(x[:32], training=False).numpy())

  # The loaded plain model exports under the export's own rule.
  reference = tflite_check.keras_logits(model, x[:64])
  exported = tflite.prepare_for_export(loaded)
  outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(x[:64])
  result = tflite_check.verify(reference, outputs, y[:64], float_parity=True)
  assert result.passed and result.agreement == 1.0

