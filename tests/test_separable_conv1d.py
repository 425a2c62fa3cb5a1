"""SeparableConv2D and Conv1D as latent layers: conversion, decoding, storage,
export, and the Keras applications built from them.
"""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.method.stats import count_macs

L = tf.keras.layers


def _separable_net():
  inputs = tf.keras.Input((12, 12, 3))
  x = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2,
                        name="sep1")(inputs)
  x = L.ReLU()(L.BatchNormalization(name="bn1")(x))
  x = L.SeparableConv2D(6, 5, strides=2, use_bias=False, name="sep2")(x)
  x = L.GlobalAveragePooling2D()(x)
  return tf.keras.Model(inputs, L.Dense(4, name="logits")(x))


def _conv1d_net():
  inputs = tf.keras.Input((20, 4))
  x = L.Conv1D(8, 5, padding="same", activation="relu", name="c1")(inputs)
  x = L.Conv1D(6, 3, padding="causal", dilation_rate=2, name="c2")(x)
  x = L.GlobalAveragePooling1D()(x)
  return tf.keras.Model(inputs, L.Dense(4, name="logits")(x))


def _by_hand_decode(latent, matrix):
  """round(latent) decoded slice by slice, in NumPy."""
  rounded = np.round(latent).astype(np.float64)
  spatial = rounded.shape[:-2]
  slices = np.moveaxis(rounded.reshape(-1, *rounded.shape[-2:]), 0, -1)
  # w[p] = sum_q latent[q] * matrix[q, p], per slice.
  decoded = slices @ np.asarray(matrix, np.float64)  # (in, out, positions)
  return np.moveaxis(decoded, -1, 0).reshape(*spatial, *rounded.shape[-2:])


def _inputs(model, seed=0):
  shape = (3,) + tuple(model.input_shape[1:])
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# MACs by hand. sep1: 12x12 outputs, depthwise 3x3x3x2 and pointwise 6x8;
# sep2: 4x4 outputs, depthwise 5x5x8x1 and pointwise 8x6; logits 6x4.
_SEPARABLE_MACS = 144 * (9 * 3 * 2 + 6 * 8) + 16 * (25 * 8 + 8 * 6) + 24
# c1: 20 outputs x 5 taps x 4 x 8; c2: 20 x 3 x 8 x 6; logits 6 x 4.
_CONV1D_MACS = 20 * 5 * 4 * 8 + 20 * 3 * 8 * 6 + 24


@pytest.mark.parametrize("build,groups,macs", [
    (_separable_net, {"depthwise3x3": ["sep1_depthwise"],
                      "depthwise5x5": ["sep2_depthwise"],
                      "conv1x1": ["sep1_pointwise", "sep2_pointwise"],
                      "dense": ["logits"]}, _SEPARABLE_MACS),
    (_conv1d_net, {"conv5": ["c1"], "conv3": ["c2"], "dense": ["logits"]},
     _CONV1D_MACS),
])
def test_converted_decoded_and_stored_exactly(build, groups, macs, tmp_path):
  tf.keras.utils.set_random_seed(1)
  plain = build()
  model = lilnetx_tf.compressible(plain, seed=0)
  assert not model.conversion.skipped
  assert {g: [l.name for l in ls] for g, ls in model.group_layers.items()} == (
      groups)
  x = _inputs(plain)
  expected = model(x, training=False).numpy()

  for layer in model.latent_layers:
    decoded = layer.decoded_kernel().numpy()
    np.testing.assert_allclose(decoded, _by_hand_decode(
        layer.latent.numpy(), model.decoders[layer.group].matrix.numpy()),
                               rtol=1e-5, atol=1e-6)
  # The separable layer computes a depthwise then a 1x1 convolution with its
  # decoded kernels: a second implementation, from stock layers.
  if build is _separable_net:
    sep = model.network.get_layer("sep1")
    depthwise = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2,
                                  use_bias=False)
    pointwise = L.Conv2D(8, 1)
    pointwise(depthwise(x))  # Builds both.
    depthwise.set_weights([sep.depthwise_layer.decoded_kernel().numpy()])
    pointwise.set_weights([sep.pointwise_layer.decoded_kernel().numpy(),
                           sep.bias.numpy()])
    ref = pointwise(depthwise(x)).numpy()
    np.testing.assert_allclose(sep(x).numpy(), ref, rtol=1e-5, atol=1e-5)

  # A latent slice that rounds to zero decodes to an exactly zero slice.
  for layer in model.latent_layers:
    latent = layer.latent.numpy()
    latent[..., 0, 0] = 0.4
    layer.latent.assign(latent)
    assert np.all(layer.decoded_kernel().numpy()[..., 0, 0] == 0)
  expected = model(x, training=False).numpy()

  # Decompressed, stored and loaded: the same weights, bit for bit.
  plain_again = lilnetx_tf.decompressed_model(model)
  np.testing.assert_array_equal(plain_again(x).numpy(), expected)
  path = tmp_path / "model.lnx"
  sizes = lilnetx_tf.save_compressed(model, path)
  assert sizes["format_version"] == fileformat.FORMAT_VERSION
  loaded = fileformat.load_compressed(path)
  for a, b in zip(loaded.weights, plain_again.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(loaded(x).numpy(), expected)
  assert type(loaded.get_layer(model.latent_layers[0].kernel_ref[0])) in (
      L.SeparableConv2D, L.Conv1D)

  # Keras' own format keeps the latent layers.
  model.save(tmp_path / "model.keras")
  reloaded = tf.keras.models.load_model(tmp_path / "model.keras")
  np.testing.assert_array_equal(reloaded(x, training=False).numpy(), expected)
  stats = lilnetx_tf.compression_stats(model, coded=False)["total"]
  assert count_macs(plain) == stats["macs_dense"] == macs


def test_init_from_weights_keeps_separable_kernels_to_rounding():
  plain = _separable_net()
  model = lilnetx_tf.compressible(plain, seed=0, init_from_weights=True)
  sep = plain.get_layer("sep1")
  latent = model.network.get_layer("sep1")
  for index, sub in ((0, latent.depthwise_layer), (1, latent.pointwise_layer)):
    # A scaled identity decoder: the step between decoded levels.
    step = float(model.decoders[sub.group].matrix.numpy()[0, 0])
    error = np.abs(sub.decoded_kernel().numpy() - sep.get_weights()[index])
    assert error.max() <= step / 2 * (1 + 1e-5)
  np.testing.assert_array_equal(latent.bias.numpy(), sep.bias.numpy())


def test_separable_export_removes_dead_channels_exactly():
  tf.keras.utils.set_random_seed(2)
  model = lilnetx_tf.compressible(_separable_net(), seed=0)
  # Output channels 1 and 6 of sep1: zero pointwise latents (no shift, so
  # zero kernels), then zero bias; BN (fresh statistics) keeps them at 0.
  sep1 = model.network.get_layer("sep1")
  latent = sep1.pointwise_layer.latent.numpy()
  latent[..., [1, 6]] = 0
  sep1.pointwise_layer.latent.assign(latent)
  sep1.bias_variable.assign(tf.zeros_like(sep1.bias_variable))
  exported = tflite.prepare_for_export(model)
  layers = {l["name"]: l for l in exported.prune_report.to_dict()["layers"]}
  assert (layers["sep1"]["out_kept"], layers["sep1"]["out_total"]) == (6, 8)
  assert layers["sep2"]["in_kept"] == 6
  assert exported.pruned.get_layer("sep2").get_weights()[0].shape == (
      5, 5, 6, 1)
  x = _inputs(exported.pruned)
  expected = model(x, training=False).numpy()
  np.testing.assert_allclose(exported.pruned(x).numpy(), expected,
                             rtol=1e-5, atol=1e-5)
  outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(x)
  np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("application,shape,block", [
    (tf.keras.applications.Xception, (71, 71, 3), "block2_sepconv1"),
    (tf.keras.applications.NASNetMobile, (32, 32, 3),
     "separable_conv_1_normal_left1_0"),
])
def test_keras_applications_convert_and_export(application, shape, block):
  tf.keras.utils.set_random_seed(3)
  plain = application(weights=None, input_shape=shape, classes=10,
                      classifier_activation=None)
  model = lilnetx_tf.compressible(plain, seed=0)
  assert not model.conversion.skipped
  kernels = sum(int(np.prod(w.shape)) for l in plain.layers
                for w in l.weights if "kernel" in w.name)
  latents = sum(int(np.prod(l.latent.shape)) for l in model.latent_layers)
  assert latents == kernels
  # Kill two output channels of one separable convolution.
  sep = model.network.get_layer(block)
  latent = sep.pointwise_layer.latent.numpy()
  latent[..., :2] = 0
  sep.pointwise_layer.latent.assign(latent)
  exported = tflite.prepare_for_export(model)
  layers = {l["name"]: l for l in exported.prune_report.to_dict()["layers"]}
  assert layers[block]["out_total"] - layers[block]["out_kept"] == 2
  x = _inputs(plain)
  expected = model(x, training=False).numpy()
  scale = np.abs(expected).max()
  assert np.abs(exported.pruned(x).numpy() - expected).max() <= 1e-4 * scale
  outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(x)
  assert np.abs(outputs - expected).max() <= 1e-4 * scale
