"""VGG-16 with batch norm for CIFAR (Simonyan & Zisserman, 2015).

Thirteen 3x3 conv -> BN -> ReLU layers in five groups (64, 64 | 128, 128 |
256 x 3 | 512 x 3 | 512 x 3, times `width`), each group closed by 2x2 max
pooling. The classifier is the common CIFAR variant (kuangliu/pytorch-cifar):
the 1x1x512 features of a 32x32 input are flattened into a single dense layer
giving logits, with no hidden dense layers and no dropout. Larger inputs simply give more flattened features.

At width 1 with 10 classes the model has 14,724,042 trainable parameters: the
reference's 14,728,266 less the 4,224 conv biases, dropped here because every
conv feeds batch norm.
"""

from lilnetx_tf.compat import keras

from lilnetx_tf.models import _common

__all__ = ["vgg16"]

# Output channels of the conv layers; "M" is 2x2 max pooling.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M")


def vgg16(input_shape=(32, 32, 3), num_classes=10, *, width=1):
  """Builds VGG-16 with batch norm for CIFAR.

  Args:
    input_shape: (height, width, channels) of one example; height and width
      must be at least 32 (five 2x2 poolings).
    num_classes: Number of logits.
    width: Channel multiplier (int or float); conv widths are
      `max(1, round(c * width))`.

  Returns:
    A `keras.Model` named `vgg16` (suffixed `_w{width}` when width is not
    1). Conv layers are named `group{g}_conv{i}`, the last layer `logits`.

  Raises:
    ValueError: For invalid arguments.
  """
  name = "vgg16"
  input_shape = _common.check_input_shape(name, input_shape, min_size=32)
  _common.check_positive(name, "num_classes", num_classes, integer=True)
  _common.check_positive(name, "width", width)

  inputs = keras.Input(input_shape, name="image")
  x = inputs
  group, index = 1, 1
  for item in _VGG16:
    if item == "M":
      x = keras.layers.MaxPooling2D(2, name=f"group{group}_pool")(x)
      group, index = group + 1, 1
    else:
      x = _common.conv_bn(x, max(1, round(item * width)), 3, f"group{group}",
                          str(index))
      index += 1
  x = keras.layers.Flatten(name="flatten")(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  if width != 1:
    name += f"_w{width:g}"
  return keras.Model(inputs, outputs, name=name)
