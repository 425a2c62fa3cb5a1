"""`ChannelPad`: zero padding on the channel axis, a layer the core knows.

The CIFAR ResNets of He et al. (2016) use "option A" shortcuts: where a block
halves the resolution and widens the channels, the identity is subsampled and
zero-padded to the new width, so the shortcut has no parameters. Keras has no
stock layer that pads the channel axis, and a `Lambda` layer would not survive
serialisation or export, hence this small layer. Channel removal
(`lilnetx_tf.deploy.prune`) and the compressed file's allow-list
(`lilnetx_tf.compressed.architecture`, by its registered name
`lilnetx_tf>ChannelPad`) know it.
"""

import tensorflow as tf
from lilnetx_tf.compat import keras

__all__ = ["ChannelPad"]


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class ChannelPad(keras.layers.Layer):
  """Pads the last (channel) axis with zeros.

  The output is `concat([zeros(before), x, zeros(after)], axis=-1)`; all other
  axes are unchanged. The layer has no weights and lowers to a single `Pad` op.
  """

  def __init__(self, before, after, **kwargs):
    """Initialises the layer.

    Args:
      before: Number of zero channels put in front of the input channels.
      after: Number of zero channels put after the input channels.
      **kwargs: Other `keras.layers.Layer` arguments (e.g. `name`).

    Raises:
      ValueError: If `before` or `after` is not a non-negative integer.
    """
    super().__init__(**kwargs)
    for arg, value in (("before", before), ("after", after)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"ChannelPad: `{arg}` must be a non-negative int, got {value!r}.")
    self.before = before
    self.after = after

  def call(self, inputs):
    rank = inputs.shape.rank
    paddings = [[0, 0]] * (rank - 1) + [[self.before, self.after]]
    return tf.pad(inputs, paddings)

  def compute_output_shape(self, input_shape):
    shape = tf.TensorShape(input_shape).as_list()
    if shape[-1] is not None:
      shape[-1] += self.before + self.after
    return tf.TensorShape(shape)

  def get_config(self):
    config = super().get_config()
    config.update(before=self.before, after=self.after)
    return config
