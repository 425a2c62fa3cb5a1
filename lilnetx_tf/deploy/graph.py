"""The graph of a functional Keras model, and the layer facts export needs.

Batch-norm folding (`lilnetx_tf.deploy.fold`), channel removal
(`lilnetx_tf.deploy.prune`) and the TFLite export (`lilnetx_tf.deploy.tflite`)
all rewrite a functional model the same way: walk its layer calls in
topological order (`Graph`), and replay them on new layer instances
(`Graph.rebuild`, usually through `call_clone`). They also share what a
layer's kernel looks like (`linear_kind`, `kernel_and_bias`) and the inference
map of batch normalization (`normalizes_last_axis`, and
`batch_norm_scale_offset` from `lilnetx_tf.compressed.floats`, which the
`.lnx` writer also folds with).
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf.compressed.floats import batch_norm_scale_offset

__all__ = ["Graph", "Op", "batch_norm_scale_offset", "call_clone",
           "clone_layer", "flattened", "kernel_and_bias", "linear_kind",
           "normalizes_last_axis", "with_kernel_and_bias"]


@dataclasses.dataclass(eq=False)
class Op:
  """One layer call of a functional model."""
  layer: keras.layers.Layer
  node: object  # The Keras `Node` of the call, for its call arguments.
  inputs: list  # ids of the input KerasTensors, flattened.
  outputs: list  # ids of the output KerasTensors, flattened.


class Graph:
  """The layer calls of a functional model, in topological order.

  Tensors are named by the `id` of the model's KerasTensors, which stay alive
  as long as the model does.
  """

  def __init__(self, model):
    if not isinstance(model, keras.Model):
      raise ValueError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not compat.is_graph_network(model) or not model.inputs:
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
    nodes_by_depth = compat.nodes_by_depth(model)
    for depth in sorted(nodes_by_depth, reverse=True):
      for node in nodes_by_depth[depth]:
        if node.is_input:
          continue
        layer = node.layer
        if isinstance(layer, keras.Model):
          raise ValueError(
              f"Nested model {layer.name!r}: inline it first with "
              "`flattened(model)`.")
        if id(layer) in seen:
          raise ValueError(f"Layer {layer.name!r} is called more than once; "
                           "shared layers are not supported.")
        seen.add(id(layer))
        outputs = tf.nest.flatten(node.outputs)
        op = Op(layer, node, [id(t) for t in node.keras_inputs],
                 [id(t) for t in outputs])
        for t in outputs:
          self.shapes[id(t)] = tuple(t.shape)
          self.producer[id(t)] = op
        for t in op.inputs:
          self.consumers[t].append(op)
        self.ops.append(op)
    self.inputs = [id(t) for t in model.inputs]
    self.outputs = [id(t) for t in model.outputs]

  def rebuild(self, visit):
    """Replays the graph and returns the new functional model.

    Args:
      visit: Function `(op, args, kwargs) -> outputs` that makes the new
        output tensors of `op` from its new call arguments, usually by calling
        a new layer on them.

    Returns:
      A new `keras.Model` with the same name and inputs, and the new
      tensors of the old outputs (one tensor, or a flat list).
    """
    tensors = {}
    new_inputs = []
    for t in self.model.inputs:
      x = keras.Input(batch_shape=t.shape, dtype=t.dtype,
                      name=compat.keras_history_layer(t).name)
      tensors[id(t)] = x
      new_inputs.append(x)
    replace = lambda v: tensors.get(id(v), v) if tf.is_tensor(v) else v
    for op in self.ops:
      args, kwargs = tf.nest.map_structure(
          replace, (op.node.call_args, op.node.call_kwargs))
      outputs = tf.nest.flatten(visit(op, args, kwargs))
      tensors.update(zip(op.outputs, outputs))
    outputs = [tensors[t] for t in self.outputs]
    return keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        outputs if len(outputs) > 1 else outputs[0], name=self.model.name)


def _is_nested(layer):
  return isinstance(layer, keras.Model) and compat.is_graph_network(layer)


def flattened(model):
  """`model` with its nested functional and Sequential models inlined.

  The export's rewrites walk one graph of layers; a nested model (a
  `keras.applications` base inside a classifier, a Sequential stem) is
  replaced by clones of its layers, with its weights, called on the outer
  tensors, at any depth. A layer whose name an earlier one took gets its
  model's name as a prefix. The outputs equal `model`'s in inference mode.

  Args:
    model: A functional or Sequential Keras model; not modified.

  Returns:
    `model` itself when nothing is nested, else a new functional model.

  Raises:
    ValueError: for a nested subclassed model, or a nested model called on
      a number of tensors other than its inputs.
  """
  nbd = compat.nodes_by_depth(model)
  if not any(isinstance(n.layer, keras.Model) for d in nbd for n in nbd[d]):
    return model
  taken = set()

  def unique(name, prefix):
    candidate, i = name, 0
    while candidate in taken:
      i += 1
      candidate = f"{prefix}_{name}" if i == 1 else f"{prefix}_{name}_{i}"
    taken.add(candidate)
    return candidate

  def replay(net, inputs, prefix):
    tensors = {id(t): x for t, x in zip(net.inputs, inputs)}
    replace = lambda v: tensors.get(id(v), v) if tf.is_tensor(v) else v
    nodes = compat.nodes_by_depth(net)
    for depth in sorted(nodes, reverse=True):
      for node in nodes[depth]:
        if node.is_input:
          continue
        args, kwargs = tf.nest.map_structure(
            replace, (node.call_args, node.call_kwargs))
        layer = node.layer
        if _is_nested(layer):
          inner = tf.nest.flatten(args[0] if args else kwargs["inputs"])
          if len(inner) != len(layer.inputs):
            raise ValueError(
                f"Nested model {layer.name!r} is called on {len(inner)} "
                f"tensors but has {len(layer.inputs)} inputs.")
          outputs = replay(layer, inner, layer.name)
        elif isinstance(layer, keras.Model):
          raise ValueError(
              f"Nested model {layer.name!r} is subclassed: its layer calls "
              "are not recorded, so it cannot be exported; build it as a "
              "functional model.")
        else:
          outputs = call_clone(layer, args, kwargs, layer.get_weights(),
                               name=unique(layer.name, prefix))
        tensors.update(zip([id(t) for t in tf.nest.flatten(node.outputs)],
                           tf.nest.flatten(outputs)))
    return [tensors[id(t)] for t in net.outputs]

  new_inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype,
                            name=unique(compat.keras_history_layer(t).name,
                                        model.name))
                for t in model.inputs]
  outputs = replay(model, new_inputs, model.name)
  return keras.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                     outputs if len(outputs) > 1 else outputs[0],
                     name=model.name)


def clone_layer(layer, **config_updates):
  """A new, unbuilt instance of `layer` with its config updated."""
  config = layer.get_config()
  config.update(config_updates)
  return type(layer).from_config(config)


def call_clone(layer, args, kwargs, weights, **config_updates):
  """Calls a clone of `layer` on `args` and gives it `weights`."""
  new = clone_layer(layer, **config_updates)
  outputs = new(*args, **kwargs)
  new.set_weights(weights)
  return outputs


def linear_kind(layer):
  """'conv', 'depthwise', 'separable', 'dense', or None for other layers.

  'conv' kernels are (*spatial, in, out) and 'depthwise' ones (*spatial, in,
  multiplier), both channels-last; 'separable' layers have a depthwise and a
  pointwise (1 x ... x 1, in * multiplier, out) kernel. Transposed
  convolutions (which subclass Conv) are None.
  """
  layers = keras.layers
  if getattr(layer, "data_format", "channels_last") != "channels_last":
    return None
  if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
    return "depthwise"
  if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
    return "separable"
  if isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose,
                        layers.Conv3DTranspose)):
    return None
  if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
    return "conv"
  if isinstance(layer, layers.Dense):
    return "dense"
  return None


def kernel_and_bias(layer):
  """Kernel and bias of a linear layer as float64 arrays (zero bias if none).

  The kernel is the one that makes the output channels: a separable
  convolution's pointwise kernel (its depthwise kernel is weight 0).
  """
  kind = linear_kind(layer)
  if kind == "depthwise":
    kernel = layer.depthwise_kernel.numpy().astype(np.float64)
    channels = kernel.shape[-2] * kernel.shape[-1]
  else:
    kernel = (layer.pointwise_kernel if kind == "separable" else
              layer.kernel).numpy().astype(np.float64)
    channels = kernel.shape[-1]
  bias = (layer.bias.numpy().astype(np.float64) if layer.use_bias
          else np.zeros(channels))
  return kernel, bias


def with_kernel_and_bias(layer, kernel, bias):
  """The weights of `layer` with the kernel and bias of `kernel_and_bias`."""
  dtype = layer.dtype
  weights = [kernel.astype(dtype), bias.astype(dtype)]
  if linear_kind(layer) == "separable":
    weights.insert(0, layer.depthwise_kernel.numpy())
  return weights


def normalizes_last_axis(layer, rank):
  """True when batch norm `layer` normalizes only the last of `rank` axes."""
  return isinstance(layer, keras.layers.BatchNormalization) and list(
      layer.axis) in ([rank - 1], [-1])
