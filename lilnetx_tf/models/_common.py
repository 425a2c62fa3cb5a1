"""Building blocks and argument checks shared by the zoo's model builders.

All builders produce plain Keras functional models from stock layers, so that
`lilnetx_tf.compressible` can later swap their Conv2D, DepthwiseConv2D and
Dense layers for latent ones. Conventions kept here, once for all models:

* Convolutions followed by batch norm have no bias and use `he_normal`.
* Batch norm uses momentum 0.9 and epsilon 1e-5, the values of the PyTorch
  reference implementations the models follow (Keras' 0.99 momentum makes the
  running statistics lag far behind during short CIFAR/MNIST schedules).
* Strided convolutions pad symmetrically by `(k - 1) // 2` (explicit
  `ZeroPadding2D`, then "valid"), as in PyTorch. Keras' "same" would pad only
  after the input on even sizes, which shifts the sampling grid by one pixel
  against the `x[:, ::2, ::2]` subsampling of parameter-free shortcuts. Every
  stride-2 path therefore maps a size `n` to `ceil(n / 2)`.
"""

import numbers

from lilnetx_tf.compat import keras

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "check_input_shape",
    "check_positive",
    "conv_bn",
    "head",
]

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def check_input_shape(model_name, input_shape, rank=3, min_size=1):
  """Validates an input shape and returns it as a tuple of ints.

  Args:
    model_name: Name of the model, used in error messages.
    input_shape: Shape of one example, without the batch axis.
    rank: Required length of `input_shape`, or None for any length.
    min_size: Smallest allowed height and width (only checked when `rank` is 3,
      i.e. for images in (height, width, channels) layout).

  Returns:
    `input_shape` as a tuple of Python ints.

  Raises:
    ValueError: If the shape has the wrong rank, non-positive entries, or a
      spatial size below `min_size`.
  """
  try:
    shape = tuple(input_shape)
  except TypeError:
    raise ValueError(f"{model_name}: input_shape must be a sequence of ints, "
                     f"got {input_shape!r}.") from None
  if (not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral)
                       or d < 1 for d in shape)):
    raise ValueError(f"{model_name}: input_shape must contain positive ints, "
                     f"got {input_shape!r}.")
  if rank is not None and len(shape) != rank:
    raise ValueError(f"{model_name}: input_shape must have {rank} entries "
                     f"(height, width, channels), got {input_shape!r}.")
  if rank == 3 and min(shape[:2]) < min_size:
    raise ValueError(f"{model_name}: height and width must be at least "
                     f"{min_size}, got input_shape {input_shape!r}.")
  return tuple(int(d) for d in shape)


def check_positive(model_name, arg, value, integer=False):
  """Checks that an option is a positive number (an int if `integer`).

  Args:
    model_name: Name of the model, used in error messages.
    arg: Name of the option, used in error messages.
    value: The value to check.
    integer: Whether `value` must be an integer.

  Returns:
    `value`, unchanged.

  Raises:
    ValueError: If `value` is not a positive (integral) number.
  """
  kind = numbers.Integral if integer else numbers.Real
  if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
    what = "positive int" if integer else "positive number"
    raise ValueError(f"{model_name}: `{arg}` must be a {what}, got {value!r}.")
  return value


def conv_bn(x, filters, kernel_size, prefix, suffix="", strides=1,
            activation="relu", depthwise=False):
  """Applies conv (or depthwise conv) -> batch norm -> activation.

  Layers are named `{prefix}_conv{suffix}` (`{prefix}_dwconv{suffix}` when
  depthwise), `{prefix}_bn{suffix}`, `{prefix}_relu{suffix}` (also for ReLU6)
  and, for strided convolutions, `{prefix}_pad{suffix}`; e.g. prefix
  "stage2_block1" and suffix "1" give `stage2_block1_conv1`.

  Args:
    x: Input tensor, NHWC.
    filters: Output channels (ignored when `depthwise`: multiplier 1).
    kernel_size: Odd square kernel size.
    prefix: Start of the layer names.
    suffix: End of the layer names.
    strides: Stride of the convolution.
    activation: "relu", "relu6" or None (linear, e.g. before a residual add).
    depthwise: Whether to use a depthwise convolution.

  Returns:
    The output tensor.

  Raises:
    ValueError: If `activation` is not one of the choices above.
  """
  if activation not in ("relu", "relu6", None):
    raise ValueError(f"conv_bn: activation must be 'relu', 'relu6' or None, "
                     f"got {activation!r}.")
  padding = "same"
  if strides > 1:
    pad = (kernel_size - 1) // 2
    if pad:
      x = keras.layers.ZeroPadding2D(pad, name=f"{prefix}_pad{suffix}")(x)
    padding = "valid"
  if depthwise:
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding=padding, use_bias=False,
        depthwise_initializer="he_normal", name=f"{prefix}_dwconv{suffix}")(x)
  else:
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer="he_normal", name=f"{prefix}_conv{suffix}")(x)
  x = keras.layers.BatchNormalization(
      momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{prefix}_bn{suffix}")(x)
  if activation is not None:
    max_value = 6.0 if activation == "relu6" else None
    x = keras.layers.ReLU(max_value, name=f"{prefix}_relu{suffix}")(x)
  return x


def head(x, num_classes):
  """Global average pooling and a dense layer giving logits (no softmax).

  Layer names are `avg_pool` and `logits`.
  """
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  return keras.layers.Dense(num_classes, name="logits")(x)
