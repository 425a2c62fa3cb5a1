"""The architecture a compressed model file may name: an allow-list.

A `.lnx` file stores its architecture as a Keras model config, which Keras
deserialises by importing the modules and looking up the names it contains.
Before that happens, `architecture_problem` checks that every object is a
stock Keras class under its own module (or `lilnetx_tf>ChannelPad`), that no
class holds code, calls functions by name or reads files, and that strings
Keras resolves by name (activations, initializers, ...) are built-in names.
"""

import functools

import tensorflow as tf

__all__ = ["MAX_LAYERS", "architecture_problem"]

# Far above any real model; keeps a hostile header from making readers loop.
MAX_LAYERS = 20_000

# Classes that hold code, call TF functions by name or read files on load.
_REFUSED = {
    "Lambda": "Lambda layers hold Python code",
    "TFOpLambda": "TF op layers call functions by name",
    "SlicingOpLambda": "TF op layers call functions by name",
    "StringLookup": "lookup layers may read vocabulary files",
    "IntegerLookup": "lookup layers may read vocabulary files",
    "TextVectorization": "lookup layers may read vocabulary files",
    "DenseFeatures": "feature columns may hold functions",
}
# Config keys whose string values Keras looks up by name, registered custom
# objects included: only built-in names (identifiers) are allowed.
_LOOKUP_SUFFIXES = ("activation", "_initializer", "_regularizer",
                    "_constraint")
_MODELS = ("Functional", "Sequential", "Model")
_MODEL_MODULES = (None, "keras", "keras.models")
_NON_LAYER_MODULES = ("keras.initializers", "keras.regularizers",
                      "keras.constraints", "keras.mixed_precision")
# Custom classes: class name -> (module, registered name).
_CUSTOM = {"ChannelPad": ("lilnetx_tf.models.layers", "lilnetx_tf>ChannelPad")}


@functools.lru_cache(maxsize=None)
def _stock_classes():
  """Class name -> module name of the allowed stock Keras classes."""
  allowed = {"Policy": "keras.mixed_precision"}
  for module, namespace, base in (
      ("keras.layers", tf.keras.layers, tf.keras.layers.Layer),
      ("keras.initializers", tf.keras.initializers,
       tf.keras.initializers.Initializer),
      ("keras.regularizers", tf.keras.regularizers,
       tf.keras.regularizers.Regularizer),
      ("keras.constraints", tf.keras.constraints,
       tf.keras.constraints.Constraint)):
    for name in dir(namespace):
      obj = getattr(namespace, name)
      if (isinstance(obj, type) and issubclass(obj, base) and
          name not in _REFUSED and not issubclass(obj, tf.keras.Model)):
        allowed[name] = module
  return allowed


def _class_problem(obj):
  name, module = obj["class_name"], obj.get("module")
  registered = obj.get("registered_name")
  if not isinstance(name, str):
    return f"class name {str(name)[:100]} is not a string"
  if name in _REFUSED:
    return f"class {name!r} is refused: {_REFUSED[name]}"
  if name in _CUSTOM:
    ok = (module, registered) == _CUSTOM[name]
  elif name in _MODELS:
    ok = module in _MODEL_MODULES and registered in (None, name)
  elif name in _stock_classes():
    ok = module in (None, _stock_classes()[name]) and registered in (None, name)
  else:
    return (f"class {name[:100]!r} is not allowed (only stock Keras classes "
            "and lilnetx_tf>ChannelPad)")
  if not ok:
    return (f"class {name!r} comes with module {str(module)[:100]!r} and "
            f"registered name {str(registered)[:100]!r}, not allowed for it")
  return None


def architecture_problem(config):
  """Why a Keras model config may not be deserialised, or None if it may.

  Every object with a `class_name` must be an allowed class under its own
  module (Keras imports the module an object names), and objects named by a
  string (activations, initializers, ...) must be built-in names.
  """
  if not (isinstance(config, dict) and config.get("class_name") in _MODELS):
    return "the architecture is not a Keras model config"
  stack, layers = [config], 0
  while stack:
    obj = stack.pop()
    if isinstance(obj, dict):
      if "class_name" in obj:
        problem = _class_problem(obj)
        if problem:
          return problem
        layers += obj.get("module") not in _NON_LAYER_MODULES
        if layers > MAX_LAYERS:
          return f"more than {MAX_LAYERS} layers"
      for key, value in obj.items():
        if (isinstance(value, str) and isinstance(key, str) and
            key.endswith(_LOOKUP_SUFFIXES) and not value.isidentifier()):
          return f"{key} {value[:100]!r} is not a built-in name"
      stack.extend(obj.values())
    elif isinstance(obj, list):
      stack.extend(obj)
  return None
