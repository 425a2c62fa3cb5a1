"""Models whose architecture is code: subclassed models, weights-only files.

A subclassed `keras.Model` (layers in attributes, a list of the user's own
blocks, a dict, a nested Sequential) is made compressible in place, trains
on real MNIST digits, is saved as a weights-only `.lnx`, and a fresh
instance of the user's plain class takes the weights back
(`load_compressed(path, into=...)`) with the LilNetX model's outputs
exactly. Mismatched models are refused before anything is set.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.compressed import sections
from lilnetx_tf.data import load_arrays
from lilnetx_tf.data import normalize
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.method.layers import LatentKernel
from lilnetx_tf.method.layers import LatentSeparableConv2D

ROOT = pathlib.Path(__file__).resolve().parents[1]
L = tf.keras.layers


class Block(L.Layer):
  """A convolution and batch norm: a layer of the user's, holding layers."""

  def __init__(self, filters, name):
    super().__init__(name=name)
    self.conv = L.Conv2D(filters, 3, padding="same", use_bias=False,
                         name=f"{name}_conv")
    self.bn = L.BatchNormalization(name=f"{name}_bn")

  def call(self, x, training=None):
    return tf.nn.relu(self.bn(self.conv(x), training=training))


class SmallCNN(tf.keras.Model):
  """Kernels in an attribute, a list of blocks, a Sequential and a dict."""

  def __init__(self, widths=(8, 8), name="small_cnn"):
    super().__init__(name=name)
    self.stem = L.Conv2D(8, 3, strides=2, activation="relu", name="stem")
    self.blocks = [Block(w, f"block{i}") for i, w in enumerate(widths)]
    self.mix = L.SeparableConv2D(12, 3, strides=2, activation="relu",
                                 name="mix")
    self.proj = tf.keras.Sequential(
        [L.Conv2D(8, 1, name="proj_conv"), L.BatchNormalization(
            name="proj_bn")], name="proj")
    self.heads = {"logits": L.Dense(10, name="logits")}

  def call(self, x, training=None):
    h = self.stem(x)
    for block in self.blocks:
      h = block(h, training=training)
    h = self.proj(self.mix(h), training=training)
    return self.heads["logits"](tf.reduce_mean(h, axis=[1, 2]))


def _built(model, x):
  model(x[:1])
  return model


@pytest.fixture(scope="module")
def digits(data_dir):
  x, y, info = load_arrays("mnist", "train", data_dir=data_dir / "mnist",
                           limit=512)
  return normalize(x, info), y


@pytest.fixture(scope="module")
def trained(digits):
  """A SmallCNN made compressible and trained a few steps."""
  x, y = digits
  tf.keras.utils.set_random_seed(0)
  net = _built(SmallCNN(), x)
  net.predict(x[:8], verbose=0)  # Traces a function on the stock layers.
  before = [w.numpy() for w in net.blocks[0].bn.weights]
  model = lilnetx_tf.compressible(net, seed=0, initial_prior_steps=50)
  # In place: the user's object is the network, its batch norm untouched.
  assert model.network is net
  for a, b in zip(net.blocks[0].bn.weights, before):
    np.testing.assert_array_equal(a.numpy(), b)
  model.compile(tf.keras.optimizers.Adam(1e-2),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  model.fit(x, y, batch_size=128, epochs=1, verbose=0)
  return model


def test_subclassed_model_converts_in_place(trained, digits):
  x, _ = digits
  net = trained.network
  # The user's model runs its new layers, in its own functions too.
  np.testing.assert_allclose(net.predict(x[:8], verbose=0),
                             trained(x[:8], training=False).numpy(),
                             rtol=1e-5, atol=1e-6)
  assert sorted(trained.conversion.converted) == [
      "block0_conv", "block1_conv", "logits", "mix", "proj_conv", "stem"]
  # Where the class holds them: attribute, list, dict, nested Sequential.
  assert isinstance(net.stem, LatentKernel)
  assert all(isinstance(b.conv, LatentKernel) for b in net.blocks)
  assert isinstance(net.heads["logits"], LatentKernel)
  assert isinstance(net.mix, LatentSeparableConv2D)
  assert isinstance(net.proj.get_layer("proj_conv"), LatentKernel)
  assert sorted(trained.group_layers) == [
      "conv1x1", "conv3x3", "dense", "depthwise3x3"]
  assert np.isfinite(float(trained.total_bits()))
  # Sizes and MACs, from the shapes the layers were built for: 28x28 input,
  # stride 2 valid -> 13x13; the separable one stride 2 valid -> 6x6.
  layers = lilnetx_tf.compression_stats(trained, coded=False)["layers"]
  assert layers["stem"]["macs_dense"] == 13 * 13 * 9 * 1 * 8
  assert layers["block1_conv"]["macs_dense"] == 13 * 13 * 9 * 8 * 8
  assert layers["mix_pointwise"]["macs_dense"] == 6 * 6 * 8 * 12
  assert layers["logits"]["macs_dense"] == 8 * 10


def test_weights_only_file_fills_a_fresh_instance_exactly(trained, digits,
                                                          tmp_path):
  x, _ = digits
  path = tmp_path / "cnn.lnx"
  with pytest.raises(ValueError, match="weights_only=True"):
    lilnetx_tf.save_compressed(trained, tmp_path / "full.lnx")
  sizes = lilnetx_tf.save_compressed(trained, path, weights_only=True)
  assert sizes["weights_only"]
  assert sections.parse(path.read_bytes())["header"]["architecture"] is None
  with pytest.raises(ValueError, match=r"into=model"):
    lilnetx_tf.load_compressed(path)

  fresh = _built(SmallCNN(), x)
  assert lilnetx_tf.load_compressed(path, into=fresh) is fresh
  want = trained(x[:64], training=False).numpy()
  np.testing.assert_array_equal(fresh(x[:64], training=False).numpy(), want)
  # Each kernel where the class holds it, bit for bit.
  plain = {l.name: l for l in compat.flatten_layers(fresh)}
  for layer in trained.latent_layers:
    owner, index = layer.kernel_ref
    np.testing.assert_array_equal(plain[owner].get_weights()[index],
                                  layer.decoded_kernel().numpy())
  # Without a file, and from the bytes: the same weights.
  direct = lilnetx_tf.decompressed_model(trained, into=_built(SmallCNN(), x))
  from_bytes = fileformat.load_compressed_bytes(
      path.read_bytes(), into=_built(SmallCNN(), x))
  for other in (direct, from_bytes):
    for a, b in zip(other.weights, fresh.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  with pytest.raises(ValueError, match="into=plain"):
    lilnetx_tf.decompressed_model(trained)

  # The filled model converts to TFLite as it is; the export's folding and
  # channel removal refuse it, saying why.
  reference = tflite_check.keras_logits(fresh, x[:64])
  outputs = tflite_check.TFLiteRunner(tflite.convert(fresh))(x[:64])
  np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="subclassed.*convert"):
    tflite.prepare_for_export(fresh)


def test_weights_only_file_inspects_and_recodes(trained, digits, tmp_path):
  x, _ = digits
  path, recoded = tmp_path / "cnn.lnx", tmp_path / "recoded.lnx"
  lilnetx_tf.save_compressed(trained, path, weights_only=True,
                             fold_batch_norm=True, batch_norm_bits=8)
  assert lilnetx_tf.inspect_compressed(path)["sizes"]["weights_only"]
  lilnetx_tf.recode_compressed(path, recoded, coders.CONSTRICTION)
  info = lilnetx_tf.inspect_compressed(recoded)["sizes"]
  assert info["weights_only"] and info["coder"] == coders.CONSTRICTION
  a = lilnetx_tf.load_compressed(path, into=_built(SmallCNN(), x))
  b = lilnetx_tf.load_compressed(recoded, into=_built(SmallCNN(), x))
  for u, v in zip(a.weights, b.weights):
    np.testing.assert_array_equal(u.numpy(), v.numpy())
  # Folded: zero means, unit variances, the same outputs up to rounding.
  assert not a.blocks[0].bn.moving_mean.numpy().any()
  np.testing.assert_allclose(a(x[:64]).numpy(),
                             trained(x[:64], training=False).numpy(),
                             rtol=0.02, atol=0.02)
  result = subprocess.run(
      [sys.executable, "-m", "export.bitstream", "--inspect", str(path)],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "weights only" in result.stdout.splitlines()[0]


def test_mismatched_models_are_refused_before_anything_is_set(
    trained, digits, tmp_path):
  x, _ = digits
  path = tmp_path / "cnn.lnx"
  lilnetx_tf.save_compressed(trained, path, weights_only=True)

  wider = _built(SmallCNN(widths=(8, 12)), x)
  before = [w.numpy() for w in wider.weights]
  with pytest.raises(ValueError) as error:
    lilnetx_tf.load_compressed(path, into=wider)
  message = str(error.value)
  assert "'block1_conv'" in message and "(3, 3, 8, 12)" in message
  assert "(3, 3, 8, 8)" in message and str(path) in message
  for w, b in zip(wider.weights, before):  # All or nothing.
    np.testing.assert_array_equal(w.numpy(), b)

  with pytest.raises(ValueError, match=r"not in the model: \['block1_bn', "
                     r"'block1_conv'\]"):
    lilnetx_tf.load_compressed(path, into=_built(SmallCNN(widths=(8,)), x))
  with pytest.raises(TypeError, match="latent layers"):
    lilnetx_tf.load_compressed(path, into=trained)
  with pytest.raises(ValueError, match="not built"):
    lilnetx_tf.load_compressed(path, into=SmallCNN())


def test_layers_named_by_keras_and_tuples_get_clear_refusals(digits,
                                                             tmp_path):
  x, _ = digits

  class Tiny(tf.keras.Model):

    def __init__(self, hold=list):
      super().__init__()
      self.first = L.Dense(8)
      self.last = hold([L.Dense(4)])

    def call(self, x):
      return self.last[0](self.first(tf.reshape(x, (-1, 28 * 28))))

  tiny = _built(Tiny(hold=tuple), x)
  first = tiny.first
  with pytest.raises(ValueError, match="tuple"):
    lilnetx_tf.compressible(tiny)
  assert tiny.first is first  # Left as it was.
  model = lilnetx_tf.compressible(_built(Tiny(), x), initial_prior_steps=0)
  path = tmp_path / "tiny.lnx"
  lilnetx_tf.save_compressed(model, path, weights_only=True)
  # A second instance: Keras numbers its layer names on.
  with pytest.raises(ValueError, match="give the layers names"):
    lilnetx_tf.load_compressed(path, into=_built(Tiny(), x))


def _functional():
  inputs = L.Input((28, 28, 1))
  h = L.Conv2D(6, 3, strides=2, name="conv")(inputs)
  h = L.ReLU()(L.BatchNormalization(name="bn")(h))
  outputs = L.Dense(10, name="head")(L.GlobalAveragePooling2D()(h))
  return tf.keras.Model(inputs, outputs, name="functional")


def test_weights_only_equals_the_full_file_and_into_takes_either(digits,
                                                                 tmp_path):
  """The weights-only writer against the full one, on a functional model."""
  x, y = digits
  tf.keras.utils.set_random_seed(1)
  model = lilnetx_tf.compressible(_functional(), seed=1,
                                  initial_prior_steps=50)
  model.compile(tf.keras.optimizers.Adam(1e-2),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  model.fit(x, y, batch_size=128, epochs=1, verbose=0)
  full, weights = tmp_path / "full.lnx", tmp_path / "weights.lnx"
  options = dict(fold_batch_norm=True, batch_norm_bits=6)
  lilnetx_tf.save_compressed(model, full, **options)
  lilnetx_tf.save_compressed(model, weights, weights_only=True, **options)
  info = {p: lilnetx_tf.inspect_compressed(p) for p in (full, weights)}
  assert not info[full]["sizes"]["weights_only"]
  assert info[weights]["sizes"]["file_bytes"] < (
      info[full]["sizes"]["file_bytes"])
  for key in ("latent_bytes", "num_latents", "num_float_params"):
    assert info[weights]["sizes"][key] == info[full]["sizes"][key]
  loaded = lilnetx_tf.load_compressed(full)
  for path in (full, weights):
    filled = lilnetx_tf.load_compressed(path, into=_functional())
    assert [w.name for w in filled.weights] == [
        w.name for w in loaded.weights]
    for a, b in zip(filled.weights, loaded.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_init_from_weights_keeps_a_subclassed_models_weights(digits):
  x, _ = digits
  tf.keras.utils.set_random_seed(2)
  net = _built(SmallCNN(), x)
  kernels = {"stem": net.stem.kernel.numpy(),
             "block1_conv": net.blocks[1].conv.kernel.numpy()}
  stem_bias = net.stem.bias.numpy()
  model = lilnetx_tf.compressible(net, init_from_weights=True, seed=0,
                                  initial_prior_steps=0)
  for layer in (net.stem, net.blocks[1].conv):
    step = float(model.decoders[layer.group].scale.numpy())
    error = np.abs(layer.decoded_kernel().numpy() - kernels[layer.name])
    assert error.max() <= 0.5 * step * (1 + 1e-5)
  np.testing.assert_array_equal(net.stem.bias_variable.numpy(), stem_bias)
