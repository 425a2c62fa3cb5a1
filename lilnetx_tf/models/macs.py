"""Counts the multiply-accumulates (MACs) of a plain Keras model.

The count covers the layers that hold nearly all of the arithmetic and all of
the weights LilNetX compresses: Conv2D, DepthwiseConv2D and Dense. Batch norm,
activations, pooling, additions and biases are not counted. For one example
(batch 1), with output shapes taken from the layers themselves:

* Conv2D: `H_out * W_out * kh * kw * (C_in / groups) * C_out`.
* DepthwiseConv2D: `H_out * W_out * kh * kw * C_in * depth_multiplier`.
* Dense: `in * out`, times the product of any axes between batch and features
  (a Dense layer on a (T, in) input computes T products of the weights).

Nested models are counted through their layers. Every counted layer must be
called once and have fully defined output shapes.
"""

import numpy as np
import tensorflow as tf

__all__ = ["count_macs", "kernel_macs", "layer_macs"]


def _shape(layer, attribute):
  shape = tf.TensorShape(getattr(layer, attribute)).as_list()
  if any(d is None for d in shape[1:]):
    raise ValueError(f"count_macs: layer {layer.name!r} has an undefined "
                     f"{attribute.split('_')[0]} shape {shape}; build the model "
                     f"with a fixed input size.")
  return shape


def kernel_macs(kernel_shape, output_shape):
  """MACs of a Conv2D, DepthwiseConv2D or Dense op, batch 1.

  One product per kernel weight per output position: the formulas of the
  module docstring, since the kernel is `(kh, kw, C_in / groups, C_out)`,
  `(kh, kw, C_in, depth_multiplier)` or `(in, out)`.

  Args:
    kernel_shape: The kernel's shape.
    output_shape: The op's output shape, batch axis first; the axes between
      batch and channels are the output positions.
  """
  positions = np.prod(tuple(output_shape)[1:-1], dtype=np.int64)
  return int(positions) * int(np.prod(tuple(kernel_shape), dtype=np.int64))


def layer_macs(layer):
  """MACs of one layer (0 for layers that are not counted)."""
  layers = tf.keras.layers
  if isinstance(layer, tf.keras.Model):
    return sum(layer_macs(inner) for inner in layer.layers)
  if isinstance(layer, layers.Conv2DTranspose):
    # A subclass of Conv2D whose cost follows the input, not the output, size.
    raise ValueError(f"count_macs: Conv2DTranspose layer {layer.name!r} is not "
                     f"supported (Conv2D, DepthwiseConv2D and Dense are).")
  if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
    if layer.data_format != "channels_last":
      raise ValueError(f"count_macs: layer {layer.name!r} must use "
                       f"channels_last, got {layer.data_format!r}.")
  elif not isinstance(layer, layers.Dense):
    return 0
  out_shape = _shape(layer, "output_shape")
  c_in = _shape(layer, "input_shape")[-1]
  c_out = out_shape[-1]
  # Kernel shapes from the configuration: reading a latent layer's kernel
  # would decode it.
  if isinstance(layer, layers.DepthwiseConv2D):
    kernel_shape = (*layer.kernel_size, c_in, c_out // c_in)
  elif isinstance(layer, layers.Conv2D):
    kernel_shape = (*layer.kernel_size, c_in // layer.groups, c_out)
  else:
    kernel_shape = (c_in, c_out)
  return kernel_macs(kernel_shape, out_shape)


def count_macs(model):
  """Returns the MACs of one forward pass (batch 1) of a plain Keras model.

  Args:
    model: A built `tf.keras.Model` (e.g. from `build_model`) with fixed input
      size. Only Conv2D, DepthwiseConv2D and Dense layers are counted, by the
      formulas in the module docstring.

  Returns:
    The number of multiply-accumulates, a Python int.

  Raises:
    ValueError: If a counted layer has undefined shapes, uses channels_first,
      or is a Conv2DTranspose.
  """
  return int(sum(layer_macs(layer) for layer in model.layers))
