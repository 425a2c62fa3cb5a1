"""Latent Keras layers: convolutions and Dense on integer latents.

Each layer behaves like its Keras counterpart (same constructor arguments,
same call), but stores a float *latent* tensor of the kernel's shape instead
of the kernel. The kernel the op sees is `decoder(round(latent))`: rounded with
a straight-through gradient and decoded by the decoder its group shares. The
decoder is owned by the enclosing `LilNetXModel`, which attaches it.

`LatentSeparableConv2D` has two kernels; it holds them in two latent sublayers
(a depthwise and a 1x1 convolution), each in its own group, and applies the
stock separable convolution to their decoded kernels.

A latent layer's `bias` is, likewise, what the op uses: the bias variable
(`bias_variable`) on the decoder's grid when the model has one
(`lilnetx_tf.method.grid`), so that the file stores it exactly in a few bits.
"""

import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.method import grid
from lilnetx_tf.method import groups

__all__ = [
    "LATENT_LAYERS",
    "LatentConv1D",
    "LatentConv2D",
    "LatentDense",
    "LatentDepthwiseConv2D",
    "LatentKernel",
    "LatentSeparableConv2D",
    "round_ste",
]


def round_ste(x):
  """Rounds to integers with a straight-through (identity) gradient."""
  # One op forward and none backward, where `x + stop_gradient(round(x) - x)`
  # takes three passes over the latents forward (a tenth of a LeNet-300-100
  # step's overhead).
  return tf.grad_pass_through(tf.round)(x)


def _bias_property():
  """`bias`: the bias variable on the grid of `self._bias_decoder()`."""

  def getter(self):
    # An instance attribute: Keras tracks (and checkpoints) only those.
    variable = getattr(self, "bias_variable", None)
    decoder = self._bias_decoder()  # pylint: disable=protected-access
    if variable is None or decoder is None:
      return variable
    return grid.grid_ste(variable, decoder.grid_bits)

  def setter(self, value):
    # The base build() assigns what add_weight returned, which is stored
    # as `bias_variable` already.
    del self, value

  return property(getter, setter, doc="The bias the op uses (read-only; the "
                  "variable is `bias_variable`).")


class LatentKernel:
  """Mixin that swaps a Keras layer's kernel variable for a latent.

  The base layer's `build()` creates its kernel with `add_weight`; we create
  the latent there instead, and expose the decoded kernel under the base
  layer's kernel attribute, so the base layer's own `call()` is reused
  unchanged (padding, dilation, groups, bias and activation included).
  Every layer holding one latent kernel is an instance of this class.
  """

  _KERNEL_ATTR = "kernel"
  _KIND = None
  # Class-level defaults: Keras does not track attributes that exist on the
  # class, so the shared decoder stays owned by the model alone.
  _decoder = None
  _kernel_owner = None
  _kernel_index = 0

  def __init__(self, *args, latent_initializer="random_uniform", **kwargs):
    """Initialises the stock layer with `*args` and `**kwargs`.

    Args:
      *args: As the stock layer.
      latent_initializer: Initializer of the latent (re-initialised by
        `LilNetXModel` to match a standard init after decoding).
      **kwargs: As the stock layer.
    """
    super().__init__(*args, **kwargs)
    self.latent_initializer = keras.initializers.get(latent_initializer)
    self.latent = None

  bias = _bias_property()

  def _bias_decoder(self):
    return self._decoder

  def add_weight(self, name=None, *args, **kwargs):  # pylint: disable=keyword-arg-before-vararg
    if name == "bias":
      self.bias_variable = super().add_weight(name, *args, **kwargs)
      return self.bias_variable
    if name != self._KERNEL_ATTR:
      return super().add_weight(name, *args, **kwargs)
    # Kernel regularizers and constraints act on weights, not latents; the
    # model's latent weight decay and sparsity priors replace them.
    kwargs.update(initializer=self.latent_initializer, regularizer=None,
                  constraint=None)
    self.latent = super().add_weight("latent", *args, **kwargs)
    return self.latent

  @property
  def group(self):
    """The group whose decoder and prior this layer shares."""
    return groups.group_name(self._KIND, getattr(self, "kernel_size", None))

  @property
  def kernel_ref(self):
    """`(layer name, weight index)` of this kernel in the decompressed model.

    The layer itself and weight 0, except for the sublayers of a
    `LatentSeparableConv2D`, whose kernels are weights 0 and 1 of the
    separable layer.
    """
    return (self._kernel_owner or self.name, self._kernel_index)

  @property
  def decoder(self):
    return self._decoder

  def attach_decoder(self, decoder):
    """Sets the group decoder (called by `LilNetXModel`)."""
    self._decoder = decoder

  def decoded_kernel(self):
    """The kernel the op uses: `decoder(round(latent))`."""
    rounded = round_ste(self.latent)
    if self._decoder is None:
      if tf.executing_eagerly():
        raise RuntimeError(
            f"Layer {self.name!r} has no decoder: latent layers run inside a "
            "lilnetx_tf.LilNetXModel (see lilnetx_tf.compressible).")
      # Symbolic shape inference while a functional model is being wired,
      # before the model attaches decoders: shapes are all that matter.
      return rounded
    return self._decoder(rounded)

  def get_config(self):
    config = super().get_config()
    config["latent_initializer"] = keras.initializers.serialize(
        self.latent_initializer)
    return config


def _kernel_property(attr):
  def getter(self):
    return self.decoded_kernel()

  def setter(self, value):
    # The base build() assigns what add_weight returned: the latent, which
    # `LatentKernel.add_weight` has stored already.
    del self, value

  return property(getter, setter, doc=f"Decoded `{attr}` (read-only).")


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentConv2D(LatentKernel, keras.layers.Conv2D):
  """`keras.layers.Conv2D` with an integer latent kernel."""

  _KERNEL_ATTR = "kernel"
  _KIND = "conv"
  kernel = _kernel_property("kernel")


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentDepthwiseConv2D(LatentKernel,
                            keras.layers.DepthwiseConv2D):
  """`keras.layers.DepthwiseConv2D` with an integer latent kernel."""

  _KERNEL_ATTR = "depthwise_kernel"
  _KIND = "depthwise"
  depthwise_kernel = _kernel_property("depthwise_kernel")


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentDense(LatentKernel, keras.layers.Dense):
  """`keras.layers.Dense` with an integer latent kernel.

  Its decoder is a scalar `s`, so in training the layer computes
  `(x @ round(latent)) * s` rather than `x @ (round(latent) * s)`: the same
  function, but it scales the batch's outputs instead of every weight, a
  pass over the latents less forward and two less backward (LeNet-300-100:
  6.9 -> 6.5 ms a step, against 5.5 ms for the float network). Outside
  training it runs the stock op on the decoded kernel, the op of the
  decompressed model, whose outputs it then matches bit for bit (the two
  orders round differently). Ragged and sparse inputs take the stock path.
  """

  _KERNEL_ATTR = "kernel"
  _KIND = "dense"
  kernel = _kernel_property("kernel")

  def call(self, inputs, training=None):
    decoder = self._decoder
    if (not training or decoder is None or decoder.positions != 1 or
        isinstance(inputs, (tf.RaggedTensor, tf.SparseTensor))):
      return super().call(inputs)
    # Keras's Dense casts the same way, through its private dtype object.
    compute_dtype = tf.as_dtype(self.compute_dtype)
    if inputs.dtype.base_dtype != compute_dtype.base_dtype:
      inputs = tf.cast(inputs, compute_dtype)
    rounded = round_ste(self.latent)
    rank = inputs.shape.rank
    if rank == 2 or rank is None:
      outputs = tf.matmul(inputs, rounded)
    else:
      outputs = tf.tensordot(inputs, rounded, [[rank - 1], [0]])
      outputs.set_shape(inputs.shape[:-1].concatenate(rounded.shape[-1:]))
    outputs *= tf.cast(tf.reshape(decoder.matrix, ()), outputs.dtype)
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentConv1D(LatentKernel, keras.layers.Conv1D):
  """`keras.layers.Conv1D` with an integer latent kernel."""

  _KERNEL_ATTR = "kernel"
  _KIND = "conv"
  kernel = _kernel_property("kernel")


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentSeparableConv2D(keras.layers.SeparableConv2D):
  """`keras.layers.SeparableConv2D` with integer latent kernels.

  The depthwise kernel is the latent of `depthwise_layer`, a
  `LatentDepthwiseConv2D` named `<name>_depthwise` (group `depthwiseKxK`); the
  pointwise kernel that of `pointwise_layer`, a 1x1 `LatentConv2D` named
  `<name>_pointwise` (group `conv1x1`). The layer's own weight is the bias;
  its call is the stock separable convolution on the decoded kernels.

  Args:
    *args: As `keras.layers.SeparableConv2D`.
    latent_initializer: Initializer of both latents.
    **kwargs: As `keras.layers.SeparableConv2D`.
  """

  def __init__(self, *args, latent_initializer="random_uniform", **kwargs):
    super().__init__(*args, **kwargs)
    self.latent_initializer = keras.initializers.get(latent_initializer)
    self.depthwise_layer = LatentDepthwiseConv2D(
        self.kernel_size, strides=self.strides, padding=self.padding,
        depth_multiplier=self.depth_multiplier,
        dilation_rate=self.dilation_rate, use_bias=False,
        depthwise_initializer=self.depthwise_initializer,
        latent_initializer=latent_initializer, dtype=self.dtype_policy,
        name=f"{self.name}_depthwise")
    self.pointwise_layer = LatentConv2D(
        self.filters, 1, use_bias=False,
        kernel_initializer=self.pointwise_initializer,
        latent_initializer=latent_initializer, dtype=self.dtype_policy,
        name=f"{self.name}_pointwise")
    for index, layer in enumerate((self.depthwise_layer, self.pointwise_layer)):
      layer._kernel_owner = self.name  # pylint: disable=protected-access
      layer._kernel_index = index  # pylint: disable=protected-access

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    if self.data_format != "channels_last":
      raise ValueError(f"{type(self).__name__} {self.name!r}: only "
                       "channels_last is supported.")
    channels = int(input_shape[-1])
    self.depthwise_layer.build(input_shape)
    self.pointwise_layer.build(
        input_shape[:-1].concatenate([channels * self.depth_multiplier]))
    if self.use_bias:
      self.bias_variable = self.add_weight(
          "bias", shape=(self.filters,), initializer=self.bias_initializer,
          regularizer=self.bias_regularizer, constraint=self.bias_constraint,
          trainable=True, dtype=self.dtype)
    self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
    self.built = True

  bias = _bias_property()

  def _bias_decoder(self):
    return self.pointwise_layer.decoder

  @property
  def depthwise_kernel(self):
    return self.depthwise_layer.decoded_kernel()

  @property
  def pointwise_kernel(self):
    return self.pointwise_layer.decoded_kernel()

  def get_config(self):
    config = super().get_config()
    config["latent_initializer"] = keras.initializers.serialize(
        self.latent_initializer)
    return config


# Keras layer class -> latent class, in the order a subclass check must use.
LATENT_LAYERS = (
    (keras.layers.DepthwiseConv2D, LatentDepthwiseConv2D),
    (keras.layers.SeparableConv2D, LatentSeparableConv2D),
    (keras.layers.Conv2D, LatentConv2D),
    (keras.layers.Conv1D, LatentConv1D),
    (keras.layers.Dense, LatentDense),
)
