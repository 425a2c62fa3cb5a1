"""TensorFlow Lite export: decode, fold, remove zero channels, convert.

The exported model is built in three exact steps from a trained model:

1. decode: a `LilNetXModel` becomes a plain Keras model with the decoded
   kernels (`lilnetx_tf.decompressed_model`); a plain model is used as is;
2. fold: batch norm is folded into the preceding conv / dense layer
   (`lilnetx_tf.deploy.fold.fold_batch_norm`). A channel whose folded kernel
   is zero is then the constant `activation(bias)`; when every consumer maps
   that constant to exactly 0 (a ReLU after a negative bias), its bias is set
   to 0, which changes no output and lets the next step see the channel as
   dead;
3. prune: channels that provably do not change the outputs are removed
   physically (`lilnetx_tf.deploy.prune.remove_zero_channels`).

`convert` then runs `tf.lite.TFLiteConverter` as float32, float16,
dynamic-range or full-integer int8, optionally storing the remaining
unstructured zeros as sparse tensors. `quantization_aware_finetune` adds a
short int8 quantization-aware fine-tune that keeps zero weights zero
(tensorflow-model-optimization's prune-preserving scheme). Verification and
latency live in `lilnetx_tf.deploy.tflite_check`, the analysis of sparse
storage and XNNPACK sparse inference in `lilnetx_tf.deploy.tflite_sparse`.
"""

import dataclasses

import numpy as np
import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf._quiet import filtered_stderr
from lilnetx_tf.deploy import fold
from lilnetx_tf.deploy import graph as graph_lib
from lilnetx_tf.deploy import prune
from lilnetx_tf.method.convert import decompressed_model
from lilnetx_tf.method.model import LilNetXModel

__all__ = [
    "QUANTIZATIONS",
    "ExportModels",
    "convert",
    "plain_model",
    "prepare_for_export",
    "quantization_aware_finetune",
    "zero_weights_kept",
]

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")

# Converter messages that describe its internals, not the user's model.
_CONVERTER_NOISE = (
    "Ignored output_format", "Ignored drop_control_dependency",
    "fully_quantize:", "Statistics for quantized inputs were expected",
    "warnings.warn(", "Estimated count of arithmetic ops",
    "Found untraced functions", "Assets written to",
    "function_optimizer", "disabling MLIR crash reproducer",
    "signature_serialization.py", "fingerprinting_utils.py",
    "Using new converter")


@dataclasses.dataclass
class ExportModels:
  """The Keras models an export converts.

  Attributes:
    dense: Decoded, batch norm folded; every channel kept (the baseline of
      the latency comparison).
    pruned: `dense` without the channels that do not change its outputs.
    prune_report: The `lilnetx_tf.deploy.prune.PruneReport` of the removal.
    silenced: Layer name -> number of zero-kernel channels whose negative
      bias was set to 0 because the activation after it maps it to 0 anyway.
  """
  dense: keras.Model
  pruned: keras.Model
  prune_report: prune.PruneReport
  silenced: dict


def plain_model(model):
  """The plain Keras model to export: decoded when `model` is a LilNetX one.

  Args:
    model: A `LilNetXModel`, or a plain functional/Sequential Keras model.

  Returns:
    A plain Keras model whose inference outputs equal `model`'s.

  Raises:
    TypeError: If `model` is not a Keras 2 model (a Keras 3 one, say).
  """
  compat.check_keras_model(model)
  if isinstance(model, LilNetXModel):
    return decompressed_model(model)
  return model


def _silence_dead_channels(model):
  """Zeroes the biases of zero-kernel channels whose activation is 0 anyway.

  A channel with an all-zero kernel slice outputs `activation(bias)` at every
  position (padding cannot matter). When that is exactly 0 under the layer's
  own activation, or under every consumer when all consumers are elementwise
  activation layers, the bias is replaced by 0: the same outputs, and the
  channel is now visibly dead for `remove_zero_channels`. Modifies `model`.

  Returns:
    Layer name -> number of channels whose bias was zeroed.
  """
  graph = graph_lib.Graph(model)
  silenced = {}
  for op in graph.ops:
    layer = op.layer
    if graph_lib.linear_kind(layer) is None or not layer.use_bias or (
        op.outputs[0] in graph.outputs):
      continue
    kernel, bias = graph_lib.kernel_and_bias(layer)
    # Output channel j of every kernel layout is column j of this reshape.
    dead = ~(kernel.reshape(-1, bias.size) != 0).any(0) & (bias != 0)
    if not dead.any():
      continue
    if layer.activation.__name__ == "linear":
      consumers = graph.consumers[op.outputs[0]]
      if not consumers or any(prune.channel_kind(graph, c) != "act"
                              for c in consumers):
        continue
      activations = [c.layer for c in consumers]
    else:
      activations = [layer.activation]
    value = tf.constant(bias[np.newaxis], layer.dtype)
    for activation in activations:
      dead &= np.asarray(activation(value))[0] == 0
      dead &= np.asarray(activation(tf.zeros_like(value)))[0] == 0
    if dead.any():
      weights = layer.get_weights()  # The bias is the last weight.
      weights[-1] = np.where(dead, 0, weights[-1]).astype(weights[-1].dtype)
      layer.set_weights(weights)
      silenced[layer.name] = int(dead.sum())
  return silenced


def prepare_for_export(model, *, atol=0.0):
  """Decodes, folds batch norm and removes zero channels, exactly.

  Args:
    model: A `LilNetXModel` or a plain functional/Sequential Keras model made
      of stock layers (and `ChannelPad`), each called once; functional and
      Sequential models nested in it, at any depth, are inlined
      (`graph.flattened`). Not modified.
    atol: Opt-in approximation: folded weights and biases of magnitude up to
      `atol` count as zero when removing channels (see
      `remove_zero_channels`); verify the outputs when using it.

  Returns:
    `ExportModels` with the dense and the pruned Keras model, whose outputs
    equal `model`'s in inference mode to float32 rounding (with `atol=0`).

  Raises:
    TypeError: If `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: If `model` (or its network) is subclassed.

  Usage:

    exported = prepare_for_export(lilnetx_model)   # or a loaded .lnx model
    print(exported.prune_report.to_dict())          # what was removed
    tflite_bytes = convert(exported.pruned)
  """
  compat.check_keras_model(model)
  plain = plain_model(model)
  if not (compat.is_graph_network(plain) or
          isinstance(plain, keras.Sequential)):
    raise ValueError(
        f"Model {plain.name!r} is subclassed: folding and channel removal "
        "need a functional graph of layer calls, which Keras does not record "
        "for it. Convert it as it is with convert(model) (no folding or "
        "channel removal), or build it with the functional API.")
  dense = fold.fold_batch_norm(graph_lib.flattened(plain))
  silenced = _silence_dead_channels(dense)
  pruned, report = prune.remove_zero_channels(dense, atol=atol)
  return ExportModels(dense=dense, pruned=pruned, prune_report=report,
                      silenced=silenced)


def convert(model, quantize="none", *, sparse=False, representative_data=None,
            int8_io=False):
  """Converts a Keras model to a TFLite flatbuffer.

  Args:
    model: A Keras model with one input (batch dimension free; the TFLite
      model gets batch 1 and can be resized).
    quantize: "none" (float32), "float16" (float16 weights, float32 compute),
      "dynamic" (int8 weights, activations quantized on the fly) or "int8"
      (full integer: weights and activations int8, calibrated on
      `representative_data`).
    sparse: Also apply `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`: weight
      tensors with enough zeros (about 30% or more, the converter decides) are
      stored in TFLite's sparse format and densified at load time (XNNPACK on
      ARM can run eligible models sparse; see `tflite_sparse`).
    representative_data: float32 array [N, ...] of model inputs (normalised
      training examples), required for "int8".
    int8_io: With "int8", make the model's input and output int8 too (for
      integer-only accelerators). The default keeps float32 input and output
      with quantize / dequantize ops at the edges, so the model takes the same
      inputs as the float one.

  Returns:
    The flatbuffer, `bytes`.

  Raises:
    TypeError: If `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: For an unknown `quantize`, missing representative data, or
      `int8_io` without "int8".

  Usage:

    pruned = prepare_for_export(lilnetx_model).pruned
    with open("model.tflite", "wb") as f:
      f.write(convert(pruned))
    int8 = convert(pruned, "int8", representative_data=x_train[:100])
  """
  compat.check_keras_model(model)
  if quantize not in QUANTIZATIONS:
    raise ValueError(f"Unknown quantize {quantize!r}; valid: "
                     f"{', '.join(QUANTIZATIONS)}.")
  if int8_io and quantize != "int8":
    raise ValueError(f"int8_io needs quantize='int8', got {quantize!r}.")
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  optimizations = [] if quantize == "none" else [tf.lite.Optimize.DEFAULT]
  if sparse:
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == "int8":
    if representative_data is None or not len(representative_data):
      raise ValueError("quantize='int8' needs representative_data: model "
                       "inputs from the training set.")
    data = np.asarray(representative_data, np.float32)
    converter.representative_dataset = lambda: ([data[i:i + 1]]
                                                 for i in range(len(data)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
      converter.inference_input_type = tf.int8
      converter.inference_output_type = tf.int8
  with filtered_stderr(_CONVERTER_NOISE):
    return converter.convert()


def _quantize_configs():
  """Returns (NoOpQuantizeConfig class, default 8-bit registry)."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top

  class NoOpQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Leaves a layer float: for layers the 8-bit scheme does not know.

    Their inputs are quantized by their producers, so TFLite still sees
    integer tensors around them (e.g. ChannelPad lowers to an int8 Pad).
    """

    def get_weights_and_quantizers(self, layer):
      return []

    def get_activations_and_quantizers(self, layer):
      return []

    def set_quantize_weights(self, layer, quantize_weights):
      pass

    def set_quantize_activations(self, layer, quantize_activations):
      pass

    def get_output_quantizers(self, layer):
      return []

    def get_config(self):
      return {}

  registry = (tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
              .get_quantize_registry())
  return NoOpQuantizeConfig, registry


def _fuse_relu(model):
  """Moves each plain ReLU layer into the conv / dense layer before it.

  tfmot's 8-bit scheme leaves a kernel layer followed by a ReLU layer without
  weight fake-quantization (its output range moves to the ReLU). With the
  ReLU fused, as TFLite will run it, the kernel is fake-quantized (and
  prune-preserved) during training. ReLU6 stays a layer: tfmot does not
  quantize a fused relu6.
  """
  graph = graph_lib.Graph(model)
  fused = {}  # ReLU op -> its producer.
  for op in graph.ops:
    layer = op.layer
    plain_relu = type(layer) is keras.layers.ReLU and (  # pylint: disable=unidiomatic-typecheck
        layer.max_value is None and not layer.negative_slope
        and not layer.threshold)
    if not plain_relu:
      continue
    tensor = op.inputs[0]
    producer = graph.producer.get(tensor)
    linear = producer is not None and graph_lib.linear_kind(producer.layer)
    if (linear and producer.layer.activation.__name__ == "linear"
        and len(graph.consumers[tensor]) == 1 and tensor not in graph.outputs):
      fused[op] = producer
  producers = set(fused.values())

  def visit(op, args, kwargs):
    if op in fused:
      return args[0]
    updates = {"activation": "relu"} if op in producers else {}
    return graph_lib.call_clone(op.layer, args, kwargs, op.layer.get_weights(),
                       **updates)

  return graph.rebuild(visit)


def _kernel_variables(qat_model):
  """Layer name -> kernel variable of every conv / dense layer of a QAT model.

  The wrapped layer's kernel attribute holds the last fake-quantized tensor;
  the trained values are in the variable.
  """
  kernels = {}
  for layer in qat_model.layers:
    inner = getattr(layer, "layer", layer)  # Unwrap QuantizeWrapper.
    kind = graph_lib.linear_kind(inner)
    if kind is not None:
      attr = {"depthwise": "depthwise_kernel",
              "separable": "pointwise_kernel"}.get(kind, "kernel")
      kernels[inner.name] = next(
          w for w in layer.weights
          if w.name.rsplit("/", 1)[-1].split(":")[0] == attr)
  return kernels


class _KeepZeros(keras.callbacks.Callback):
  """Resets the zero weights of kernels to zero after every training step."""

  def __init__(self, variables):
    super().__init__()
    self._masks = [(v, tf.constant(v.numpy() != 0, v.dtype)) for v in variables]

  def on_train_batch_end(self, batch, logs=None):
    for variable, mask in self._masks:
      variable.assign(variable * mask)


def quantization_aware_finetune(model, x, y, *, epochs, batch_size=64,
                                learning_rate=1e-4, seed=0):
  """Fine-tunes a plain model for int8 with zero weights kept at zero.

  Uses tensorflow-model-optimization's quantization-aware training with
  `Default8BitPrunePreserveQuantizeScheme`: the fake-quantized kernels are
  multiplied by the mask of their nonzero weights. The scheme leaves
  depthwise kernels and kernels followed by a ReLU6 layer out (tfmot does not
  fake-quantize the latter), so after every step their zero weights are reset
  to zero as well: every zero, and so the removed structure, survives. Plain
  ReLU layers are fused into the layer before them first (as in TFLite),
  and layers the 8-bit scheme does not know (e.g. `ChannelPad`) stay float
  during training.

  Args:
    model: Plain Keras model, usually `ExportModels.pruned`. Not modified.
    x: float32 training inputs (normalised).
    y: Integer labels.
    epochs: Fine-tuning epochs (>= 1).
    batch_size: Batch size.
    learning_rate: Adam learning rate.
    seed: Seed of the shuffling and initialisation.

  Returns:
    The quantization-aware Keras model; convert it with
    `convert(qat_model, "int8", representative_data=...)`.

  Raises:
    TypeError: If `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: If `epochs` < 1.
  """
  compat.check_keras_model(model)
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}.")
  quantization = tfmot.quantization.keras
  noop_config, registry = _quantize_configs()
  custom = {}

  def annotate(layer):
    new = type(layer).from_config(layer.get_config())
    if registry.supports(layer):
      return quantization.quantize_annotate_layer(new)
    custom[type(layer).__name__] = type(layer)
    return quantization.quantize_annotate_layer(new, noop_config())

  keras.utils.set_random_seed(seed)
  fused = _fuse_relu(model)
  annotated = keras.models.clone_model(fused, clone_function=annotate)
  annotated.set_weights(fused.get_weights())
  with quantization.quantize_scope(
      {"NoOpQuantizeConfig": noop_config, **custom}):
    qat = quantization.quantize_apply(
        annotated,
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
  qat.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"])
  qat.fit(np.asarray(x, np.float32), np.asarray(y), batch_size=batch_size,
          epochs=epochs, shuffle=True, verbose=0,
          callbacks=[_KeepZeros(_kernel_variables(qat).values())])
  return qat


def zero_weights_kept(model, qat_model):
  """Checks that the zero weights of `model` are still zero after QAT.

  Args:
    model: The plain model `quantization_aware_finetune` started from.
    qat_model: Its result.

  Returns:
    `(kept, total)`: zero kernel weights of `model` that are still exactly
    zero in the corresponding QAT kernel, and all zero kernel weights.
  """
  kernels = {name: variable.numpy()
             for name, variable in _kernel_variables(qat_model).items()}
  kept = total = 0
  for layer in model.layers:
    if graph_lib.linear_kind(layer) is None:
      continue
    zero = graph_lib.kernel_and_bias(layer)[0] == 0
    total += int(zero.sum())
    kept += int((kernels[layer.name][zero] == 0).sum())
  return kept, total
