"""What a TFLite flatbuffer stores: sparse weights, XNNPACK sparse inference.

`weight_summary` counts the kernel weights, their zeros and how many tensors
the converter stored in TFLite's sparse format (`--sparse`).

`xnnpack_sparse_eligibility` says whether XNNPACK would run the model with
sparse inference, and why not. XNNPACK's rules (TFLite's XNNPACK README,
"Sparse Inference", and XNNPACK's NCHW rewrite): float32/float16 operators;
some weights stored sparse (DENSIFY ops: only then does TFLite's delegate ask
XNNPACK for sparse inference); the sparse subgraph starts with a 3x3
stride-2 CONV_2D with padding 1 on each side and 3 input channels, contains
only 1x1 stride-1 unpadded CONV_2D, 3x3 / 5x5 DEPTHWISE_CONV_2D (stride 1 or
2, padding k // 2), ADD / MUL of 4-D tensors, elementwise activations and
RESIZE_BILINEAR, and ends in a spatial MEAN; at least 2/3 of the 1x1 CONV_2D
weights are zero. Padding is read from the graph: an explicit PAD before a
VALID convolution (XNNPACK fuses it) or SAME padding on the static shapes.
Measured here: XNNPACK never uses sparse inference on x86 CPUs with AVX, and
the converter stores a tensor sparse only from about 30% zeros.
"""

import collections

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

__all__ = ["PLATFORM_NOTE", "weight_summary", "xnnpack_sparse_eligibility"]

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_")}
_NUMPY_TYPES = {schema.TensorType.FLOAT32: np.float32,
                schema.TensorType.FLOAT16: np.float16,
                schema.TensorType.INT8: np.int8,
                schema.TensorType.UINT8: np.uint8,
                schema.TensorType.INT16: np.int16,
                schema.TensorType.INT32: np.int32,
                schema.TensorType.INT64: np.int64}
_FLOAT_TYPES = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
# Ops that only unpack constant weights.
_WEIGHT_OPS = ("DENSIFY", "DEQUANTIZE")
_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_SPARSE_UNARY = frozenset([
    "ABS", "CEIL", "ELU", "FLOOR", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC",
    "NEG", "RELU", "RELU6", "RELU_N1_TO_1", "ROUND", "SQUARE"])
_SPARSE_FUSED = (schema.ActivationFunctionType.NONE,
                 schema.ActivationFunctionType.RELU,
                 schema.ActivationFunctionType.RELU_N1_TO_1,
                 schema.ActivationFunctionType.RELU6)
_ACTIVATION_NAMES = {v: k for k, v in vars(
    schema.ActivationFunctionType).items() if not k.startswith("_")}
PLATFORM_NOTE = ("XNNPACK never uses sparse inference on x86 CPUs with AVX; on "
                 "ARM it does when the model qualifies (and the interpreter "
                 "uses XNNPACK).")


class _Flatbuffer:
  """The first subgraph of a TFLite model: ops, tensors and constants."""

  def __init__(self, content):
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    subgraph = model.subgraphs[0]
    self.buffers = model.buffers
    self.tensors = subgraph.tensors
    self.ops = []
    self.producer = {}
    self.consumers = collections.defaultdict(list)
    for op in subgraph.operators:
      code = model.operatorCodes[op.opcodeIndex]
      name = _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode),
                           "CUSTOM")
      entry = dict(name=name, options=op.builtinOptions,
                   inputs=[int(i) for i in op.inputs],
                   outputs=[int(i) for i in op.outputs])
      self.ops.append(entry)
      for t in entry["outputs"]:
        self.producer[t] = entry
      for t in entry["inputs"]:
        self.consumers[t].append(entry)

  def shape(self, t):
    return [int(d) for d in self.tensors[t].shape]

  def source(self, t):
    """(tensor holding the data, stored sparse) of a constant, or None."""
    sparse = False
    while True:
      tensor = self.tensors[t]
      sparse |= tensor.sparsity is not None
      data = self.buffers[tensor.buffer].data
      if data is not None and len(data):
        return t, sparse
      op = self.producer.get(t)
      if op is None or op["name"] not in _WEIGHT_OPS:
        return None
      t = op["inputs"][0]

  def zeros(self, t):
    """(zero count, size, stored sparse) of a constant tensor."""
    t_src, sparse = self.source(t)
    tensor = self.tensors[t_src]
    values = np.frombuffer(bytes(self.buffers[tensor.buffer].data),
                           _NUMPY_TYPES.get(tensor.type, np.uint8))
    size = int(np.prod(self.shape(t)))
    # Sparse tensors store their nonzero values (and, in blocks, some zeros).
    zeros = size - len(values) + int(np.sum(values == 0))
    return zeros, size, sparse

  def constant(self, t):
    found = self.source(t)
    if found is None or found[1]:
      return None
    tensor = self.tensors[found[0]]
    return np.frombuffer(bytes(self.buffers[tensor.buffer].data),
                         _NUMPY_TYPES[tensor.type]).reshape(self.shape(t))


def weight_summary(content):
  """Kernel weight tensors of a TFLite model: count, zeros, sparse storage.

  Returns:
    Dict with `tensors`, `stored_sparse` (how many), `weights`, `zeros`.
  """
  graph = _Flatbuffer(content)
  tensors = stored_sparse = weights = zeros = 0
  for op in graph.ops:
    if op["name"] in _KERNEL_OPS and graph.source(op["inputs"][1]):
      z, size, sparse = graph.zeros(op["inputs"][1])
      tensors += 1
      stored_sparse += sparse
      weights += size
      zeros += z
  return dict(tensors=tensors, stored_sparse=stored_sparse, weights=weights,
              zeros=zeros)


def _same_padding(size, kernel, stride):
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _conv_geometry(graph, op):
  """(kh, kw, stride, dilation, padding (t, b, l, r), in channels)."""
  options = op["options"]
  # Filters are (out, kh, kw, in) and depthwise ones (1, kh, kw, out).
  _, kh, kw, cin = graph.shape(op["inputs"][1])
  _, h, w, cin_dw = graph.shape(op["inputs"][0])
  if op["name"] == "DEPTHWISE_CONV_2D":
    cin = cin_dw
  stride = (options.strideH, options.strideW)
  dilation = (options.dilationHFactor, options.dilationWFactor)
  if options.padding == schema.Padding.SAME:
    pad = _same_padding(h, kh, stride[0]) + _same_padding(w, kw, stride[1])
  else:
    pad = (0, 0, 0, 0)
  producer = graph.producer.get(op["inputs"][0])
  if producer is not None and producer["name"] == "PAD":
    explicit = graph.constant(producer["inputs"][1])
    if explicit is not None:
      pad = tuple(int(p) + int(q) for p, q in zip(pad, explicit[1:3].ravel()))
  return kh, kw, stride, dilation, pad, cin


def _describe(kh, kw, stride, pad, cin):
  return (f"{kh}x{kw} stride {stride[0]}x{stride[1]}, padding "
          f"(t, b, l, r) {pad}, {cin} input channels")


def _incompatibility(graph, op):
  """Why `op` cannot run in XNNPACK's sparse (NCHW) subgraph, or None."""
  name = op["name"]
  fused = getattr(op["options"], "fusedActivationFunction", 0)
  if fused not in _SPARSE_FUSED:
    return f"{name} with fused {_ACTIVATION_NAMES.get(fused, fused)}"
  if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
    kh, kw, stride, dilation, pad, cin = _conv_geometry(graph, op)
    if dilation != (1, 1):
      return f"dilated {name}"
    if name == "CONV_2D":
      if (kh, kw) != (1, 1) or stride != (1, 1) or any(pad):
        return f"CONV_2D {_describe(kh, kw, stride, pad, cin)} (only 1x1)"
      return None
    if (kh != kw or kh not in (3, 5) or stride not in ((1, 1), (2, 2))
        or pad != (kh // 2,) * 4):
      return f"DEPTHWISE_CONV_2D {_describe(kh, kw, stride, pad, cin)}"
    return None
  if name == "PAD":
    if all(c["name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
           for c in graph.consumers[op["outputs"][0]]):
      return None  # Fused into the convolution's padding.
    return "PAD not followed by a convolution (e.g. channel padding)"
  if name in ("ADD", "MUL"):
    for t in op["inputs"]:
      shape = graph.shape(t)
      if graph.source(t) is None and len(shape) != 4:
        return f"{name} of a non-4-D tensor"
      if graph.source(t) is not None and sum(d > 1 for d in shape) > 1:
        return f"{name} with a constant that is not a scalar or a vector"
    return None
  if name in _SPARSE_UNARY or name == "RESIZE_BILINEAR":
    return None
  return name


def _spatial_mean(graph, op):
  if op["name"] != "MEAN":
    return False
  axes = graph.constant(op["inputs"][1])
  return axes is not None and sorted(int(a) for a in axes.ravel()) == [1, 2]


def xnnpack_sparse_eligibility(content):
  """Whether XNNPACK would run this TFLite model with sparse inference.

  Args:
    content: The flatbuffer.

  Returns:
    A dict: `qualifies` (on ARM; see `platform`), `reasons` it does not,
    `stem` (the first operator), `ends_in_mean`, `incompatible_ops` (kind ->
    count), `conv1x1_weights`, `conv1x1_zero_fraction`,
    `weights_stored_sparse` (tensors), and `platform`.
  """
  graph = _Flatbuffer(content)
  ops = [op for op in graph.ops if not (
      op["name"] in _WEIGHT_OPS and graph.source(op["outputs"][0]))]
  reasons = []
  report = dict(qualifies=False, reasons=reasons, stem=None,
                ends_in_mean=False, incompatible_ops={}, conv1x1_weights=0,
                conv1x1_zero_fraction=0.0, weights_stored_sparse=0,
                platform=PLATFORM_NOTE)
  kernel_types = set()
  for op in ops:
    if op["name"] in _KERNEL_OPS:
      weights = graph.source(op["inputs"][1]) or (op["inputs"][1],)
      kernel_types |= {graph.tensors[t].type
                       for t in (op["outputs"][0], weights[0])}
  if not kernel_types <= set(_FLOAT_TYPES):
    reasons.append("int8 weights or activations: sparse inference runs "
                   "float32 / float16 models only")
  first = next((i for i, op in enumerate(ops)
                if op["name"] not in ("PAD", "QUANTIZE")), None)
  if first is None:
    reasons.append("no operators")
    return report
  stem = ops[first]
  if stem["name"] != "CONV_2D":
    report["stem"] = stem["name"]
    reasons.append(f"starts with {stem['name']}, not a 3x3 stride-2 CONV_2D")
  else:
    kh, kw, stride, dilation, pad, cin = _conv_geometry(graph, stem)
    report["stem"] = f"CONV_2D {_describe(kh, kw, stride, pad, cin)}"
    if ((kh, kw) != (3, 3) or stride != (2, 2) or dilation != (1, 1)
        or pad != (1, 1, 1, 1) or cin != 3):
      reasons.append(f"starts with {report['stem']}; needs 3x3 stride 2, "
                     "padding 1 on each side, 3 input channels")
  end = next((i for i in range(first + 1, len(ops))
              if _spatial_mean(graph, ops[i])), None)
  report["ends_in_mean"] = end is not None
  if end is None:
    reasons.append("no MEAN over the spatial axes (global average pooling) "
                   "ends the convolutional part")
    end = len(ops)
  incompatible = collections.Counter()
  zeros = size = 0
  for op in ops[first + 1:end]:
    why = _incompatibility(graph, op)
    if why is not None:
      incompatible[why] += 1
    elif op["name"] == "CONV_2D":
      z, n, _ = graph.zeros(op["inputs"][1])
      zeros, size = zeros + z, size + n
  report["incompatible_ops"] = dict(incompatible)
  if incompatible:
    kinds = "; ".join(f"{n} x {why}" for why, n in incompatible.items())
    reasons.append(f"operators sparse inference does not support: {kinds}")
  report["conv1x1_weights"] = size
  report["conv1x1_zero_fraction"] = zeros / size if size else 0.0
  report["weights_stored_sparse"] = sum(op["name"] == "DENSIFY"
                                        for op in graph.ops)
  if not size:
    reasons.append("no 1x1 CONV_2D to run sparse")
  elif zeros < 2 * size / 3:
    reasons.append(f"only {100 * zeros / size:.1f}% of the 1x1 CONV_2D "
                   "weights are zero; needs at least 2/3")
  if not report["weights_stored_sparse"]:
    # The delegate asks XNNPACK for sparse inference only then.
    reasons.append("no weights stored sparse (export with --sparse; the "
                   "converter stores a tensor sparse only from about 30% "
                   "zeros)")
  report["qualifies"] = not reasons
  return report
