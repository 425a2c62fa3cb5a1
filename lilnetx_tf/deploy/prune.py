"""Physically removes zero channels from a plain Keras model, exactly.

LilNetX's structured-sparsity term leaves whole channels of the decoded
kernels at zero. This module finds every channel whose removal provably leaves
the model's outputs unchanged and rebuilds a smaller dense model without them.

The analysis works on *elements*: pairs (tensor, channel) over every tensor of
the functional graph. Layers that keep channels apart tie elements together,
because they must keep or lose them as one:

* channel-wise layers (activations, batch norm, pooling, padding, dropout,
  global pooling) tie input channel `c` to output channel `c`;
* Add and the other merges tie channel `c` of every input to channel `c` of the
  output, which joins residual streams;
* TensorFlow op layers tie channels as a merge (`x + skip` of two tensors)
  or an activation (`x * 0.5`, `tf.nn.relu6(x)`) where that is exact
  (`lilnetx_tf.deploy.tf_op_channels`);
* Concatenate and ChannelPad tie each input channel to its output position;
* DepthwiseConv ties input channel `c` to its `multiplier` output channels;
* a grouped convolution (`groups > 1`) ties all input and output channels of
  each group together: it keeps or loses whole groups, so that it stays a
  grouped convolution (fewer filters and groups, the same channels per group);
* Flatten ties input channel `c` to output positions `s * C + c`.

The connected components, called *atoms*, are what gets removed. An element
is *zero* when it is provably zero for every input: the output of a kernel
layer whose bias is zero, whose activation maps 0 to 0 and whose kernel reads
only zero input channels (in particular, an all-zero kernel slice), a ChannelPad
pad, or zero propagated through the layers above (batch norm only when it maps
0 to 0, so a constant channel is kept). An element is *read* when a kernel layer
(Conv or Dense, not grouped) has a nonzero weight from it to a kept output
channel; a grouped convolution needs its inputs exactly while their group is
kept, which the ties already say. An atom is removed when none of its
elements is a model input or output or touches a layer the analysis does not
model, and every element that is read is zero.
Then every kept value is computed from the same nonzero terms as before, so the
outputs do not change. Removing output channels makes their input channels
unread, so the rule is iterated to a fixed point; a tensor never loses all its
channels (one atom is kept).

The ties are what stock layers can express, and they cost some removals: a
zero channel that ChannelPad or Concatenate places into a wider tensor stays
while its position there is live (e.g. a dead channel of a ResNet stage whose
zero-padded shortcut feeds a live channel of the next stage). A grouped
convolution loses a group only when all of it can go: its output channels
are all zero or unread (all its input channels zero make them zero, with a
zero bias and an activation keeping 0 at 0), and nothing else needs its input
channels; a group only partly removable is kept whole.
"""

import dataclasses
import numbers

import numpy as np
import tensorflow as tf
from lilnetx_tf import compat

from lilnetx_tf.deploy import graph as graph_lib
from lilnetx_tf.deploy import tf_op_channels
from lilnetx_tf.method.stats import kernel_macs

__all__ = ["LayerPruning", "PruneReport", "channel_kind",
           "remove_zero_channels"]

# Layers whose output channel c depends on input channel c only, and is zero
# when it is (in inference mode).
_PASS_THROUGH = frozenset(
    [f"{kind}{dim}D" for kind in ("MaxPooling", "AveragePooling",
                                  "GlobalAveragePooling", "GlobalMaxPooling",
                                  "ZeroPadding", "Cropping", "UpSampling",
                                  "SpatialDropout") for dim in (1, 2, 3)]
    + ["Dropout", "GaussianDropout", "GaussianNoise", "AlphaDropout",
       "ActivityRegularization", "Identity"])
_ACTIVATION_LAYERS = frozenset(["ReLU", "LeakyReLU", "ELU", "ThresholdedReLU"])
# Activations applied elementwise (unlike softmax, which mixes channels).
_ELEMENTWISE = frozenset([
    "linear", "relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "tanh",
    "sigmoid", "hard_sigmoid", "softplus", "softsign", "exponential", "mish",
    "leaky_relu"])
_MERGES = {"Add": np.logical_and, "Subtract": np.logical_and,
           "Average": np.logical_and, "Maximum": np.logical_and,
           "Minimum": np.logical_and, "Multiply": np.logical_or}


def _maps_zero_to_zero(fn):
  return float(tf.reshape(fn(tf.zeros([1, 1])), [-1])[0]) == 0.0


def _activation_zero(activation):
  """True/False: `activation` is elementwise and does/doesn't keep 0 at 0.

  None when it is not elementwise.
  """
  if getattr(activation, "__name__", None) not in _ELEMENTWISE:
    return None
  return _maps_zero_to_zero(activation)


def channel_kind(graph, op):
  """How channels flow through `op`, for the channel analysis.

  Returns one of 'mix' (conv / dense: every output channel reads every
  input channel), 'dw' (depthwise), 'group' (a grouped convolution: output
  channels of group j read input channels of group j), 'bn', 'act' (an
  elementwise activation layer), 'pad' (ChannelPad), 'pass' (channel c
  depends on channel c only), 'flatten', 'merge' (elementwise merge of
  same-width inputs), 'concat', 'op_act' and 'op_merge' (TensorFlow op
  layers acting as 'act' and 'merge', `tf_op_channels`), or 'opaque', which
  pins all its channels."""
  layer, name = op.layer, type(op.layer).__name__
  shapes = [graph.shapes[t] for t in op.inputs + op.outputs]
  if (len(op.outputs) != 1 or not op.inputs
      or any(len(s) < 2 or s[-1] is None for s in shapes)):
    return "opaque"
  op_kind = tf_op_channels.op_channel_kind(graph, op)
  if op_kind is not None:
    return op_kind
  rank, channels = len(shapes[-1]), shapes[-1][-1]
  linear = graph_lib.linear_kind(layer)
  if len(op.inputs) > 1:
    if (name in _MERGES and all(s[-1] == channels for s in shapes)
        and all(len(s) == rank for s in shapes)):
      return "merge"
    if name == "Concatenate" and layer.axis in (-1, rank - 1):
      return "concat"
    return "opaque"
  if linear in ("dense", "separable") or (
      linear == "conv" and layer.groups == 1):
    return "mix"
  if linear in ("depthwise", "conv"):
    # A non-elementwise activation would mix the groups' outputs.
    if _activation_zero(layer.activation) is None:
      return "opaque"
    return "dw" if linear == "depthwise" else "group"
  if graph_lib.normalizes_last_axis(layer, rank):
    return "bn"
  if name in _ACTIVATION_LAYERS or (
      name == "Activation" and _activation_zero(layer.activation) is not None):
    return "act"
  if name == "ChannelPad":
    return "pad"
  if getattr(layer, "data_format", "channels_last") != "channels_last":
    return "opaque"
  if name in _PASS_THROUGH:
    return "pass"
  if name == "Flatten" and None not in shapes[0][1:]:
    return "flatten"
  return "opaque"


def _reads(layer, kernel, atol):
  """Boolean (in, out): output channel o reads input channel i.

  `kernel` is `graph.kernel_and_bias(layer)[0]`; a separable convolution
  reads input i through its depthwise outputs i * multiplier + m.
  """
  nonzero = (np.abs(kernel) > atol).reshape(-1, *kernel.shape[-2:]).any(0)
  if graph_lib.linear_kind(layer) != "separable":
    return nonzero
  depthwise = np.abs(layer.depthwise_kernel.numpy()) > atol
  depthwise = depthwise.reshape(-1, *depthwise.shape[-2:]).any(0)  # (in, m)
  return (depthwise[..., None] & nonzero.reshape(
      *depthwise.shape, -1)).any(1)


class _Analysis:
  """Finds the channels of every tensor that can be removed exactly."""

  def __init__(self, graph, atol):
    self.graph = graph
    self.kinds = {op: channel_kind(graph, op) for op in graph.ops}
    self.index = {}  # Tensor id -> global indices of its channels.
    size = 0
    for t, shape in graph.shapes.items():
      channels = shape[-1] if len(shape) >= 2 and shape[-1] else 0
      self.index[t] = np.arange(size, size + channels)
      size += channels
    self.size = size
    self.links = {op: self._links(op) for op in graph.ops}
    self.readers = {}  # Mix op -> boolean (in, out): nonzero weight from in.
    self.zero = self._zero_elements(atol)
    self.atoms = self._atoms()
    self.pinned = np.zeros(size, bool)
    for t in graph.inputs + graph.outputs:
      self.pinned[self.index[t]] = True
    for op, kind in self.kinds.items():
      pinned = []
      if kind == "opaque":
        pinned = op.inputs + op.outputs
      elif kind == "mix" and _activation_zero(op.layer.activation) is None:
        pinned = op.outputs  # Softmax-like activations mix output channels.
      for t in pinned:
        self.pinned[self.index[t]] = True

  def _links(self, op):
    """(src, dst): output element dst[i] is computed from input src[i]."""
    kind = self.kinds[op]
    if kind in ("mix", "opaque"):
      return np.zeros(0, int), np.zeros(0, int)
    ins = [self.index[t] for t in op.inputs]
    out = self.index[op.outputs[0]]
    if kind == "group":
      # Every channel of group j is linked to the group's first input or
      # first output channel, which links them all.
      groups = op.layer.groups
      per_in, per_out = len(ins[0]) // groups, len(out) // groups
      return (np.concatenate([np.repeat(ins[0][::per_in], per_out), ins[0]]),
              np.concatenate([out, np.repeat(out[::per_out], per_in)]))
    if kind in ("merge", "op_merge"):
      return np.concatenate(ins), np.tile(out, len(ins))
    if kind == "concat":
      return np.concatenate(ins), out
    if kind == "pad":
      before = op.layer.get_config()["before"]
      return ins[0], out[before:before + len(ins[0])]
    # Channel c feeds outputs c * mult + k of a depthwise conv, and flattened
    # positions s * C + c.
    repeats = len(out) // len(ins[0])
    if kind == "dw":
      return np.repeat(ins[0], repeats), out
    return np.tile(ins[0], repeats), out

  def _zero_elements(self, atol):
    """Elements that are zero for every model input (a forward pass)."""
    zero = np.zeros(self.size, bool)
    for op in self.graph.ops:
      kind, layer = self.kinds[op], op.layer
      src, dst = self.links[op]
      if kind in ("pass", "concat", "flatten", "pad"):
        zero[self.index[op.outputs[0]]] = kind == "pad"
        zero[dst] = zero[src]
      elif kind in ("act", "op_act"):
        zero[dst] = zero[src] & (
            _maps_zero_to_zero(layer.call) if kind == "act" else
            tf_op_channels.maps_zero_to_zero(op))
      elif kind == "bn":
        scale, offset = graph_lib.batch_norm_scale_offset(layer)
        zero[dst] = (zero[src] | (scale == 0)) & (offset == 0)
      elif kind in ("merge", "op_merge"):
        per_input = zero[src].reshape(len(op.inputs), -1)
        rule = (_MERGES[type(layer).__name__] if kind == "merge" else
                tf_op_channels.merge_rule(op))
        zero[self.index[op.outputs[0]]] = rule.reduce(per_input)
      elif kind in ("dw", "mix", "group"):
        kernel, bias = graph_lib.kernel_and_bias(layer)
        dead = (np.abs(bias) <= atol) & bool(_activation_zero(layer.activation))
        if kind == "dw":
          nonzero = np.abs(kernel.reshape(-1, len(dst))) > atol
          zero[dst] = dead & (zero[src] | ~nonzero.any(0))
        elif kind == "group":
          # Kernel (*spatial, in / groups, out): output j * per_out + k reads
          # input j * per_in + i through kernel[..., i, j * per_out + k].
          groups, per_in = layer.groups, kernel.shape[-2]
          nonzero = (np.abs(kernel) > atol).reshape(
              -1, per_in, groups, kernel.shape[-1] // groups).any(0)
          live_in = ~zero[self.index[op.inputs[0]]].reshape(groups, per_in)
          zero[self.index[op.outputs[0]]] = dead & ~(
              nonzero & live_in.T[:, :, None]).any(0).reshape(-1)
        else:
          nonzero = _reads(layer, kernel, atol)
          self.readers[op] = nonzero
          live_in = ~zero[self.index[op.inputs[0]]]
          zero[self.index[op.outputs[0]]] = dead & ~(
              nonzero & live_in[:, None]).any(0)
    return zero

  def _atoms(self):
    """Connected-component label of every element under the ties."""
    none = [np.zeros(0, int)]
    src = np.concatenate(none + [s for s, _ in self.links.values()])
    dst = np.concatenate(none + [d for _, d in self.links.values()])
    labels = np.arange(self.size)
    while True:
      # Min-label propagation with pointer jumping; labels only decrease.
      low = np.minimum(labels[src], labels[dst])
      new = labels.copy()
      np.minimum.at(new, src, low)
      np.minimum.at(new, dst, low)
      new = new[new]
      if np.array_equal(new, labels):
        return labels
      labels = new

  def _read(self, keep):
    """Elements with a nonzero weight to a kept output of a kernel layer."""
    read = np.zeros(self.size, bool)
    for op, nonzero in self.readers.items():
      kept_out = keep[self.index[op.outputs[0]]]
      read[self.index[op.inputs[0]]] |= (nonzero & kept_out).any(1)
    return read

  def keep_mask(self):
    """Boolean mask over all elements: True for the channels to keep."""
    pinned = self.pinned.copy()
    while True:
      keep = np.ones(self.size, bool)
      while True:  # Removing outputs unreads inputs: shrink to a fixed point.
        needed = np.zeros(self.size, bool)
        needed[self.atoms[pinned | (self._read(keep) & ~self.zero)]] = True
        new_keep = needed[self.atoms]
        if np.array_equal(new_keep, keep):
          break
        keep = new_keep
      emptied = [ix[0] for ix in self.index.values()
                 if len(ix) and not keep[ix].any()]
      if not emptied:
        return keep
      pinned[emptied] = True


@dataclasses.dataclass(frozen=True)
class LayerPruning:
  """Channels, parameters and MACs (batch 1) of one layer, before and after.

  Channel counts are those of the layer's first input and its output tensor
  (0 where the layer's tensors have no channel axis).
  """
  name: str
  class_name: str
  in_kept: int
  in_total: int
  out_kept: int
  out_total: int
  params_before: int
  params_after: int
  macs_before: int
  macs_after: int


@dataclasses.dataclass(frozen=True)
class PruneReport:
  """What `remove_zero_channels` removed.

  MACs count Conv, DepthwiseConv and Dense layers only: output positions times
  kernel size (`H_out * W_out * kh * kw * C_in * C_out` for a Conv2D), for one
  example; they are None where a layer's output shape is not fully known.
  """
  layers: tuple
  params_before: int
  params_after: int
  macs_before: int
  macs_after: int

  def to_dict(self):
    """The report as plain Python types, for JSON."""
    report = dataclasses.asdict(self)
    report["layers"] = list(report["layers"])
    return report


def _macs(layer, output_shape):
  kind = graph_lib.linear_kind(layer)
  if kind is None:
    return 0
  if None in tuple(output_shape)[1:-1]:
    return None
  if kind == "separable":
    kernels = [layer.depthwise_kernel, layer.pointwise_kernel]
  else:
    kernels = [layer.depthwise_kernel if kind == "depthwise" else layer.kernel]
  return sum(kernel_macs(k.shape, output_shape) for k in kernels)


def _sum(values):
  values = list(values)
  return None if None in values else sum(values)


def remove_zero_channels(model, *, atol=0.0):
  """Removes the channels that provably do not change the model's outputs.

  Channels are removed when they are always zero (dead at every writer) or
  never read with a nonzero weight, following the rules in the module
  docstring; the model's input and output channels are never removed. Apply
  `lilnetx_tf.deploy.fold.fold_batch_norm` first, so that batch norm after a
  dead
  channel does not turn it into a constant.

  Args:
    model: A functional `keras.Model`, or a Sequential one built with an
      input shape, made of stock layers (and `ChannelPad`) called once each. It
      is not modified. Layers the analysis does not model are copied as they
      are, and keep all their channels.
    atol: Kernel weights and biases with magnitude at most `atol` count as
      zero. The default 0 makes the removal exact; a positive value also drops
      nearly dead channels, so outputs may change slightly.

  Returns:
    `(pruned, report)`: a new functional `keras.Model` with new layer
    instances (same names, fewer filters/units where channels went) and a
    `PruneReport`.

  Raises:
    TypeError: If `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: If `atol` is negative, or `model` is subclassed, nests models
      or shares layers.
  """
  compat.check_keras_model(model)
  if isinstance(atol, bool) or not isinstance(atol, numbers.Real) or atol < 0:
    raise ValueError(f"atol must be a non-negative number, got {atol!r}.")
  graph = graph_lib.Graph(model)
  analysis = _Analysis(graph, float(atol))
  keep = analysis.keep_mask()
  channels = lambda t: keep[analysis.index[t]]

  def visit(op, args, kwargs):
    layer, kind = op.layer, analysis.kinds[op]
    weights, updates = layer.get_weights(), {}
    if kind in ("mix", "dw", "group", "bn"):
      keep_in, keep_out = channels(op.inputs[0]), channels(op.outputs[0])
    if kind == "mix" and graph_lib.linear_kind(layer) == "separable":
      multiplier = layer.depth_multiplier
      weights[0] = weights[0][..., keep_in, :]
      weights[1] = weights[1][..., np.repeat(keep_in, multiplier), :]
      weights[1:] = [w[..., keep_out] for w in weights[1:]]
      updates = {"filters": int(keep_out.sum())}
    elif kind in ("mix", "group"):
      if kind == "mix":
        weights[0] = weights[0][..., keep_in, :]
      weights[0] = weights[0][..., keep_out]
      weights[1:] = [bias[keep_out] for bias in weights[1:]]
      dense = graph_lib.linear_kind(layer) == "dense"
      updates = {"units" if dense else "filters":
                 int(keep_out.sum())}
      if kind == "group":  # Whole groups go, so this divides exactly.
        updates["groups"] = layer.groups * int(keep_out.sum()) // len(keep_out)
    elif kind == "dw":
      multiplier = weights[0].shape[-1]
      weights[0] = weights[0][..., keep_in, :]
      weights[1:] = [bias.reshape(-1, multiplier)[keep_in].reshape(-1)
                     for bias in weights[1:]]
    elif kind == "bn":
      weights = [w[keep_in] for w in weights]
    elif kind == "pad":
      keep_out, before = channels(op.outputs[0]), layer.get_config()["before"]
      after = before + len(channels(op.inputs[0]))
      updates = {"before": int(keep_out[:before].sum()),
                 "after": int(keep_out[after:].sum())}
    return graph_lib.call_clone(layer, args, kwargs, weights, **updates)

  pruned = graph.rebuild(visit)
  layers = []
  for op in graph.ops:
    new = pruned.get_layer(op.layer.name)
    tensor_in, tensor_out = op.inputs[0], op.outputs[0]
    layers.append(LayerPruning(
        name=op.layer.name, class_name=type(op.layer).__name__,
        in_kept=int(channels(tensor_in).sum()),
        in_total=len(analysis.index[tensor_in]),
        out_kept=int(channels(tensor_out).sum()),
        out_total=len(analysis.index[tensor_out]),
        params_before=op.layer.count_params(), params_after=new.count_params(),
        macs_before=_macs(op.layer, graph.shapes[tensor_out]),
        macs_after=_macs(new, new.output_shape)))
  report = PruneReport(
      layers=tuple(layers), params_before=model.count_params(),
      params_after=pruned.count_params(),
      macs_before=_sum(layer.macs_before for layer in layers),
      macs_after=_sum(layer.macs_after for layer in layers))
  return pruned, report
