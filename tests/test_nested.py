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
from lilnetx_tf.method.layers import LatentKernel

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



def _twin_bases_classifier():
  """Two bases built by one function (same layer names) and a head named
  like a base layer: the names a LilNetX model and a file must tell apart."""

  def base(name):
    inputs = L.Input((28, 28, 1))
    h = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="conv1")(inputs))
    return tf.keras.Model(inputs, L.Conv2D(6, 1, name="conv2")(h), name=name)

  inputs = L.Input((28, 28, 1))
  h = L.Concatenate()([base("left")(inputs), base("right")(inputs)])
  outputs = L.Dense(10, name="conv1")(L.GlobalAveragePooling2D()(h))
  return tf.keras.Model(inputs, outputs, name="twins")


def _randomise(model, rng):
  """Every weight random ("pretrained"), batch norm variances positive."""
  model.set_weights([rng.uniform(0.5, 2.0, w.shape) if "variance" in w.name
                     else rng.normal(0, 0.3, w.shape)
                     for w in model.weights])


def _by_path(model, prefix=""):
  """Layer path ("left/conv1") -> layer, for the layers holding weights."""
  found = {}
  for layer in model.layers:
    if isinstance(layer, tf.keras.Model):
      found.update(_by_path(layer, f"{prefix}{layer.name}/"))
    elif layer.weights:
      found[prefix + layer.name] = layer
  return found


def test_clashing_layer_names_are_renamed_and_stored_exactly(digits,
                                                             tmp_path):
  x, _ = digits
  rng = np.random.default_rng(0)
  plain = _twin_bases_classifier()
  _randomise(plain, rng)
  model = lilnetx_tf.compressible(plain, init_from_weights=True, seed=0)
  # Outer names kept; the later of two equal names takes its model's name.
  renamed = {"left/conv1": "left_conv1", "right/conv1": "right_conv1",
             "right/bn": "right_bn", "right/conv2": "right_conv2"}
  assert model.conversion.renamed == renamed
  assert sorted(model.conversion.converted) == sorted(
      l.name for l in model.latent_layers) == [
          "conv1", "conv2", "left_conv1", "right_conv1", "right_conv2"]

  # init_from_weights: every weight where the user had it, under the new
  # names; kernels to half a decoding step, everything else exactly.
  old = {(f"{p.rsplit('/', 1)[0]}/{renamed[p]}" if p in renamed else p): l
         for p, l in _by_path(plain).items()}
  new = _by_path(model.network)
  assert sorted(new) == sorted(old)
  for path, layer in new.items():
    weights = old[path].get_weights()
    if isinstance(layer, LatentKernel):
      step = float(model.decoders[layer.group].scale.numpy())
      assert np.abs(layer.decoded_kernel().numpy() - weights[0]).max() <= (
          0.5 * step * (1 + 1e-5))
      weights, got = weights[1:], [layer.bias_variable.numpy()]
    else:
      got = layer.get_weights()
    assert len(got) == len(weights)
    for a, b in zip(got, weights):
      np.testing.assert_array_equal(a, b)

  path = tmp_path / "twins.lnx"
  lilnetx_tf.save_compressed(model, path)
  info = lilnetx_tf.inspect_compressed(path)
  assert sorted(n for g in info["groups"] for n in g["layers"]) == [
      "conv1", "conv2", "left_conv1", "right_conv1", "right_conv2"]
  loaded = lilnetx_tf.load_compressed(path)
  for a, b in zip(loaded.get_weights(),
                  lilnetx_tf.decompressed_model(model).get_weights()):
    np.testing.assert_array_equal(a, b)
  assert [l.name for l in loaded.get_layer("right").layers[1:]] == [
      "right_conv1", "right_bn", "right_conv2"]
  np.testing.assert_array_equal(loaded(x[:32]).numpy(),
                                model(x[:32], training=False).numpy())


def test_frozen_pretrained_base_then_fine_tuning(digits, tmp_path):
  """The two phases of fine-tuning a pretrained base, as Keras teaches them.

  The base is called with `training=False` (its batch norm in inference
  mode) and frozen for phase 1; phase 2 unfreezes it and compiles again.
  """
  x, y = digits
  tf.keras.utils.set_random_seed(0)
  base = _base()
  _randomise(base, np.random.default_rng(1))  # "Pretrained".
  base.trainable = False
  inputs = L.Input((28, 28, 1))
  h = L.GlobalAveragePooling2D()(base(inputs, training=False))
  plain = tf.keras.Model(inputs, L.Dense(10, name="head")(h))
  model = lilnetx_tf.compressible(plain, init_from_weights=True, seed=0,
                                  initial_prior_steps=0)
  network = model.network
  frozen = [l for l in model.latent_layers if l.name != "head"]
  assert [l.group for l in frozen] == ["conv3x3"] * 3
  watched = dict(
      frozen=lambda: [l.latent for l in frozen],
      kernels=lambda: [l.kernel for l in frozen],
      head=lambda: network.get_layer("head").weights,
      priors=model.prior_variables,
      statistics=lambda: [w for w in network.weights if "moving" in w.name],
      gamma=lambda: [w for w in network.weights if "gamma" in w.name])
  state = lambda: {k: [np.array(v) for v in f()] for k, f in watched.items()}
  assert len(state()["statistics"]) == 2

  def train(learning_rate):
    """One epoch; per watched variable, whether it kept its value."""
    model.compile(tf.keras.optimizers.Adam(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    before = state()
    history = model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    assert np.isfinite(history.history["bits_per_latent"][0])
    return {k: [np.array_equal(a, b) for a, b in zip(before[k], v)]
            for k, v in state().items()}

  # Phase 1: the frozen base's latents and decoded kernels (its decoder is
  # frozen with it: no trainable layer shares its group) stay bit for bit;
  # the head and the priors (which model every latent) learn.
  unchanged = train(1e-2)
  assert all(unchanged["frozen"]) and all(unchanged["kernels"])
  assert all(unchanged["statistics"]) and all(unchanged["gamma"])
  assert not any(unchanged["head"]) and not any(unchanged["priors"])
  # Phase 2: unfrozen, the base learns; called with training=False, its
  # batch norm still keeps its statistics (the clone kept the call argument).
  network.get_layer("base").trainable = True
  unchanged = train(1e-3)
  assert not any(unchanged["frozen"]) and not any(unchanged["gamma"])
  assert all(unchanged["statistics"])

  path = tmp_path / "finetuned.lnx"
  lilnetx_tf.save_compressed(model, path)
  loaded = lilnetx_tf.load_compressed(path)
  for a, b in zip(loaded.get_weights(),
                  lilnetx_tf.decompressed_model(model).get_weights()):
    np.testing.assert_array_equal(a, b)
