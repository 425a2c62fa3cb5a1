"""CIFAR ResNets of He et al. (2016), Sec. 4.2: ResNet-20/32/44/56/110.

Depth 6n + 2: a 3x3 conv -> BN -> ReLU stem, three stages of n basic blocks
with 16, 32 and 64 channels (times `width`), global average pooling and a dense
layer giving logits. The first block of stages 2 and 3 halves the resolution.

Shortcuts are "option A" (parameter free), as in the paper's CIFAR models and
the widely used PyTorch reference (akamaster/pytorch_resnet_cifar10): where a
block changes shape, the identity is subsampled as `x[:, ::2, ::2, :]`
(`AveragePooling2D` with pool size 1 and stride 2, which is exact) and
zero-padded to the new width equally on both sides (`ChannelPad`). Stage
widths are `base, 2 * base, 4 * base` with `base = round(16 * width)`, so a
widening block pads its `c`-channel input with `c // 2` zero channels before
and `c - c // 2` after: the reference's `planes // 4` on each side.

ResNet-20 at width 1 has 269,722 trainable parameters (plus 1,376 batch norm
moving statistics), the "0.27M" of the paper; width 4 is the main CIFAR model
of LilNetX.
"""

from lilnetx_tf.compat import keras

from lilnetx_tf.channel_pad import ChannelPad
from lilnetx_tf.models import _common

__all__ = [
    "cifar_resnet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
]


def _basic_block(x, filters, strides, prefix):
  """conv3x3-BN-ReLU-conv3x3-BN, option-A shortcut, add, ReLU."""
  in_channels = x.shape[-1]
  out = _common.conv_bn(x, filters, 3, prefix, "1", strides=strides)
  out = _common.conv_bn(out, filters, 3, prefix, "2", activation=None)
  shortcut = x
  if strides != 1:
    shortcut = keras.layers.AveragePooling2D(
        pool_size=1, strides=strides, name=f"{prefix}_shortcut_pool")(shortcut)
  if filters != in_channels:
    before = (filters - in_channels) // 2
    shortcut = ChannelPad(before, filters - in_channels - before,
                          name=f"{prefix}_shortcut_pad")(shortcut)
  out = keras.layers.Add(name=f"{prefix}_add")([out, shortcut])
  return keras.layers.ReLU(name=f"{prefix}_out")(out)


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10, *, width=1):
  """Builds a CIFAR ResNet of the given depth.

  Args:
    depth: Number of weighted layers, 6n + 2 (20, 32, 44, 56, 110, ...).
    input_shape: (height, width, channels) of one example.
    num_classes: Number of logits.
    width: Channel multiplier (int or float); stage widths are
      `round(16 * width) * (1, 2, 4)`.

  Returns:
    A `keras.Model` named `resnet{depth}` (suffixed `_w{width}` when width
    is not 1) mapping images to logits.

  Raises:
    ValueError: For a depth not of the form 6n + 2 or invalid arguments.
  """
  name = f"resnet{depth}"
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (
      depth - 2) % 6:
    raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1 "
                     f"(20, 32, 44, 56, 110, ...), got {depth!r}.")
  input_shape = _common.check_input_shape(name, input_shape)
  _common.check_positive(name, "num_classes", num_classes, integer=True)
  _common.check_positive(name, "width", width)
  base = max(1, round(16 * width))
  blocks = (depth - 2) // 6

  inputs = keras.Input(input_shape, name="image")
  x = _common.conv_bn(inputs, base, 3, "stem")
  for stage, filters in enumerate((base, 2 * base, 4 * base), start=1):
    for block in range(1, blocks + 1):
      strides = 2 if stage > 1 and block == 1 else 1
      x = _basic_block(x, filters, strides, f"stage{stage}_block{block}")
  outputs = _common.head(x, num_classes)
  if width != 1:
    name += f"_w{width:g}"
  return keras.Model(inputs, outputs, name=name)


def _fixed_depth(depth):
  """Returns the builder of `cifar_resnet` at one depth."""

  def build(input_shape=(32, 32, 3), num_classes=10, *, width=1):
    return cifar_resnet(depth, input_shape, num_classes, width=width)

  build.__name__ = build.__qualname__ = f"resnet{depth}"
  build.__doc__ = (f"Builds ResNet-{depth} for CIFAR; see `cifar_resnet` for "
                   f"the arguments.")
  return build


resnet20 = _fixed_depth(20)
resnet32 = _fixed_depth(32)
resnet44 = _fixed_depth(44)
resnet56 = _fixed_depth(56)
resnet110 = _fixed_depth(110)
