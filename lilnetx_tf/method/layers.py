"""Latent Keras layers: Conv2D, DepthwiseConv2D and Dense on integer latents.

Each layer behaves like its Keras counterpart (same constructor arguments,
same call), but stores a float *latent* tensor of the kernel's shape instead
of the kernel. The kernel the op sees is `decoder(round(latent))`: rounded with
a straight-through gradient and decoded by the decoder its group shares. The
decoder is owned by the enclosing `LilNetXModel`, which attaches it.
"""

import tensorflow as tf

from lilnetx_tf.method import groups

__all__ = [
    "LatentConv2D",
    "LatentDepthwiseConv2D",
    "LatentDense",
    "LATENT_LAYERS",
    "round_ste",
]


def round_ste(x):
  """Rounds to integers with a straight-through (identity) gradient."""
  return x + tf.stop_gradient(tf.round(x) - x)


class _LatentKernelMixin:
  """Swaps a Keras layer's kernel variable for a latent and a decoder.

  The base layer's `build()` creates its kernel with `add_weight`; we create
  the latent there instead, and expose the decoded kernel under the base
  layer's kernel attribute, so the base layer's own `call()` is reused
  unchanged (padding, dilation, groups, bias and activation included).
  """

  _KERNEL_ATTR = "kernel"
  _KIND = None
  # Class-level default: Keras does not track attributes that exist on the
  # class, so the shared decoder stays owned by the model alone.
  _decoder = None

  def _init_latent(self, latent_initializer):
    self.latent_initializer = tf.keras.initializers.get(latent_initializer)
    self.latent = None

  def add_weight(self, name=None, *args, **kwargs):  # pylint: disable=keyword-arg-before-vararg
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
    config["latent_initializer"] = tf.keras.initializers.serialize(
        self.latent_initializer)
    return config


def _kernel_property(attr):
  def getter(self):
    return self.decoded_kernel()

  def setter(self, value):
    # The base build() assigns what add_weight returned: the latent, which
    # `_LatentKernelMixin.add_weight` has stored already.
    del self, value

  return property(getter, setter, doc=f"Decoded `{attr}` (read-only).")


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentConv2D(_LatentKernelMixin, tf.keras.layers.Conv2D):
  """`tf.keras.layers.Conv2D` with an integer latent kernel.

  Args:
    *args: As `tf.keras.layers.Conv2D`.
    latent_initializer: Initializer of the latent (re-initialised by
      `LilNetXModel` to match a standard init after decoding).
    **kwargs: As `tf.keras.layers.Conv2D`.
  """

  _KERNEL_ATTR = "kernel"
  _KIND = "conv"
  kernel = _kernel_property("kernel")

  def __init__(self, *args, latent_initializer="random_uniform", **kwargs):
    super().__init__(*args, **kwargs)
    self._init_latent(latent_initializer)


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentDepthwiseConv2D(_LatentKernelMixin,
                            tf.keras.layers.DepthwiseConv2D):
  """`tf.keras.layers.DepthwiseConv2D` with an integer latent kernel."""

  _KERNEL_ATTR = "depthwise_kernel"
  _KIND = "depthwise"
  depthwise_kernel = _kernel_property("depthwise_kernel")

  def __init__(self, *args, latent_initializer="random_uniform", **kwargs):
    super().__init__(*args, **kwargs)
    self._init_latent(latent_initializer)


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentDense(_LatentKernelMixin, tf.keras.layers.Dense):
  """`tf.keras.layers.Dense` with an integer latent kernel."""

  _KERNEL_ATTR = "kernel"
  _KIND = "dense"
  kernel = _kernel_property("kernel")

  def __init__(self, *args, latent_initializer="random_uniform", **kwargs):
    super().__init__(*args, **kwargs)
    self._init_latent(latent_initializer)


# Keras layer class -> latent class, in the order a subclass check must use.
LATENT_LAYERS = (
    (tf.keras.layers.DepthwiseConv2D, LatentDepthwiseConv2D),
    (tf.keras.layers.Conv2D, LatentConv2D),
    (tf.keras.layers.Dense, LatentDense),
)
