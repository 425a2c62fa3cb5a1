"""The TensorFlow ops a `.lnx` architecture may call: an allow-list of names.

A TensorFlow function called on a symbolic Keras tensor (`x * 0.5`,
`tf.nn.relu6(x)`, `tf.concat([a, b], -1)`) becomes a `TFOpLambda` layer, and
indexing (`x[:, 1:]`) a `SlicingOpLambda` one. Their config names the
function by its public TensorFlow API name (`function`: "math.multiply",
"nn.relu6", "__operators__.getitem"), and Keras rebuilds the layer by looking
that name up in TensorFlow's table of exported symbols
(`tf_export.get_symbol_from_name`, a dict from API name to symbol: no import,
no attribute walk). The call's other arguments are JSON constants in the
layer's node (`{"y": 0.5}`, `{"axis": -1}`, slices as
`{"start", "stop", "step"}` dicts, `...` as `{"class_name": "__ellipsis__"}`).

`op_layer_problem` lets such a layer into a file only when its function is
one of `TF_OPS`: Keras then resolves a fixed, known name to the pure tensor
function TensorFlow exports under it, which reads nothing but its arguments;
no other name ever reaches the lookup. The names are what Keras 2.14 and
tf-keras 2.21 record for the common calls (`tf.transpose` is recorded as
"compat.v1.transpose", `tf.nn.swish` as "nn.silu", `x + y` as
"__operators__.add"), and what `keras.applications` models hold
(MobileNetV3's hard swish: "math.add" or "__operators__.add" and
"math.multiply"; ConvNeXt's and RegNet's residuals: "__operators__.add").
Any other op is refused with what to do instead: a registered custom layer.
"""

import functools

from lilnetx_tf.compat import keras

__all__ = ["ELEMENTWISE_OPS", "ELLIPSIS", "OP_LAYERS", "TF_OPS",
           "op_layer_class", "op_layer_problem", "with_ellipses"]

# The layer classes Keras records TensorFlow calls as.
OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
# How Keras's JSON writes `...` in a slice.
ELLIPSIS = {"class_name": "__ellipsis__"}
_SLICE_KEYS = {"start", "stop", "step"}
_GETITEM = "__operators__.getitem"
# Ops whose output element is a function of the same element of their
# tensor arguments (and scalar constants): arithmetic and activations.
ELEMENTWISE_OPS = frozenset([
    "__operators__.add", "math.add", "math.subtract", "math.multiply",
    "math.truediv", "math.divide", "math.negative", "math.pow",
    "math.square", "math.sqrt", "math.rsqrt", "math.abs", "math.exp",
    "math.log", "math.maximum", "math.minimum", "clip_by_value",
    "nn.relu", "nn.relu6", "nn.leaky_relu", "nn.elu", "nn.gelu", "nn.silu",
    "math.sigmoid", "math.tanh", "math.softplus", "identity",
])
# The elementwise ops, softmax, shapes, joining, slicing, reductions and
# resizing: tensor functions of their arguments alone.
TF_OPS = ELEMENTWISE_OPS | frozenset([
    "nn.softmax", "reshape", "transpose", "compat.v1.transpose", "expand_dims", "squeeze",
    "compat.v1.squeeze", "nn.depth_to_space",
    "nn.space_to_depth", "pad", "compat.v1.pad",
    "concat", "stack",
    _GETITEM,
    "math.reduce_mean", "math.reduce_sum", "math.reduce_max",
    "math.reduce_min",
    "image.resize",
])
# The config keys Keras writes for an op layer. Other `Layer` arguments
# (`weights`, `dynamic`, `input_shape`, `activity_regularizer`, ...) have no
# use on an op and are not let in.
_CONFIG_KEYS = {"name", "trainable", "dtype", "function"}


@functools.lru_cache(maxsize=None)
def op_layer_class(name):
  """The class `name` (one of `OP_LAYERS`): Keras exports neither by name."""
  probe = {"name": "probe", "function": "identity"}
  return type(keras.layers.deserialize({"class_name": name, "config": probe}))


def _slices_problem(nodes):
  """Why a SlicingOpLambda's node data holds a dict Keras cannot slice with.

  Keras turns the dicts among a call's arguments into `slice`s by their
  three keys (a `KeyError` on any other dict): each dict there but a call's
  keyword arguments (a tensor reference's fourth item) must be a slice or
  `ELLIPSIS`.
  """
  stack = [(nodes, False)]
  while stack:
    value, is_kwargs = stack.pop()
    if isinstance(value, list):
      call = (len(value) == 4 and isinstance(value[0], str) and
              isinstance(value[3], dict))
      stack.extend((item, call and i == 3) for i, item in enumerate(value))
    elif isinstance(value, dict):
      if not is_kwargs and value != ELLIPSIS and set(value) != _SLICE_KEYS:
        return f"a slice holds {str(value)[:100]}"
      stack.extend((item, False) for item in value.values())
  return None


def op_layer_problem(entry):
  """Why a `TFOpLambda` / `SlicingOpLambda` entry may not be rebuilt, or None.

  Args:
    entry: A layer entry of a model config whose `class_name` is one of
      `OP_LAYERS` (its `module`, which differs between Keras versions, is
      not read: `architecture.without_custom_modules` drops it).
  """
  name, config = entry["class_name"], entry.get("config")
  if not isinstance(config, dict):
    return f"layer class {name} has no config"
  function = config.get("function")
  if not isinstance(function, str):
    return f"layer class {name} names no TensorFlow function"
  if function not in TF_OPS:
    return (f"TensorFlow op {function[:100]!r} (a {name} layer) is not among "
            "the ops a file may call (lilnetx_tf.compressed.tf_ops.TF_OPS): "
            "build the model from stock Keras layers, or wrap the op in a "
            "custom layer registered with "
            "keras.utils.register_keras_serializable and pass it as "
            "custom_objects to load the file")
  if (function == _GETITEM) != (name == "SlicingOpLambda"):
    return (f"TensorFlow op {function!r} is a {name} layer: Keras records "
            f"indexing, and only indexing, as SlicingOpLambda")
  extra = set(config) - _CONFIG_KEYS
  if extra:
    return (f"op layer {str(config.get('name'))[:100]!r} has arguments "
            f"{sorted(map(str, extra))[:5]}, op layers take none")
  if name == "SlicingOpLambda":
    return _slices_problem(entry.get("inbound_nodes"))
  return None


def with_ellipses(config):
  """Gives back `...` wherever Keras's JSON wrote it as `ELLIPSIS`, in place.

  `keras.models.model_from_json` decodes it as it parses the JSON; a file's
  architecture goes to Keras as parsed data, so the loader does it here.

  Returns:
    `config`.
  """
  stack = [config]
  while stack:
    obj = stack.pop()
    items = (enumerate(obj) if isinstance(obj, list) else
             obj.items() if isinstance(obj, dict) else ())
    for key, value in items:
      if value == ELLIPSIS:
        obj[key] = Ellipsis
      else:
        stack.append(value)
  return config
