"""Folds batch normalization into the preceding Conv2D, DepthwiseConv2D or Dense.

In inference mode a batch norm layer is a per-channel affine map
`y = x * scale + offset` with `scale = gamma / sqrt(var + eps)` and
`offset = beta - mean * scale`. When it is the sole consumer of a linear
(activation-free) convolution or dense layer, the map can be merged into that
layer's weights: the kernel's output channel `j` is multiplied by `scale[j]`
and the bias becomes `bias * scale + offset`. The exported model then has fewer
layers, and a channel whose folded kernel slice and bias are both zero is
visibly dead, which `lilnetx_tf.prune` relies on.

This module also holds the small functional-graph walker shared with
`lilnetx_tf.prune`: a topologically ordered list of layer calls, and a rebuild
function that replays those calls on new layer instances.
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf

__all__ = ["fold_batch_norm"]


@dataclasses.dataclass(eq=False)
class _Op:
  """One layer call of a functional model."""
  layer: tf.keras.layers.Layer
  node: object  # The Keras `Node` of the call, for its call arguments.
  inputs: list  # ids of the input KerasTensors, flattened.
  outputs: list  # ids of the output KerasTensors, flattened.


class _Graph:
  """The layer calls of a functional model, in topological order.

  Tensors are named by the `id` of the model's KerasTensors, which stay alive
  as long as the model does.
  """

  def __init__(self, model):
    if not isinstance(model, tf.keras.Model):
      raise ValueError(f"Expected a tf.keras.Model, got {type(model).__name__}.")
    # pylint: disable=protected-access
    if not getattr(model, "_is_graph_network", False) or not model.inputs:
      raise ValueError(
          f"Model {model.name!r} must be functional, or a Sequential model "
          "built with a known input shape; subclassed models are not "
          "supported.")
    self.model = model
    self.ops = []
    self.shapes = {id(t): tuple(t.shape) for t in model.inputs}
    self.producer = {}
    self.consumers = collections.defaultdict(list)
    seen = set()
    for depth in sorted(model._nodes_by_depth, reverse=True):
      for node in model._nodes_by_depth[depth]:
        if node.is_input:
          continue
        layer = node.layer
        if isinstance(layer, tf.keras.Model):
          raise ValueError(
              f"Nested model {layer.name!r} is not supported; build the "
              "model from layers only.")
        if id(layer) in seen:
          raise ValueError(f"Layer {layer.name!r} is called more than once; "
                           "shared layers are not supported.")
        seen.add(id(layer))
        outputs = tf.nest.flatten(node.outputs)
        op = _Op(layer, node, [id(t) for t in node.keras_inputs],
                 [id(t) for t in outputs])
        for t in outputs:
          self.shapes[id(t)] = tuple(t.shape)
          self.producer[id(t)] = op
        for t in op.inputs:
          self.consumers[t].append(op)
        self.ops.append(op)
    # pylint: enable=protected-access
    self.inputs = [id(t) for t in model.inputs]
    self.outputs = [id(t) for t in model.outputs]

  def rebuild(self, visit):
    """Replays the graph and returns the new functional model.

    Args:
      visit: Function `(op, args, kwargs) -> outputs` that makes the new
        output tensors of `op` from its new call arguments, usually by calling
        a new layer on them.

    Returns:
      A new `tf.keras.Model` with the same name and inputs, and the new
      tensors of the old outputs (one tensor, or a flat list).
    """
    tensors = {}
    new_inputs = []
    for t in self.model.inputs:
      x = tf.keras.Input(batch_shape=t.shape, dtype=t.dtype,
                         name=t._keras_history.layer.name)  # pylint: disable=protected-access
      tensors[id(t)] = x
      new_inputs.append(x)
    replace = lambda v: tensors.get(id(v), v) if tf.is_tensor(v) else v
    for op in self.ops:
      args, kwargs = tf.nest.map_structure(
          replace, (op.node.call_args, op.node.call_kwargs))
      outputs = tf.nest.flatten(visit(op, args, kwargs))
      tensors.update(zip(op.outputs, outputs))
    outputs = [tensors[t] for t in self.outputs]
    return tf.keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        outputs if len(outputs) > 1 else outputs[0], name=self.model.name)


def _clone(layer, **config_updates):
  """A new, unbuilt instance of `layer` with its config updated."""
  config = layer.get_config()
  config.update(config_updates)
  return type(layer).from_config(config)


def _call_clone(layer, args, kwargs, weights, **config_updates):
  """Calls a clone of `layer` on `args` and gives it `weights`."""
  new = _clone(layer, **config_updates)
  outputs = new(*args, **kwargs)
  new.set_weights(weights)
  return outputs


def _linear_kind(layer):
  """'conv', 'depthwise', 'dense', or None for layers without such a kernel.

  'conv' kernels are (*spatial, in, out) and 'depthwise' ones (*spatial, in,
  multiplier), both channels-last; transposed and separable convolutions (which
  subclass Conv) are None.
  """
  layers = tf.keras.layers
  if getattr(layer, "data_format", "channels_last") != "channels_last":
    return None
  if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
    return "depthwise"
  if isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose,
                        layers.Conv3DTranspose, layers.SeparableConv1D,
                        layers.SeparableConv2D)):
    return None
  if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
    return "conv"
  if isinstance(layer, layers.Dense):
    return "dense"
  return None


def _kernel_and_bias(layer):
  """Kernel and bias of a linear layer as float64 arrays (zero bias if none)."""
  if _linear_kind(layer) == "depthwise":
    kernel = layer.depthwise_kernel.numpy().astype(np.float64)
    channels = kernel.shape[-2] * kernel.shape[-1]
  else:
    kernel = layer.kernel.numpy().astype(np.float64)
    channels = kernel.shape[-1]
  bias = (layer.bias.numpy().astype(np.float64) if layer.use_bias
          else np.zeros(channels))
  return kernel, bias


def _bn_channel_axis(layer, rank):
  """True when batch norm `layer` normalizes only the last of `rank` axes."""
  return isinstance(layer, tf.keras.layers.BatchNormalization) and list(
      layer.axis) in ([rank - 1], [-1])


def _bn_scale_offset(layer):
  """(scale, offset), float64, of the inference map of a batch norm layer."""
  var = layer.moving_variance.numpy().astype(np.float64)
  gamma = np.ones_like(var) if layer.gamma is None else layer.gamma.numpy()
  beta = np.zeros_like(var) if layer.beta is None else layer.beta.numpy()
  scale = gamma / np.sqrt(var + layer.epsilon)
  offset = beta - layer.moving_mean.numpy() * scale
  return scale, offset


def _foldable_producer(graph, op):
  """The op whose output batch norm `op` can be folded into, or None."""
  if len(op.inputs) != 1:
    return None
  tensor = op.inputs[0]
  producer = graph.producer.get(tensor)
  if (producer is None or _linear_kind(producer.layer) is None
      or not _bn_channel_axis(op.layer, len(graph.shapes[tensor]))
      or producer.layer.activation.__name__ != "linear"
      or len(graph.consumers[tensor]) != 1 or tensor in graph.outputs):
    return None
  return producer


def fold_batch_norm(model):
  """Folds every foldable batch norm layer into the layer before it.

  A BatchNormalization layer (normalizing the channel axis) is folded when it
  is the only consumer of the output of a channels-last Conv1D/2D/3D,
  DepthwiseConv1D/2D or Dense layer with linear activation, and that output is
  not a model output. The producer gets `use_bias=True` and the folded weights;
  other batch norm layers are kept. Folding is done in float64 and matches the
  inference-mode outputs of `model` to float32 rounding.

  Args:
    model: A functional `tf.keras.Model`, or a Sequential one built with an
      input shape, made of stock layers called once each. It is not modified.

  Returns:
    A new functional `tf.keras.Model` with new layer instances (same names).

  Raises:
    ValueError: If `model` is subclassed, nests models or shares layers.
  """
  graph = _Graph(model)
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
      return _call_clone(layer, args, kwargs, layer.get_weights())
    scale, offset = _bn_scale_offset(fold_into[op])
    kernel, bias = _kernel_and_bias(layer)
    # Output channel j of a depthwise kernel (..., in, mult) is (j // mult,
    # j % mult), so the same reshape serves both kernel layouts.
    channel_shape = kernel.shape[-2:] if _linear_kind(
        layer) == "depthwise" else kernel.shape[-1:]
    kernel = kernel * scale.reshape(channel_shape)
    bias = bias * scale + offset
    dtype = layer.dtype
    return _call_clone(layer, args, kwargs,
                       [kernel.astype(dtype), bias.astype(dtype)],
                       use_bias=True)

  return graph.rebuild(visit)
