"""How channels flow through TensorFlow op layers, for the channel analysis.

A TensorFlow function called on Keras tensors is recorded as a `TFOpLambda`
layer (`lilnetx_tf.compressed.tf_ops`), whose node holds the call's
arguments: its Keras tensors and its constants (`x + skip` is
`__operators__.add(x, skip)`, `x * 0.5` is `math.multiply(x, 0.5)`,
`tf.nn.relu6(x)` is `nn.relu6(x)`). Two kinds of call have a channel
behaviour that is exact and simple, and `op_channel_kind` recognises them
for `lilnetx_tf.deploy.prune`:

* 'op_merge': an elementwise add, subtract, maximum or minimum (zero where
  every input is zero) or multiply (zero where any input is) of two tensors
  with the same channels and no constants, e.g. the residual `x + skip` of
  `keras.applications` RegNet and ConvNeXt: a merge, like Keras's `Add` and
  `Multiply` layers;
* 'op_act': an elementwise function of one tensor and scalar constants
  (`x * 0.5`, `x / 6.0`, `x + 3.0`, `tf.nn.relu6(x)`, `tf.sigmoid(x)`): output
  channel c depends on input channel c alone, as through an activation
  layer. It keeps a zero channel zero when the op, called with its own
  constants, maps 0 to 0 (`maps_zero_to_zero`; `x + 3.0` and
  `sigmoid(0) = 0.5` do not).

Any other op layer (a constant with channels, a reduction, a reshape, a
softmax) stays opaque. Channel removal rebuilds an op layer as a clone: the
same function on the new tensors, with the same constants, which these
ops apply to any number of channels alike.
"""

import numbers

import numpy as np
import tensorflow as tf

from lilnetx_tf.compressed.tf_ops import ELEMENTWISE_OPS

__all__ = ["MERGE_OPS", "maps_zero_to_zero",
           "merge_rule", "op_channel_kind"]

# Ops of two tensors, by function name: whether an output element is zero
# when all (np.logical_and) or any (np.logical_or) of its inputs are.
MERGE_OPS = {
    "__operators__.add": np.logical_and, "math.add": np.logical_and,
    "math.subtract": np.logical_and, "math.maximum": np.logical_and,
    "math.minimum": np.logical_and, "math.multiply": np.logical_or,
}


def _function_name(layer):
  """The TensorFlow function a `TFOpLambda` calls, or None for other layers."""
  if type(layer).__name__ != "TFOpLambda":
    return None
  return layer.get_config().get("function")


def _constants(op):
  """The call's arguments other than its Keras tensors and `name`."""
  kwargs = {k: v for k, v in op.node.call_kwargs.items() if k != "name"}
  inputs = set(op.inputs)
  return [v for v in tf.nest.flatten((op.node.call_args, kwargs))
          if id(v) not in inputs]


def _is_scalar(value):
  if isinstance(value, numbers.Number):
    return True
  return (tf.is_tensor(value) or isinstance(value, np.ndarray)) and (
      len(value.shape) == 0)


def op_channel_kind(graph, op):
  """'op_merge', 'op_act' or None (not an op layer these rules cover).

  Args:
    graph: The `lilnetx_tf.deploy.graph.Graph` of `op`.
    op: One of its `Op`s, whose tensors all have a known channel axis.
  """
  function = _function_name(op.layer)
  if function is None or len(op.outputs) != 1:
    return None
  shapes = [graph.shapes[t] for t in op.inputs + op.outputs]
  if any(len(s) != len(shapes[-1]) or s[-1] != shapes[-1][-1]
         for s in shapes):
    return None  # Broadcast over channels, or another rank.
  constants = _constants(op)
  if len(op.inputs) == 2 and function in MERGE_OPS and not constants:
    return "op_merge"
  if (len(op.inputs) == 1 and function in ELEMENTWISE_OPS and
      all(_is_scalar(c) for c in constants)):
    return "op_act"
  return None


def merge_rule(op):
  """`np.logical_and` or `np.logical_or` over the zero inputs of an 'op_merge'."""
  return MERGE_OPS[_function_name(op.layer)]


def maps_zero_to_zero(op):
  """Whether an 'op_act' op, with its constants, maps 0 to exactly 0."""
  (tensor,) = op.node.keras_inputs
  zero = tf.zeros([1] * len(tensor.shape), tensor.dtype)
  inputs = set(op.inputs)
  args, kwargs = tf.nest.map_structure(
      lambda v: zero if id(v) in inputs else v,
      (op.node.call_args, op.node.call_kwargs))
  value = np.asarray(op.layer.function(*args, **kwargs))
  return bool(value.size) and bool(np.all(value == 0))
