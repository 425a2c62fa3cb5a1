"""ImageNet ResNets of He et al. (2016): ResNet-18 (basic) and ResNet-50.

Layout as in torchvision: a 7x7 stride-2 conv -> BN -> ReLU stem and 3x3
stride-2 max pooling, four stages (64, 128, 256, 512 base channels; bottleneck
blocks output 4x that), global average pooling and a dense layer giving logits.
The first block of stages 2-4 halves the resolution; where a block changes
shape the shortcut is a projection (1x1 conv, same stride -> BN). Bottleneck
blocks stride in their 3x3 conv ("ResNet v1.5"), which does not change the
parameter count. With 224x224x3 inputs and 1000 classes, ResNet-18 has
11,689,512 and ResNet-50 25,557,032 trainable parameters, as torchvision's.

All strided layers map a size `n` to `ceil(n / 2)`, so any input size works;
32x32 inputs leave a 1x1 map for the last stage.
"""

from lilnetx_tf.compat import keras

from lilnetx_tf.models import _common

__all__ = ["resnet18", "resnet50"]


def _projection(x, filters, strides, prefix):
  """Identity, or 1x1 conv -> BN where the block changes shape."""
  if strides == 1 and x.shape[-1] == filters:
    return x
  return _common.conv_bn(x, filters, 1, f"{prefix}_shortcut", strides=strides,
                         activation=None)


def _basic_block(x, filters, strides, prefix):
  """conv3x3-BN-ReLU-conv3x3-BN, shortcut, add, ReLU."""
  out = _common.conv_bn(x, filters, 3, prefix, "1", strides=strides)
  out = _common.conv_bn(out, filters, 3, prefix, "2", activation=None)
  out = keras.layers.Add(name=f"{prefix}_add")(
      [out, _projection(x, filters, strides, prefix)])
  return keras.layers.ReLU(name=f"{prefix}_out")(out)


def _bottleneck_block(x, filters, strides, prefix):
  """conv1x1-conv3x3(stride)-conv1x1(4x filters), shortcut, add, ReLU."""
  out = _common.conv_bn(x, filters, 1, prefix, "1")
  out = _common.conv_bn(out, filters, 3, prefix, "2", strides=strides)
  out = _common.conv_bn(out, 4 * filters, 1, prefix, "3", activation=None)
  out = keras.layers.Add(name=f"{prefix}_add")(
      [out, _projection(x, 4 * filters, strides, prefix)])
  return keras.layers.ReLU(name=f"{prefix}_out")(out)


def _resnet(name, block, blocks_per_stage, input_shape, num_classes):
  """Builds an ImageNet-style ResNet from a block function and stage sizes."""
  input_shape = _common.check_input_shape(name, input_shape)
  _common.check_positive(name, "num_classes", num_classes, integer=True)
  inputs = keras.Input(input_shape, name="image")
  x = _common.conv_bn(inputs, 64, 7, "stem", strides=2)
  # Zero padding equals -inf padding here: the input is post-ReLU (>= 0).
  x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
  x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
  for stage, (filters, blocks) in enumerate(
      zip((64, 128, 256, 512), blocks_per_stage), start=1):
    for index in range(1, blocks + 1):
      strides = 2 if stage > 1 and index == 1 else 1
      x = block(x, filters, strides, f"stage{stage}_block{index}")
  outputs = _common.head(x, num_classes)
  return keras.Model(inputs, outputs, name=name)


def resnet18(input_shape=(224, 224, 3), num_classes=1000):
  """Builds ResNet-18 (basic blocks, 2-2-2-2).

  Args:
    input_shape: (height, width, channels) of one example.
    num_classes: Number of logits.

  Returns:
    A `keras.Model` named `resnet18` mapping images to logits.

  Raises:
    ValueError: For invalid arguments.
  """
  return _resnet("resnet18", _basic_block, (2, 2, 2, 2), input_shape,
                 num_classes)


def resnet50(input_shape=(224, 224, 3), num_classes=1000):
  """Builds ResNet-50 (bottleneck blocks, 3-4-6-3).

  Args:
    input_shape: (height, width, channels) of one example.
    num_classes: Number of logits.

  Returns:
    A `keras.Model` named `resnet50` mapping images to logits.

  Raises:
    ValueError: For invalid arguments.
  """
  return _resnet("resnet50", _bottleneck_block, (3, 4, 6, 3), input_shape,
                 num_classes)
