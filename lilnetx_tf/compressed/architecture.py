"""The architecture a compressed model file may name: an allow-list.

A `.lnx` file stores its architecture as a Keras model config, which Keras
deserialises by importing the modules and looking up the names it contains.
Before that happens, `architecture_problem` checks that every object is a
stock Keras class under its own module, one of the library's own layers
named by its registered Keras name (`lilnetx_tf>ChannelPad`), one of the
helper layers `keras.applications` models are built of (ConvNeXt's
`LayerScale`, `compat.applications_layers`) by its class name, a TensorFlow
op layer calling one of the allowed ops (`tf_ops`), or a class or function
of the user's named by its registered name and passed by the caller
(`custom_objects`); that no class holds code or reads files; and that
strings Keras resolves by name (activations, initializers, ...) are built-in
names or such registered names. It also replays how Keras rebuilds a
functional model's layer graph, which loops forever on a reference to a node
that is never made (`graph_replay`).

Classes other than stock Keras layers are identified by registered name (op
layers and the applications' layers by class name) only: files store them
without a module (`without_custom_modules`), loading hands the library's and
the applications' classes to Keras as custom objects
(`keras_custom_objects`), and a module stored by older files
(`lilnetx_tf.models.layers`, where `ChannelPad` used to live) is ignored and
dropped before Keras sees the config, so moving a class never breaks a
shipped file and a file can never make Keras import a module.
"""

import collections.abc
import copy
import functools

from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf import channel_pad
from lilnetx_tf.compressed import custom_objects as custom_objects_lib
from lilnetx_tf.compressed import graph_replay
from lilnetx_tf.compressed import tf_ops

__all__ = ["MAX_DEPTH", "MAX_LAYERS", "architecture_problem",
           "compact_architecture", "keras_custom_objects", "with_layer_names",
           "without_custom_modules", "without_layer_names"]

# Far above any real model; keeps a hostile header from making readers loop.
MAX_LAYERS = 20_000
# Nesting of the config's JSON: a model is 8 deep, each nested model adds 4.
# Keeps Keras's recursive deserialisation far from Python's stack limit.
MAX_DEPTH = 64

# Classes that hold code or read files on load.
_REFUSED = {
    "Lambda": "Lambda layers hold Python code",
    "StringLookup": "lookup layers may read vocabulary files",
    "IntegerLookup": "lookup layers may read vocabulary files",
    "TextVectorization": "lookup layers may read vocabulary files",
    "DenseFeatures": "feature columns may hold functions",
}
# Config keys whose string values Keras looks up by name, registered custom
# objects included: only built-in names (identifiers) and the custom objects
# allowed.
_LOOKUP_SUFFIXES = ("activation", "_initializer", "_regularizer",
                    "_constraint")
_MODELS = graph_replay.MODELS
_MODEL_MODULES = (None, "keras", "keras.models")
_NON_LAYER_MODULES = ("keras.initializers", "keras.regularizers",
                      "keras.constraints", "keras.mixed_precision")
# The library's own classes: registered Keras name -> class.
_CUSTOM = {keras.utils.get_registered_name(cls): cls
           for cls in (channel_pad.ChannelPad,)}


@functools.lru_cache(maxsize=None)
def _applications():
  """Class name -> class of the `keras.applications` helper layers."""
  return compat.applications_layers()


def _applications_class(name, module, registered):
  """The applications' class an entry names, or None.

  It goes by its class name and Keras's registered name for it (ConvNeXt's
  `LayerScale` is unregistered, Inception-ResNet-V2's `CustomScaleLayer` is
  `Custom>CustomScaleLayer`): a user's class of that name registered in a
  package of their own is theirs. A module other than the class's own
  (files store none) is a user's class of the same name, not this one.
  """
  cls = _applications().get(name)
  if cls is None or registered not in (
      None, name, keras.utils.get_registered_name(cls)):
    return None
  return cls if module in (None, cls.__module__) else False


@functools.lru_cache(maxsize=None)
def _stock_classes():
  """Class name -> module name of the allowed stock Keras classes."""
  allowed = {"Policy": "keras.mixed_precision"}
  for module, namespace, base in (
      ("keras.layers", keras.layers, keras.layers.Layer),
      ("keras.initializers", keras.initializers,
       keras.initializers.Initializer),
      ("keras.regularizers", keras.regularizers,
       keras.regularizers.Regularizer),
      ("keras.constraints", keras.constraints,
       keras.constraints.Constraint)):
    for name in dir(namespace):
      obj = getattr(namespace, name)
      if (isinstance(obj, type) and issubclass(obj, base) and
          name not in _REFUSED and not issubclass(obj, keras.Model)):
        allowed[name] = module
  return allowed


def _class_problem(obj, custom_objects, used):
  """Why a config object with a `class_name` may not be rebuilt, or None.

  Stock names always mean the stock classes; any other class, and any
  function, is the user's and goes by its registered name
  (`custom_objects_lib.reference_problem`, which adds it to `used`).
  """
  name, module = obj["class_name"], obj.get("module")
  registered = obj.get("registered_name")
  if not isinstance(name, str):
    return f"class name {str(name)[:100]} is not a string"
  if name in _REFUSED:
    return f"class {name!r} is refused: {_REFUSED[name]}"
  any_module = module is None or isinstance(module, str)  # Dropped unread.
  applications = _applications_class(name, module, registered)
  if isinstance(registered, str) and registered in _CUSTOM:
    ok = name == _CUSTOM[registered].__name__ and any_module
  elif applications is False:
    return (f"class {name!r} comes with module {str(module)[:100]!r}: it is "
            "the name of a keras.applications layer, which files name "
            "without a module; rename the class, or register it with "
            "keras.utils.register_keras_serializable(package=...)")
  elif applications is not None:
    key = registered or name  # What Keras looks the class up by.
    if keras.utils.get_registered_object(key) not in (None, applications):
      return (f"class {key!r} (a keras.applications layer) is registered in "
              f"Keras as {keras.utils.get_registered_object(key)!r}; "
              "register your class under a package of your own")
    used[key] = applications
    return None
  elif name in _MODELS:
    ok = module in _MODEL_MODULES and registered in (None, name)
  elif name in tf_ops.OP_LAYERS:
    ok = any_module and registered in (None, name)
    if ok:
      return tf_ops.op_layer_problem(obj)
  elif name in _stock_classes():
    ok = module in (None, _stock_classes()[name]) and registered in (None, name)
  elif name == "function":
    function = obj.get("config")
    ok = (isinstance(function, str) and any_module and
          registered in (None, "function"))
    if ok:
      return custom_objects_lib.reference_problem(
          "function", function, function.rpartition(">")[2], custom_objects,
          used)
  else:
    registered = name if registered is None else registered  # As Keras.
    ok = isinstance(registered, str) and name.isidentifier() and any_module
    if ok:
      return custom_objects_lib.reference_problem(
          "class", registered, name, custom_objects, used)
  if not ok:
    return (f"class {name[:100]!r} comes with module {str(module)[:100]!r} "
            f"and registered name {str(registered)[:100]!r}, not allowed for "
            "it" + (" (a stock Keras class name: rename the class)"
                    if name in _stock_classes() and isinstance(registered, str)
                    and ">" in registered else ""))
  return None


def architecture_problem(config, custom_objects=None):
  """Why a Keras model config may not be deserialised, or None if it may.

  Every object with a `class_name` must be an allowed class under its own
  module (Keras imports the module an object names), objects named by a
  string (activations, initializers, ...) must be built-in names, the
  user's classes and functions must be named by their registered names and
  be among `custom_objects`, and the layer graph of every functional model
  must be one Keras can rebuild.

  Args:
    config: The model config, as parsed JSON.
    custom_objects: The user's classes and functions allowed, a dict as
      Keras takes it (name or registered name -> object). None: only their
      names are checked, for a file that is parsed but not built
      (`sections.parse`); loading checks them again with the caller's
      (`keras_custom_objects`).
  """
  return _problem(config, custom_objects, {})


def keras_custom_objects(config, custom_objects):
  """The custom objects Keras is to deserialise `config` with.

  Args:
    config: A model config that passes `architecture_problem(config)` (every
      file does: `sections.parse` checks it), so that what `custom_objects`
      lacks is all that can be wrong with it.
    custom_objects: The caller's dict, or None.

  Returns:
    Each registered name `config` uses -> the caller's object for it (keyed
    as the config names it, whichever key the caller used), and each
    `keras.applications` helper layer it uses -> its class.

  Raises:
    MissingCustomObjectError: if `config` names a class or function that
      `custom_objects` lacks, or that Keras's registry holds as another one.
    TypeError: if `custom_objects` is not a dict.
  """
  if not isinstance(custom_objects, (collections.abc.Mapping, type(None))):
    raise TypeError("custom_objects must be a dict from name to class or "
                    f"function, got {type(custom_objects).__name__}.")
  used = {}
  problem = _problem(config, custom_objects or {}, used)
  if problem:
    raise custom_objects_lib.MissingCustomObjectError(
        f"Cannot load the model: {problem}.")
  return used


def _problem(config, custom_objects, used):
  if not (isinstance(config, dict) and config.get("class_name") in _MODELS):
    return "the architecture is not a Keras model config"
  stack, layers = [(config, 0)], 0
  while stack:
    obj, depth = stack.pop()
    if depth > MAX_DEPTH:
      return f"nested more than {MAX_DEPTH} deep"
    if isinstance(obj, dict):
      if "class_name" in obj and obj != tf_ops.ELLIPSIS:
        problem = _class_problem(obj, custom_objects, used)
        if problem:
          return problem
        layers += obj.get("module") not in _NON_LAYER_MODULES
        if layers > MAX_LAYERS:
          return f"more than {MAX_LAYERS} layers"
        if obj["class_name"] in ("Functional", "Model"):
          problem = graph_replay.graph_problem(obj.get("config"))
        elif obj["class_name"] == "Sequential":
          problem = graph_replay.sequential_problem(obj.get("config"))
        if problem:
          return problem
      for key, value in obj.items():
        if (isinstance(value, str) and isinstance(key, str) and
            key.endswith(_LOOKUP_SUFFIXES) and not value.isidentifier()):
          problem = custom_objects_lib.reference_problem(
              "object", value, value.rpartition(">")[2], custom_objects, used)
          if problem:
            return f"{key} {problem}"
      stack.extend((value, depth + 1) for value in obj.values())
    elif isinstance(obj, list):
      stack.extend((value, depth + 1) for value in obj)
  return None


def without_custom_modules(config):
  """A copy of a model config where only stock Keras classes name a module.

  Keras finds the library's and the user's classes and functions by their
  registered name, op layers and nested models by their class name; the
  module path, which changes when code moves (Keras 2.14's
  `keras.src.engine.functional` is tf-keras' `tf_keras.src...`), is neither
  stored nor read. A function's is "builtins", as Keras writes it: Keras
  takes a function without one for an old format's.
  """
  config = copy.deepcopy(config)
  stack = [config]
  while stack:
    obj = stack.pop()
    if isinstance(obj, dict):
      name = obj.get("class_name")
      if name == "function":
        obj["module"] = "builtins"
      elif isinstance(name, str) and (
          name not in _MODELS and name not in _stock_classes() and
          _applications_class(name, obj.get("module"),
                              obj.get("registered_name")) is not False or
          name in _MODELS and obj.get("registered_name") == name):
        obj.pop("module", None)
      stack.extend(obj.values())
    elif isinstance(obj, list):
      stack.extend(obj)
  return config


def _layer_class(entry):
  """The class of a layer entry, or None for the user's classes."""
  registered, name = entry.get("registered_name"), entry["class_name"]
  if isinstance(registered, str) and registered in _CUSTOM:
    return _CUSTOM[registered]
  if _applications_class(name, entry.get("module"), registered):
    return _applications()[name]
  if name in tf_ops.OP_LAYERS:
    return tf_ops.op_layer_class(name)
  return getattr(keras.layers, name, None) if name in _stock_classes() else None


def _without_initializers(layer_config):
  # Initial values only: the file overwrites every weight.
  return {k: v for k, v in layer_config.items()
          if not k.endswith("_initializer")}


def _compact_layer(entry, in_functional):
  """`entry` (a layer of a model config) without what Keras rebuilds alone."""
  entry = dict(entry)
  if entry["class_name"] in _MODELS:
    config = dict(entry["config"])
    functional = "input_layers" in config
    config["layers"] = [_compact_layer(e, functional)
                        for e in config["layers"]]
    entry["config"] = config
    return entry
  cls, full = _layer_class(entry), entry["config"]
  if cls is None:
    return _compact_entry(entry, in_functional)
  reference = _without_initializers(
      cls.from_config(copy.deepcopy(full)).get_config())
  kept = _without_initializers(full)
  for key in list(kept):
    if key == "name":
      continue
    trial = {k: v for k, v in kept.items() if k != key}
    try:
      rebuilt = cls.from_config(copy.deepcopy(trial)).get_config()
    except Exception:  # pylint: disable=broad-except
      continue  # A required argument, whatever the class raises for it.
    if _without_initializers(rebuilt) == reference:
      kept = trial
  entry["config"] = kept
  return _compact_entry(entry, in_functional)


def _compact_entry(entry, in_functional):
  """`entry` without its stock module, default registered name, build config.

  The user's classes keep their config whole: what their `from_config`
  makes of a partial one is theirs to say.
  """
  if "module" in entry and (
      entry["module"] == _stock_classes().get(entry["class_name"])):
    del entry["module"]
  if entry.get("registered_name", 0) in (None, entry["class_name"]):
    del entry["registered_name"]  # What Keras reads for none.
  if in_functional:
    # Rebuilding the graph calls, and so builds, every layer.
    entry.pop("build_config", None)
  return entry


def compact_architecture(config):
  """A model config without what Keras rebuilds by itself, for the file.

  Keras writes every argument of every layer (LeNet-5: 4.4 KB of JSON, 715
  bytes deflated, a fifth of the whole file). This drops each argument whose
  absence rebuilds the layer to the same config (the class's defaults:
  regularizers, unit strides, ...; checked one argument at a time with the
  class's own `from_config` and `get_config`, so nothing is assumed about
  defaults), the initializers (the file sets every weight), a stock layer's
  module, a registered name that is empty or the class name (what Keras
  reads for none), and in functional models the layers' `build_config`. The
  user's classes keep their config.

  Args:
    config: A model config (`json.loads(model.to_json())`) that passes
      `architecture_problem`.

  Returns:
    The compact config: `keras.models.model_from_json` of it makes a model
    with the same config as `config`'s, but for default initializers.
  """
  return _compact_layer(config, False)


def _functional_layer_lists(config):
  """The `layers` lists of every functional model in a config, nested too."""
  stack = [config]
  while stack:
    obj = stack.pop()
    if isinstance(obj, dict):
      inner = obj.get("config")
      if (obj.get("class_name") in _MODELS and isinstance(inner, dict) and
          "input_layers" in inner and isinstance(inner.get("layers"), list)):
        yield inner["layers"]
      stack.extend(obj.values())
    elif isinstance(obj, list):
      stack.extend(obj)


def without_layer_names(config):
  """A copy of a model config without its functional layers' entry names.

  Keras writes each layer of a functional model's config with its name twice:
  in the entry, by which the graph's nodes refer to it, and in the layer's
  own config. The entry's copy is a sixth of a deflated ResNet-20 header.
  `with_layer_names` puts it back.
  """
  config = copy.deepcopy(config)
  for layers in _functional_layer_lists(config):
    for entry in layers:
      if entry.get("name") == entry["config"].get("name"):
        del entry["name"]
  return config


def with_layer_names(config):
  """Gives each functional layer entry without a name its config's name.

  Reverses `without_layer_names`, in place. Reads untrusted headers: where
  the config has another shape than Keras's, it is left as it is, for
  `architecture_problem` to refuse.

  Returns:
    `config`.
  """
  for layers in _functional_layer_lists(config):
    for entry in layers:
      if (isinstance(entry, dict) and "name" not in entry and
          isinstance(entry.get("config"), dict) and
          "name" in entry["config"]):
        entry["name"] = entry["config"]["name"]
  return config
