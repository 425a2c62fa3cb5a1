"""MobileNetV1 (Howard et al., 2017) and MobileNetV2 (Sandler et al., 2018).

Both follow the layouts of `keras.applications` (channel rounding, ReLU6,
1280-channel V2 head), with two differences that keep them in line with the
rest of the zoo: strided convolutions pad symmetrically (see `_common`), and
the classifier is global average pooling and a dense layer giving logits (no
dropout, no softmax). With 224x224x3 inputs and 1000 classes at alpha 1.0,
MobileNetV1 has 4,231,976 and MobileNetV2 3,504,872 trainable parameters, the
same as the Keras and torchvision models.

The networks downsample by 32, mapping a size `n` to `ceil(n / 32)`, so small
inputs (32x32, 64x64) work too.
"""

from lilnetx_tf.compat import keras

from lilnetx_tf.models import _common

__all__ = ["mobilenet_v1", "mobilenet_v2"]

# (output channels, stride) of the 13 depthwise-separable blocks.
_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2),
              (1024, 1))

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the
# MobileNetV2 paper.
_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _make_divisible(value, divisor=8):
  """Rounds to the nearest multiple of `divisor`, losing at most 10%."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


def _checked(name, input_shape, num_classes, alpha):
  """Validates the common builder arguments; returns the input shape."""
  _common.check_positive(name, "num_classes", num_classes, integer=True)
  _common.check_positive(name, "alpha", alpha)
  return _common.check_input_shape(name, input_shape)


def _suffixed(name, alpha):
  return name if alpha == 1 else f"{name}_a{alpha:g}"


def mobilenet_v1(input_shape=(224, 224, 3), num_classes=1000, *, alpha=1.0):
  """Builds MobileNetV1: a conv stem and 13 depthwise-separable blocks.

  Each block is depthwise 3x3 -> BN -> ReLU6 -> pointwise 1x1 -> BN -> ReLU6
  (layers `block{i}_dwconv1` and `block{i}_conv2`, i = 1..13).

  Args:
    input_shape: (height, width, channels) of one example.
    num_classes: Number of logits.
    alpha: Width multiplier; layer widths are `int(c * alpha)`.

  Returns:
    A `keras.Model` named `mobilenet_v1` (suffixed `_a{alpha}` when alpha is
    not 1) mapping images to logits.

  Raises:
    ValueError: For invalid arguments.
  """
  name = "mobilenet_v1"
  input_shape = _checked(name, input_shape, num_classes, alpha)
  inputs = keras.Input(input_shape, name="image")
  x = _common.conv_bn(inputs, max(1, int(32 * alpha)), 3, "stem", strides=2,
                      activation="relu6")
  for index, (filters, strides) in enumerate(_V1_BLOCKS, start=1):
    prefix = f"block{index}"
    x = _common.conv_bn(x, None, 3, prefix, "1", strides=strides,
                        activation="relu6", depthwise=True)
    x = _common.conv_bn(x, max(1, int(filters * alpha)), 1, prefix, "2",
                        activation="relu6")
  outputs = _common.head(x, num_classes)
  return keras.Model(inputs, outputs, name=_suffixed(name, alpha))


def _inverted_residual(x, expansion, filters, strides, prefix):
  """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> linear project 1x1."""
  in_channels = x.shape[-1]
  out = x
  if expansion != 1:
    out = _common.conv_bn(out, expansion * in_channels, 1, prefix, "1",
                          activation="relu6")
  out = _common.conv_bn(out, None, 3, prefix, "2", strides=strides,
                        activation="relu6", depthwise=True)
  out = _common.conv_bn(out, filters, 1, prefix, "3", activation=None)
  if strides == 1 and in_channels == filters:
    out = keras.layers.Add(name=f"{prefix}_add")([x, out])
  return out


def mobilenet_v2(input_shape=(224, 224, 3), num_classes=1000, *, alpha=1.0):
  """Builds MobileNetV2: inverted residual blocks with linear bottlenecks.

  Block i (1..17) has layers `block{i}_conv1` (1x1 expansion by 6, absent in
  block 1 whose expansion is 1), `block{i}_dwconv2` (3x3 depthwise) and
  `block{i}_conv3` (linear 1x1 projection); blocks that keep their shape add
  their input (`block{i}_add`). A 1x1 conv `head_conv` precedes the pooling.

  Args:
    input_shape: (height, width, channels) of one example.
    num_classes: Number of logits.
    alpha: Width multiplier; block widths are `int(c * alpha)` rounded to a
      multiple of 8, the head has `max(1280, 1280 * alpha)` channels (rounded).

  Returns:
    A `keras.Model` named `mobilenet_v2` (suffixed `_a{alpha}` when alpha is
    not 1) mapping images to logits.

  Raises:
    ValueError: For invalid arguments.
  """
  name = "mobilenet_v2"
  input_shape = _checked(name, input_shape, num_classes, alpha)
  inputs = keras.Input(input_shape, name="image")
  x = _common.conv_bn(inputs, _make_divisible(32 * alpha), 3, "stem",
                      strides=2, activation="relu6")
  index = 1
  for expansion, channels, repeats, first_stride in _V2_STAGES:
    filters = _make_divisible(int(channels * alpha))
    for repeat in range(repeats):
      x = _inverted_residual(x, expansion, filters,
                             first_stride if repeat == 0 else 1,
                             f"block{index}")
      index += 1
  # As in the paper and Keras: the head is not narrowed below 1280 channels.
  head_filters = _make_divisible(1280 * alpha) if alpha > 1 else 1280
  x = _common.conv_bn(x, head_filters, 1, "head", activation="relu6")
  outputs = _common.head(x, num_classes)
  return keras.Model(inputs, outputs, name=_suffixed(name, alpha))
