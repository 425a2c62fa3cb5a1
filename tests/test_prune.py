"""Tests of batch norm folding and exact zero-channel removal.

The invariant: removal leaves the outputs unchanged (to float32 rounding) while
the model really gets smaller, with exactly the expected channels gone.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.deploy.fold import fold_batch_norm
from lilnetx_tf.channel_pad import ChannelPad
from lilnetx_tf.method.stats import count_macs
from lilnetx_tf.models import build_model
from lilnetx_tf.deploy.prune import remove_zero_channels

L = tf.keras.layers
_KERNEL_LAYERS = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D,
                  L.Dense)


# Small architectures. Every conv_bn block names its layers {name}_conv,
# {name}_bn and {name}_relu.


def _conv_bn(x, filters, name, kernel=3, strides=1, relu=True, depthwise=False,
             groups=1):
  if depthwise:
    x = L.DepthwiseConv2D(kernel, strides, "same", use_bias=False,
                          name=f"{name}_conv")(x)
  else:
    x = L.Conv2D(filters, kernel, strides, "same", use_bias=False,
                 groups=groups, name=f"{name}_conv")(x)
  x = L.BatchNormalization(name=f"{name}_bn")(x)
  max_value = relu if relu not in (True, False) else None
  return L.ReLU(max_value, name=f"{name}_relu")(x) if relu else x


def _sep_bn(x, filters, name, strides=1, relu=True, depth_multiplier=1):
  x = L.SeparableConv2D(filters, 3, strides, "same", use_bias=False,
                        depth_multiplier=depth_multiplier,
                        name=f"{name}_conv")(x)
  x = L.BatchNormalization(name=f"{name}_bn")(x)
  return L.ReLU(name=f"{name}_relu")(x) if relu else x


def _separable():
  """Xception-like: separable blocks s1, s2 (multiplier 2) around an add."""
  inputs = tf.keras.Input((16, 16, 3))
  x = _conv_bn(inputs, 8, "stem")
  out = _sep_bn(x, 12, "s1")
  out = _sep_bn(out, 8, "s2", relu=False, depth_multiplier=2)
  x = L.ReLU(name="s_out")(L.Add(name="s_add")([x, out]))
  x = _sep_bn(x, 16, "s3", strides=2)
  x = L.GlobalAveragePooling2D(name="gap")(x)
  return tf.keras.Model(inputs, L.Dense(5, name="logits")(x))


def _conv1d():
  """1-D signal model: same, causal dilated and strided convolutions."""
  inputs = tf.keras.Input((32, 4))
  x = L.Conv1D(8, 5, padding="same", use_bias=False, name="c1_conv")(inputs)
  x = L.ReLU(name="c1_relu")(L.BatchNormalization(name="c1_bn")(x))
  x = L.Conv1D(12, 3, padding="causal", dilation_rate=2, activation="relu",
               name="c2")(x)
  x = L.MaxPooling1D(name="p1")(x)
  x = L.Conv1D(8, 3, strides=2, padding="same", use_bias=False,
               name="c3_conv")(x)
  x = L.ReLU(name="c3_relu")(L.BatchNormalization(name="c3_bn")(x))
  x = L.GlobalAveragePooling1D(name="gap")(x)
  return tf.keras.Model(inputs, L.Dense(5, name="logits")(x))


def _regnet(groups=4):
  """RegNetX-like blocks r1 (8 -> 8, add), r2 (stride 2): 1x1 conv a (16),
  grouped 3x3 conv g (16 filters in `groups` groups), 1x1 conv c (8)."""
  inputs = tf.keras.Input((16, 16, 3))
  x = _conv_bn(inputs, 8, "stem")
  for name, strides in (("r1", 1), ("r2", 2)):
    out = _conv_bn(x, 16, f"{name}a", kernel=1)
    out = _conv_bn(out, 16, f"{name}g", strides=strides, groups=groups)
    out = _conv_bn(out, 8, f"{name}c", kernel=1, relu=False)
    if strides == 1:
      out = L.Add(name=f"{name}_add")([x, out])
    x = L.ReLU(name=f"{name}_out")(out)
  x = L.GlobalAveragePooling2D(name="gap")(x)
  return tf.keras.Model(inputs, L.Dense(5, name="logits")(x))


def _resnet(shortcut):
  """Stem 8, block b1 (8), block b2 (16, stride 2), block b3 (16), head."""
  inputs = tf.keras.Input((16, 16, 3))
  x = _conv_bn(inputs, 8, "stem")
  for name, filters, strides in (("b1", 8, 1), ("b2", 16, 2), ("b3", 16, 1)):
    out = _conv_bn(x, filters, f"{name}a", strides=strides)
    out = _conv_bn(out, filters, f"{name}b", relu=False)
    if strides == 1:
      short = x
    elif shortcut == "A":  # Subsample, then zero-pad 8 -> 16 channels.
      short = L.AveragePooling2D(1, strides, name=f"{name}_pool")(x)
      short = ChannelPad(4, 4, name=f"{name}_pad")(short)
    else:
      short = _conv_bn(x, filters, f"{name}s", kernel=1, strides=strides,
                       relu=False)
    x = L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([out, short]))
  x = L.GlobalAveragePooling2D(name="gap")(x)
  return tf.keras.Model(inputs, L.Dense(5, name="logits")(x))


def _mobilenet():
  """Inverted residuals: m1 (8 -> 8, add), m2 (stride 2), m3 (12 -> 12, add)."""
  inputs = tf.keras.Input((16, 16, 3))
  x = _conv_bn(inputs, 8, "stem", strides=2, relu=6.0)
  for name, filters, strides in (("m1", 8, 1), ("m2", 12, 2), ("m3", 12, 1)):
    out = _conv_bn(x, 3 * x.shape[-1], f"{name}e", kernel=1, relu=6.0)
    out = _conv_bn(out, None, f"{name}d", strides=strides, relu=6.0,
                   depthwise=True)
    out = _conv_bn(out, filters, f"{name}p", kernel=1, relu=False)
    x = L.Add(name=f"{name}_add")([x, out]) if strides == 1 else out
  x = _conv_bn(x, 32, "head", kernel=1, relu=6.0)
  x = L.GlobalAveragePooling2D(name="gap")(x)
  return tf.keras.Model(inputs, L.Dense(5, name="logits")(x))


def _vgg():
  inputs = tf.keras.Input((16, 16, 3))
  x = _conv_bn(inputs, 8, "c1")
  x = L.MaxPooling2D(name="p1")(_conv_bn(x, 8, "c2"))
  x = _conv_bn(x, 16, "c3")
  x = L.MaxPooling2D(name="p2")(_conv_bn(x, 16, "c4"))  # 4 x 4 x 16.
  x = L.Flatten(name="flatten")(x)
  x = L.Dropout(0.5, name="drop")(L.Dense(32, "relu", name="fc1")(x))
  return tf.keras.Model(inputs, L.Dense(5, name="logits")(x))


def _lenet5():
  """Sequential on purpose: the API accepts built Sequential models too."""
  return tf.keras.Sequential([
      tf.keras.Input((28, 28, 1)),
      L.Conv2D(6, 5, activation="relu", name="conv1"),
      L.MaxPooling2D(name="pool1"),
      L.Conv2D(16, 5, activation="relu", name="conv2"),
      L.MaxPooling2D(name="pool2"),  # 4 x 4 x 16.
      L.Flatten(name="flatten"),
      L.Dense(120, "relu", name="fc1"),
      L.Dense(84, "relu", name="fc2"),
      L.Dense(10, name="logits"),
  ])


_ARCHITECTURES = {
    "resnet_option_a": lambda: _resnet("A"),
    "resnet_projection": lambda: _resnet("projection"),
    "mobilenet": _mobilenet,
    "vgg": _vgg,
    "lenet5": _lenet5,
    "separable": _separable,
    "conv1d": _conv1d,
    "regnet": _regnet,
}


# Weight surgery on the original model.


def _randomize(model, seed=0):
  """Non-trivial batch norm statistics and biases, so nothing is zero by luck."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                         rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c)])
    elif isinstance(layer, _KERNEL_LAYERS) and layer.use_bias:
      layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
  return model


def _next_bn(layer):
  nodes = layer.outbound_nodes
  if len(nodes) == 1 and isinstance(nodes[0].layer, L.BatchNormalization):
    return nodes[0].layer
  return None


def _zero_preserving_bn(bn, channels):
  """Makes batch norm `bn` map 0 to 0 on `channels` (beta and mean 0)."""
  gamma, beta, mean, var = bn.get_weights()
  beta[channels], mean[channels] = 0, 0
  bn.set_weights([gamma, beta, mean, var])


def _kill_outputs(layer, channels):
  """Makes output channels zero: kernel slice, bias, and the next BN's beta
  and mean (so that the BN maps the zero to zero)."""
  weights = layer.get_weights()
  # A separable convolution's output channels come from its pointwise kernel.
  index = 1 if isinstance(layer, L.SeparableConv2D) else 0
  kernel = weights[index]
  if isinstance(layer, L.DepthwiseConv2D):
    kernel = kernel.reshape(*kernel.shape[:2], -1)
  kernel[..., channels] = 0
  weights[index] = kernel.reshape(weights[index].shape)
  for bias in weights[index + 1:]:
    bias[channels] = 0
  layer.set_weights(weights)
  bn = _next_bn(layer)
  if bn is not None:
    _zero_preserving_bn(bn, channels)


def _unread_inputs(layer, channels):
  weights = layer.get_weights()
  weights[0][..., channels, :] = 0
  layer.set_weights(weights)


def _sparsify(model, seed, p_out=0.3, p_in=0.15):
  """Zeroes random output channels and input slices of every kernel layer."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if not isinstance(layer, _KERNEL_LAYERS) or layer.name == "logits":
      continue
    kernel = layer.get_weights()[0]
    channels = (np.prod(kernel.shape[-2:]) if isinstance(
        layer, L.DepthwiseConv2D) else layer.output_shape[-1])
    _kill_outputs(layer, rng.random(channels) < p_out)
    if not isinstance(layer, L.DepthwiseConv2D):
      _unread_inputs(layer, rng.random(kernel.shape[-2]) < p_in)


# Checks.


def _inputs(model, seed=1):
  shape = (4,) + tuple(model.input_shape[1:])
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _assert_same_outputs(model, other):
  x = _inputs(model)
  expected = model(x, training=False).numpy()
  actual = other(x, training=False).numpy()
  assert actual.shape == expected.shape
  scale = max(1.0, np.abs(expected).max())
  assert np.abs(actual - expected).max() <= 1e-5 * scale


def _prune(model, fold=False):
  """Prunes (after folding if asked); checks exactness and the report."""
  source = fold_batch_norm(model) if fold else model
  pruned, report = remove_zero_channels(source)
  _assert_same_outputs(model, pruned)
  assert report.params_before == source.count_params()
  assert report.params_after == pruned.count_params()
  assert report.macs_before == count_macs(source)
  assert report.macs_after == count_macs(pruned)
  for entry in report.layers:
    layer = pruned.get_layer(entry.name)
    if isinstance(layer, _KERNEL_LAYERS):
      assert layer.output_shape[-1] == entry.out_kept
      assert layer.input_shape[-1] == entry.in_kept
  json.dumps(report.to_dict())
  return pruned, report


def _out(model, name):
  return model.get_layer(name).output_shape[-1]


def _in(model, name):
  return model.get_layer(name).input_shape[-1]


# Folding.


@pytest.mark.parametrize("arch", sorted(_ARCHITECTURES))
def test_fold_batch_norm_keeps_outputs_and_removes_bn(arch):
  model = _randomize(_ARCHITECTURES[arch]())
  before = [w.copy() for w in model.get_weights()]
  folded = fold_batch_norm(model)
  _assert_same_outputs(model, folded)
  assert not any(isinstance(l, L.BatchNormalization) for l in folded.layers)
  for layer in folded.layers:
    if isinstance(layer, _KERNEL_LAYERS):
      assert layer.use_bias
  # The input model is left alone.
  for old, new in zip(before, model.get_weights()):
    np.testing.assert_array_equal(old, new)


def test_fold_keeps_batch_norm_that_cannot_be_folded():
  inputs = tf.keras.Input((8, 8, 3))
  a = L.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(inputs)
  a = L.BatchNormalization(name="after_relu")(a)  # Activation in between.
  b = L.Conv2D(4, 3, padding="same", name="shared_conv")(a)
  c = L.BatchNormalization(name="second_consumer")(b)  # b is also added.
  d = L.Add()([b, c])
  d = L.BatchNormalization(name="after_add")(d)
  e = L.Conv2D(4, 1, name="folded_conv")(d)
  e = L.BatchNormalization(name="folded")(e)
  model = _randomize(tf.keras.Model(inputs, L.Flatten()(e)))
  folded = fold_batch_norm(model)
  _assert_same_outputs(model, folded)
  kept = {l.name for l in folded.layers if isinstance(l, L.BatchNormalization)}
  assert kept == {"after_relu", "second_consumer", "after_add"}


# Pruning: random zeros on every architecture, with and without folding.


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("arch", sorted(_ARCHITECTURES))
def test_random_zero_channels_are_removed_exactly(arch, fold):
  model = _randomize(_ARCHITECTURES[arch]())
  _sparsify(model, seed=len(arch))
  pruned, report = _prune(model, fold)
  assert report.params_after < report.params_before
  assert report.macs_after < report.macs_before
  # Nothing removable is left behind, and the logits are all there.
  again, second = remove_zero_channels(pruned)
  assert second.params_after == second.params_before
  assert _out(again, "logits") == _out(model, "logits")


def test_untouched_model_is_unchanged():
  model = _randomize(_resnet("A"))
  pruned, report = _prune(model)
  assert report.params_after == report.params_before
  assert report.macs_after == report.macs_before


# Residual streams.


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_stream_channel_zero_in_one_writer_is_kept(fold):
  model = _randomize(_resnet("projection"))
  # Stream stem -> b1_add -> b1_out is written by stem and b1b.
  _kill_outputs(model.get_layer("stem_conv"), [2])
  pruned, report = _prune(model, fold)
  assert _out(pruned, "stem_conv") == 8
  assert _out(pruned, "b1b_conv") == 8
  assert report.params_after == report.params_before


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_stream_channel_zero_in_every_writer_is_removed(fold):
  model = _randomize(_resnet("projection"))
  for name in ("stem_conv", "b1b_conv"):
    _kill_outputs(model.get_layer(name), [2])
  pruned, _ = _prune(model, fold)
  assert _out(pruned, "stem_conv") == 7
  assert _out(pruned, "b1b_conv") == 7
  for reader in ("b1a_conv", "b2a_conv", "b2s_conv"):
    assert _in(pruned, reader) == 7
  reference = fold_batch_norm(model) if fold else model
  kernel = reference.get_layer("b2a_conv").get_weights()[0]
  np.testing.assert_array_equal(
      pruned.get_layer("b2a_conv").get_weights()[0],
      np.delete(kernel, 2, axis=2))


def test_stream_channel_read_by_no_one_is_removed():
  model = _randomize(_resnet("projection"))
  for name in ("b1a_conv", "b2a_conv", "b2s_conv"):  # All readers.
    _unread_inputs(model.get_layer(name), [5])
  pruned, _ = _prune(model)
  assert _out(pruned, "stem_conv") == 7
  assert _out(pruned, "b1b_conv") == 7


def test_channel_pad_zeros_removed_only_when_zero_in_every_writer():
  # Stream b2/b3 (16 channels) is written by the pad, b2b and b3b.
  model = _randomize(_resnet("A"))
  _kill_outputs(model.get_layer("b2b_conv"), [0, 15])
  pruned, _ = _prune(model)
  assert pruned.get_layer("b2_pad").get_config()["before"] == 4
  assert _out(pruned, "b2b_conv") == 16
  _kill_outputs(model.get_layer("b3b_conv"), [0, 15])
  pruned, _ = _prune(model)
  config = pruned.get_layer("b2_pad").get_config()
  assert (config["before"], config["after"]) == (3, 3)
  assert _out(pruned, "b2b_conv") == _out(pruned, "b3b_conv") == 14
  assert _in(pruned, "logits") == 14


def test_padded_stream_channel_needs_both_streams_zero():
  # Channel 1 of the 8-channel stream is channel 4 + 1 of the 16-channel one.
  model = _randomize(_resnet("A"))
  for name in ("stem_conv", "b1b_conv"):
    _kill_outputs(model.get_layer(name), [1])
  pruned, _ = _prune(model)
  assert _out(pruned, "stem_conv") == 8  # Still added to b2b's channel 5.
  for name in ("b2b_conv", "b3b_conv"):
    _kill_outputs(model.get_layer(name), [5])
  pruned, _ = _prune(model)
  assert _out(pruned, "stem_conv") == _out(pruned, "b1b_conv") == 7
  assert _out(pruned, "b2b_conv") == _out(pruned, "b3b_conv") == 15
  assert pruned.get_layer("b2_pad").get_config()["before"] == 4


# Inverted residuals.


def test_mobilenet_unread_expansion_channel_goes_through_depthwise():
  model = _randomize(_mobilenet())
  _unread_inputs(model.get_layer("m1p_conv"), [3, 7])
  pruned, _ = _prune(model)
  assert _out(pruned, "m1e_conv") == 22
  assert pruned.get_layer("m1d_conv").get_weights()[0].shape[2] == 22
  assert _in(pruned, "m1p_conv") == 22


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_separable_channels_removed_through_both_kernels(fold):
  model = _randomize(_separable())
  _kill_outputs(model.get_layer("s1_conv"), [2, 5])  # Pointwise columns.
  _unread_inputs(model.get_layer("s2_conv"), [7])  # A depthwise input slice.
  # s2's pointwise rows of depthwise channel 4 (multiplier 2: rows 8, 9)
  # make s1's channel 4 unread through the depthwise kernel.
  weights = model.get_layer("s2_conv").get_weights()
  weights[1][..., 8:10, :] = 0
  model.get_layer("s2_conv").set_weights(weights)
  pruned, _ = _prune(model, fold)
  assert _out(pruned, "s1_conv") == 12 - 4
  depthwise, pointwise = pruned.get_layer("s2_conv").get_weights()[:2]
  assert depthwise.shape == (3, 3, 8, 2)
  assert pointwise.shape == (1, 1, 16, 8)
  # s2 writes the residual stream, which the stem and the add keep whole.
  assert _out(pruned, "s2_conv") == 8


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_mobilenet_constant_channel_after_batch_norm_is_kept(fold):
  model = _randomize(_mobilenet())
  _kill_outputs(model.get_layer("m1e_conv"), [3])
  # The depthwise BN maps the zero to beta - mean * scale != 0: a constant.
  pruned, _ = _prune(model, fold)
  assert _out(pruned, "m1e_conv") == 24
  _kill_outputs(model.get_layer("m1d_conv"), [3])  # Now the BN maps 0 to 0.
  pruned, _ = _prune(model, fold)
  assert _out(pruned, "m1e_conv") == 23
  assert _out(pruned, "m1d_conv") == 23


def test_mobilenet_residual_stream():
  model = _randomize(_mobilenet())
  _kill_outputs(model.get_layer("m1p_conv"), [6])
  pruned, _ = _prune(model)
  assert _out(pruned, "m1p_conv") == 8
  _kill_outputs(model.get_layer("stem_conv"), [6])
  pruned, _ = _prune(model)
  assert _out(pruned, "stem_conv") == _out(pruned, "m1p_conv") == 7
  assert _in(pruned, "m2e_conv") == 7


# Flatten -> Dense heads.


def test_vgg_flatten_rows_follow_removed_channels():
  model = _randomize(_vgg())
  _kill_outputs(model.get_layer("c4_conv"), [2, 9])
  _kill_outputs(model.get_layer("fc1"), [0, 1, 2])
  pruned, _ = _prune(model)
  assert _out(pruned, "c4_conv") == 14
  rows = [s * 16 + c for s in range(16) for c in (2, 9)]
  kernel = model.get_layer("fc1").get_weights()[0]
  expected = np.delete(np.delete(kernel, rows, axis=0), [0, 1, 2], axis=1)
  np.testing.assert_array_equal(pruned.get_layer("fc1").get_weights()[0],
                                expected)
  assert _in(pruned, "logits") == 29


def test_lenet5_dead_and_unread_channels():
  model = _randomize(_lenet5())
  _kill_outputs(model.get_layer("conv1"), [4])  # Bias 0, ReLU(0) = 0.
  fc1 = model.get_layer("fc1")
  _unread_inputs(fc1, [s * 16 + 11 for s in range(16)])  # conv2 channel 11.
  _kill_outputs(model.get_layer("fc2"), list(range(0, 84, 2)))
  pruned, report = _prune(model)
  assert not isinstance(pruned, tf.keras.Sequential)  # Rebuilt functional.
  assert _out(pruned, "conv1") == 5 and _in(pruned, "conv2") == 5
  assert _out(pruned, "conv2") == 15 and _in(pruned, "fc1") == 15 * 16
  assert _out(pruned, "fc2") == 42 and _in(pruned, "logits") == 42
  entry = {e.name: e for e in report.layers}["conv2"]
  assert (entry.in_kept, entry.in_total, entry.out_kept, entry.out_total) == (
      5, 6, 15, 16)


# Activations that do not map 0 to 0, and fully dead tensors.


@pytest.mark.parametrize("activation,removed", [("relu", True),
                                                ("sigmoid", False)])
def test_dead_channel_needs_activation_of_zero_to_be_zero(activation,
                                                          removed):
  inputs = tf.keras.Input((6, 6, 2))
  x = L.Conv2D(4, 3, activation=activation, name="conv")(inputs)
  x = L.Conv2D(3, 1, name="mix")(x)
  model = tf.keras.Model(inputs, L.Flatten()(x))
  _kill_outputs(model.get_layer("conv"), [1])
  pruned, _ = _prune(model)
  assert _out(pruned, "conv") == (3 if removed else 4)


def test_fully_dead_layer_keeps_one_channel():
  model = _randomize(_lenet5())
  _kill_outputs(model.get_layer("fc2"), list(range(84)))
  pruned, _ = _prune(model)
  assert _out(pruned, "fc2") == 1


def test_bad_arguments():
  with pytest.raises(ValueError, match="atol"):
    remove_zero_channels(_lenet5(), atol=-1.0)
  with pytest.raises(ValueError, match="Sequential"):
    fold_batch_norm(tf.keras.Sequential([L.Dense(3)]))


# The model zoo.


@pytest.mark.parametrize("name,options", [
    ("resnet20", {"width": 1}), ("mobilenet_v2", {"alpha": 0.35})])
def test_zoo_models(name, options):
  model = _randomize(build_model(name, (32, 32, 3), 10, **options))
  _sparsify(model, seed=3, p_out=0.4, p_in=0.0)
  _, report = _prune(model, fold=True)
  assert report.params_after < 0.8 * report.params_before
  assert report.macs_after < 0.8 * report.macs_before


# Grouped convolutions: whole groups go, or nothing.


def _assert_group_removed(model, pruned, reference, group, size):
  """Conv g lost group `group` (`size` channels), conv a its outputs and conv
  c its inputs there; the rest of each kernel is as in `reference`."""
  gone = list(range(group * size, (group + 1) * size))
  layer = pruned.get_layer("r1g_conv")
  assert (layer.filters, layer.groups) == (16 - size, 16 // size - 1)
  assert _out(pruned, "r1a_conv") == _in(pruned, "r1c_conv") == 16 - size
  for name, axis in (("r1a_conv", 3), ("r1g_conv", 3), ("r1c_conv", 2)):
    np.testing.assert_array_equal(
        pruned.get_layer(name).get_weights()[0],
        np.delete(reference.get_layer(name).get_weights()[0], gone, axis=axis))
  # The second block is untouched.
  assert (pruned.get_layer("r2g_conv").groups ==
          model.get_layer("r2g_conv").groups)


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("groups", [4, 16], ids=["groups4", "depthwise_like"])
def test_grouped_conv_zero_group_is_removed_whole(groups, fold):
  model = _randomize(_regnet(groups))
  size = 16 // groups
  _kill_outputs(model.get_layer("r1g_conv"), list(range(2 * size, 3 * size)))
  pruned, _ = _prune(model, fold)
  reference = fold_batch_norm(model) if fold else model
  _assert_group_removed(model, pruned, reference, 2, size)


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_grouped_conv_group_with_zero_inputs_is_removed_whole(fold):
  model = _randomize(_regnet(4))
  _kill_outputs(model.get_layer("r1a_conv"), [4, 5, 6, 7])  # Group 1's inputs.
  # Group 1 of conv g reads only zeros, but its batch norm makes constants.
  _, report = _prune(model, fold)
  assert report.params_after == report.params_before
  _zero_preserving_bn(model.get_layer("r1g_bn"), [4, 5, 6, 7])
  pruned, _ = _prune(model, fold)
  reference = fold_batch_norm(model) if fold else model
  assert np.abs(reference.get_layer("r1g_conv").get_weights()[0][
      ..., 4:8]).min() > 0  # Removed for its inputs, not for its kernel.
  _assert_group_removed(model, pruned, reference, 1, 4)


def test_grouped_conv_partly_zero_group_is_kept():
  model = _randomize(_regnet(4))
  _kill_outputs(model.get_layer("r1g_conv"), [8, 9, 10])  # 3 of group 2.
  _kill_outputs(model.get_layer("r1a_conv"), [4, 5, 6])  # 3 of group 1's.
  _zero_preserving_bn(model.get_layer("r1g_bn"), [4, 5, 6, 7])
  pruned, report = _prune(model)
  assert report.params_after == report.params_before
  assert pruned.get_layer("r1g_conv").groups == 4
  # One more channel makes group 2 whole again, and only it goes.
  _kill_outputs(model.get_layer("r1g_conv"), [11])
  pruned, _ = _prune(model)
  _assert_group_removed(model, pruned, model, 2, 4)


def test_grouped_conv_group_exports_through_latents_and_tflite():
  plain = _randomize(_regnet(4))
  _zero_preserving_bn(plain.get_layer("r1g_bn"), [12, 13, 14, 15])
  model = lilnetx_tf.compressible(plain, init_from_weights=True, seed=0)
  layer = model.network.get_layer("r1g_conv")
  latent = layer.latent.numpy()
  latent[..., 12:16] = 0  # Group 3, through the decoder.
  layer.latent.assign(latent)
  exported = tflite.prepare_for_export(model)
  pruned = exported.pruned
  assert (pruned.get_layer("r1g_conv").groups,
          pruned.get_layer("r1g_conv").filters) == (3, 12)
  assert _out(pruned, "r1a_conv") == _in(pruned, "r1c_conv") == 12
  x = _inputs(model.network)
  expected = tflite_check.keras_logits(model, x)
  scale = max(1.0, np.abs(expected).max())
  for outputs in (tflite_check.keras_logits(pruned, x),
                  tflite_check.TFLiteRunner(tflite.convert(pruned))(x)):
    assert np.abs(outputs - expected).max() <= 1e-5 * scale
