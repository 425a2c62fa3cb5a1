"""Channel removal through TensorFlow op layers (`x + skip`, `x * 0.5`, ...).

The invariants: a residual stream written as `x + skip` (a `TFOpLambda`)
loses a channel exactly when every writer's channel is zero, as through an
`Add` layer; a scalar multiply and an elementwise activation op carry a zero
channel when they map 0 to 0 (`relu6(x) * 0.5`), and keep it otherwise
(`sigmoid(x)`); outputs on real digits do not change, and the channel counts
are the ones computed by hand.
"""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf.data import load_arrays
from lilnetx_tf.data import normalize
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.deploy.graph import Graph
from lilnetx_tf.deploy.prune import channel_kind
from lilnetx_tf.deploy.prune import remove_zero_channels

L = tf.keras.layers
_STREAM = 2  # The stream channel the tests zero.


@pytest.fixture(scope="module")
def digits(data_dir):
  x, y, info = load_arrays("mnist", "test", data_dir=data_dir / "mnist",
                           limit=32)
  return normalize(x, info), y


def _residual(activation="relu6"):
  """Stem (8) -> op activation -> block (1x1 conv 12, 3x3 conv 8) -> `x +
  skip` -> the same activation -> head. The activation is
  `tf.nn.relu6(x) * 0.5` or `tf.sigmoid(x)`, both op layers."""
  def act(x):
    return tf.nn.relu6(x) * 0.5 if activation == "relu6" else tf.sigmoid(x)
  inputs = L.Input((28, 28, 1))
  skip = act(L.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs))
  h = L.Conv2D(12, 1, activation="relu", name="expand")(skip)
  h = L.Conv2D(8, 3, padding="same", name="project")(h)
  h = act(skip + h)
  h = L.GlobalAveragePooling2D()(h)
  model = tf.keras.Model(inputs, L.Dense(10, name="logits")(h))
  rng = np.random.default_rng(0)
  for layer in model.layers:  # Nonzero biases: nothing is zero by luck.
    if layer.weights:
      layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
  return model


def _kill_output(layer, channel):
  kernel, bias = layer.get_weights()
  kernel[..., channel], bias[channel] = 0, 0
  layer.set_weights([kernel, bias])


def _channels(model):
  return {name: (model.get_layer(name).input_shape[-1],
                 model.get_layer(name).output_shape[-1])
          for name in ("stem", "expand", "project", "logits")}


def _assert_same_outputs(model, pruned, x):
  expected = model(x, training=False).numpy()
  actual = pruned(x, training=False).numpy()
  scale = max(1.0, np.abs(expected).max())
  assert np.abs(actual - expected).max() <= 1e-5 * scale


def test_op_layers_are_merges_and_activations_of_channels():
  model = _residual()
  graph = Graph(model)
  kinds = {op.layer.get_config()["function"]: channel_kind(graph, op)
           for op in graph.ops if type(op.layer).__name__ == "TFOpLambda"}
  assert kinds == {"nn.relu6": "op_act", "math.multiply": "op_act",
                   "__operators__.add": "op_merge"}
  # A constant with channels, a reduction: opaque.
  inputs = L.Input((4, 4, 3))
  scaled = inputs * np.arange(3, dtype=np.float32)
  reduced = tf.reduce_sum(inputs, axis=-1, keepdims=True) + inputs
  graph = Graph(tf.keras.Model(inputs, [scaled, reduced]))
  assert [channel_kind(graph, op) for op in graph.ops] == [
      "opaque", "opaque", "opaque"]


def test_stream_channel_zero_in_every_writer_is_removed(digits):
  model = _residual()
  for name in ("stem", "project"):  # The two writers of the stream.
    _kill_output(model.get_layer(name), _STREAM)
  pruned, report = remove_zero_channels(model)
  _assert_same_outputs(model, pruned, digits[0])
  assert _channels(pruned) == {"stem": (1, 7), "expand": (7, 12),
                               "project": (12, 7), "logits": (7, 10)}
  # Conv2D 3x3 1 -> 8, 1x1 8 -> 12, 3x3 12 -> 8, Dense 8 -> 10, one channel
  # of the stream fewer.
  assert report.params_before == 80 + 108 + 872 + 90
  assert report.params_after == 70 + 96 + 763 + 80 == pruned.count_params()
  kernel = model.get_layer("expand").get_weights()[0]
  np.testing.assert_array_equal(pruned.get_layer("expand").get_weights()[0],
                                np.delete(kernel, _STREAM, axis=2))


def test_stream_channel_live_in_one_writer_is_kept(digits):
  model = _residual()
  _kill_output(model.get_layer("stem"), _STREAM)  # `project` writes it.
  pruned, report = remove_zero_channels(model)
  _assert_same_outputs(model, pruned, digits[0])
  assert _channels(pruned) == _channels(model)
  assert report.params_after == report.params_before


def test_activation_op_that_maps_zero_elsewhere_keeps_the_channel(digits):
  model = _residual("sigmoid")  # sigmoid(0) = 0.5: read by expand and logits.
  for name in ("stem", "project"):
    _kill_output(model.get_layer(name), _STREAM)
  pruned, report = remove_zero_channels(model)
  _assert_same_outputs(model, pruned, digits[0])
  assert report.params_after == report.params_before


def test_hard_swish_channels_go_through_latents_and_tflite(digits):
  """MobileNetV3's hard swish, `x * relu6(x + 3) / 6`, after a latent conv."""
  inputs = L.Input((28, 28, 1))
  h = L.Conv2D(8, 3, strides=2, name="conv")(inputs)
  h = L.Multiply()([h, L.ReLU(6.0)(h + 3.0) * (1.0 / 6.0)])
  h = L.GlobalAveragePooling2D()(h)
  plain = tf.keras.Model(inputs, L.Dense(10, name="logits")(h))
  model = lilnetx_tf.compressible(plain, seed=0)
  conv = model.network.get_layer("conv")
  latent = conv.latent.numpy()
  latent[..., [1, 6]] = 0  # Dead kernels; the bias is zero at first.
  conv.latent.assign(latent)
  exported = tflite.prepare_for_export(model)
  pruned = exported.pruned
  assert pruned.get_layer("conv").filters == 6
  assert pruned.get_layer("logits").input_shape[-1] == 6
  x, y = digits
  reference = tflite_check.keras_logits(model, x)
  outputs = tflite_check.TFLiteRunner(tflite.convert(pruned))(x)
  result = tflite_check.verify(reference, outputs, y, float_parity=True)
  assert result.passed, result.failure
