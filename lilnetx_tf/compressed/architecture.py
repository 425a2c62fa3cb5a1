"""The architecture a compressed model file may name: an allow-list.

A `.lnx` file stores its architecture as a Keras model config, which Keras
deserialises by importing the modules and looking up the names it contains.
Before that happens, `architecture_problem` checks that every object is a
stock Keras class under its own module, or one of the library's own layers
named by its registered Keras name (`lilnetx_tf>ChannelPad`), that no class
holds code, calls functions by name or reads files, and that strings Keras
resolves by name (activations, initializers, ...) are built-in names.

The library's own classes are identified by registered name only: files store
them without a module (`without_custom_modules`), and a module stored by
older files (`lilnetx_tf.models.layers`, where `ChannelPad` used to live) is
ignored and dropped before Keras sees the config, so moving a class never
breaks a shipped file and a file can never make Keras import a module.
"""

import copy
import functools

import tensorflow as tf

from lilnetx_tf import channel_pad

__all__ = ["MAX_LAYERS", "architecture_problem", "without_custom_modules"]

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
# The library's own classes: registered Keras name -> class.
_CUSTOM = {tf.keras.utils.get_registered_name(cls): cls
           for cls in (channel_pad.ChannelPad,)}


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
  if isinstance(registered, str) and registered in _CUSTOM:
    ok = name == _CUSTOM[registered].__name__ and (
        module is None or isinstance(module, str))
  elif name in _MODELS:
    ok = module in _MODEL_MODULES and registered in (None, name)
  elif name in _stock_classes():
    ok = module in (None, _stock_classes()[name]) and registered in (None, name)
  else:
    return (f"class {name[:100]!r} is not allowed (only stock Keras classes "
            f"and {', '.join(sorted(_CUSTOM))})")
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


def without_custom_modules(config):
  """A copy of a model config whose library classes name no module.

  Keras finds those classes by their registered name; the module path, which
  changes when code moves, is neither stored nor read.
  """
  config = copy.deepcopy(config)
  stack = [config]
  while stack:
    obj = stack.pop()
    if isinstance(obj, dict):
      if isinstance(obj.get("registered_name"), str) and (
          obj["registered_name"] in _CUSTOM):
        obj.pop("module", None)
      stack.extend(obj.values())
    elif isinstance(obj, list):
      stack.extend(obj)
  return config
