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

__all__ = ["count_macs", "layer_macs"]


def _shape(layer, attribute):
  shape = tf.TensorShape(getattr(layer, attribute)).as_list()
  if any(d is None for d in shape[1:]):
    raise ValueError(f"count_macs: layer {layer.name!r} has an undefined "
                     f"{attribute.split('_')[0]} shape {shape}; build the model "
                     f"with a fixed input size.")
  return shape


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
    _, h_out, w_out, c_out = _shape(layer, "output_shape")
    c_in = _shape(layer, "input_shape")[-1]
    kh, kw = layer.kernel_size
    if isinstance(layer, layers.DepthwiseConv2D):
      # c_out == c_in * depth_multiplier.
      return h_out * w_out * kh * kw * c_out
    return h_out * w_out * kh * kw * (c_in // layer.groups) * c_out
  if isinstance(layer, layers.Dense):
    out_shape = _shape(layer, "output_shape")
    c_in = _shape(layer, "input_shape")[-1]
    return int(np.prod(out_shape[1:-1], dtype=np.int64)) * c_in * out_shape[-1]
  return 0


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
