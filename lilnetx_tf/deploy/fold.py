"""Folds batch normalization into the preceding convolution or Dense layer.

In inference mode a batch norm layer is a per-channel affine map
`y = x * scale + offset` with `scale = gamma / sqrt(var + eps)` and
`offset = beta - mean * scale`. When it is the sole consumer of a linear
(activation-free) convolution or dense layer, the map can be merged into that
layer's weights: the kernel's output channel `j` is multiplied by `scale[j]`
and the bias becomes `bias * scale + offset`. The exported model then has fewer
layers, and a channel whose folded kernel slice and bias are both zero is
visibly dead, which `lilnetx_tf.deploy.prune` relies on.
"""

from lilnetx_tf.deploy import graph as graph_lib
from lilnetx_tf import compat

__all__ = ["fold_batch_norm"]


def _foldable_producer(graph, op):
  """The op whose output batch norm `op` can be folded into, or None."""
  if len(op.inputs) != 1:
    return None
  tensor = op.inputs[0]
  producer = graph.producer.get(tensor)
  rank = len(graph.shapes[tensor])
  if (producer is None or graph_lib.linear_kind(producer.layer) is None
      or not graph_lib.normalizes_last_axis(op.layer, rank)
      or producer.layer.activation.__name__ != "linear"
      or len(graph.consumers[tensor]) != 1 or tensor in graph.outputs):
    return None
  return producer


def fold_batch_norm(model):
  """Folds every foldable batch norm layer into the layer before it.

  A BatchNormalization layer (normalizing the channel axis) is folded when it
  is the only consumer of the output of a channels-last Conv1D/2D/3D,
  DepthwiseConv1D/2D, SeparableConv1D/2D or Dense layer with linear
  activation, and that output is not a model output. The producer gets
  `use_bias=True` and the folded weights; other batch norm layers are kept.
  Folding is done in float64 and matches the inference-mode outputs of `model`
  to float32 rounding.

  Args:
    model: A functional `keras.Model`, or a Sequential one built with an
      input shape, made of stock layers called once each. It is not modified.

  Returns:
    A new functional `keras.Model` with new layer instances (same names).

  Raises:
    TypeError: If `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: If `model` is subclassed, nests models or shares layers.
  """
  compat.check_keras_model(model)
  graph = graph_lib.Graph(model)
  fold_into = {}  # Producer op -> the batch norm layer folded into it.
  folded = set()  # Batch norm ops that disappear.
  for op in graph.ops:
    producer = _foldable_producer(graph, op)
    if producer is not None:
      fold_into[producer] = op.layer
      folded.add(op)

  def visit(op, args, kwargs):
    layer = op.layer
    if op in folded:
      return args[0]
    if op not in fold_into:
      return graph_lib.call_clone(layer, args, kwargs, layer.get_weights())
    scale, offset = graph_lib.batch_norm_scale_offset(fold_into[op])
    kernel, bias = graph_lib.kernel_and_bias(layer)
    # Output channel j of a depthwise kernel (..., in, mult) is (j // mult,
    # j % mult), so the same reshape serves both kernel layouts.
    channel_shape = kernel.shape[-2:] if graph_lib.linear_kind(
        layer) == "depthwise" else kernel.shape[-1:]
    kernel = kernel * scale.reshape(channel_shape)
    bias = bias * scale + offset
    return graph_lib.call_clone(
        layer, args, kwargs,
        graph_lib.with_kernel_and_bias(layer, kernel, bias), use_bias=True)

  return graph.rebuild(visit)
