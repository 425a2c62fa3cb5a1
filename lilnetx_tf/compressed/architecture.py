"""The architecture a compressed model file may name: an allow-list.

A `.lnx` file stores its architecture as a Keras model config, which Keras
deserialises by importing the modules and looking up the names it contains.
Before that happens, `architecture_problem` checks that every object is a
stock Keras class under its own module, or one of the library's own layers
named by its registered Keras name (`lilnetx_tf>ChannelPad`), that no class
holds code, calls functions by name or reads files, and that strings Keras
resolves by name (activations, initializers, ...) are built-in names. It
also replays how Keras rebuilds a functional model's layer graph, which loops
forever on a reference to a node that is never made (`_graph_problem`).

The library's own classes are identified by registered name only: files store
them without a module (`without_custom_modules`), and a module stored by
older files (`lilnetx_tf.models.layers`, where `ChannelPad` used to live) is
ignored and dropped before Keras sees the config, so moving a class never
breaks a shipped file and a file can never make Keras import a module.
"""

import collections
import copy
import functools

from lilnetx_tf.compat import keras

from lilnetx_tf import channel_pad

__all__ = ["MAX_DEPTH", "MAX_LAYERS", "architecture_problem",
           "compact_architecture", "with_layer_names", "without_custom_modules",
           "without_layer_names"]

# Far above any real model; keeps a hostile header from making readers loop.
MAX_LAYERS = 20_000
# Nesting of the config's JSON: a model is 8 deep, each nested model adds 4.
# Keeps Keras's recursive deserialisation far from Python's stack limit.
MAX_DEPTH = 64
# What Keras writes in a node's inputs for a constant instead of a tensor.
_CONSTANT_INPUT = "_CONSTANT_VALUE"

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
_CUSTOM = {keras.utils.get_registered_name(cls): cls
           for cls in (channel_pad.ChannelPad,)}


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


def _is_ref(value):
  """Whether Keras reads `value`, in a node's data, as a tensor reference."""
  return (isinstance(value, list) and len(value) in (3, 4) and
          isinstance(value[0], str))


def _is_index(value):
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _node_refs(node, names):
  """The `(layer, node index)` a node's layer call waits for.

  Returns:
    `(refs, problem)`: the references, or the reason Keras could not read
    them (then `refs` is None).
  """
  refs, inputs, stack = [], 0, [(node, False)]
  while stack:
    value, in_kwargs = stack.pop()
    if _is_ref(value):
      inputs += not in_kwargs
      if len(value) == 4:
        stack.append((value[3], True))
      if value[0] == _CONSTANT_INPUT and not in_kwargs:
        if value[1] != -1 or isinstance(value[1], (bool, float)):
          return None, "a constant input is not marked as Keras marks it"
        continue
      if value[0] not in names or not _is_index(value[2]):
        return None, f"a node refers to {str(value)[:100]}"
      # A keyword argument's tensor index out of range makes Keras wait for
      # it forever, and a layer's number of outputs is not in its config:
      # only first outputs are passed as keyword arguments here.
      if in_kwargs and value[2] != 0:
        return None, (f"a node passes output {value[2]} of layer "
                      f"{value[0][:100]!r} as a keyword argument")
      refs.append((value[0], value[1]))
    elif isinstance(value, (list, dict)):
      items = value if isinstance(value, list) else value.values()
      stack.extend((item, in_kwargs) for item in items)
    elif not in_kwargs:  # Keras reads every other input as a reference.
      return None, f"a node's inputs hold {str(value)[:100]}"
  if not inputs:
    return None, "a node calls a layer on no inputs"
  return refs, None


def _first_node(entry):
  """The config index of a layer's first node, or a problem (a string).

  Keras numbers the nodes of a nested model from 1 when it starts with an
  input layer (its node 0 links its own input to its output); the config
  alone says so only for nested models that start with one, as saved models
  do.
  """
  if entry.get("class_name") not in _MODELS:
    return 0
  config = entry.get("config")
  if not isinstance(config, dict):
    config = {}
  layers = config.get("layers")
  functional = entry["class_name"] == "Sequential" or (
      "input_layers" in config and "output_layers" in config)
  if not (isinstance(layers, list) and layers and functional and
          isinstance(layers[0], dict) and
          layers[0].get("class_name") == "InputLayer"):
    return (f"nested model {str(entry.get('name'))[:100]!r} does not start "
            "with an input layer")
  return 1


def _sequential_problem(config):
  """Why Keras could not rebuild a Sequential model's config, or None.

  Keras reads a config without a name as the list of layers, and then fails
  on a variable it never set.
  """
  if not (isinstance(config, dict) and "name" in config and
          isinstance(config.get("layers"), list) and
          all(isinstance(entry, dict) for entry in config["layers"])):
    return "a Sequential model's config is not a name and a list of layers"
  return None


def _graph_problem(config):
  """Why Keras could not rebuild a functional model's layer graph, or None.

  Keras calls each layer once the nodes its inputs come from exist, and
  retries the calls that cannot be made yet without end: a reference to a
  node that is never made (a wrong node index, a cycle) makes it loop
  forever. This replays its bookkeeping on the config: the nodes each layer
  makes, in the order they can be made, and that every reference is made.
  """
  layers = config.get("layers") if isinstance(config, dict) else None
  if not (isinstance(layers, list) and
          all(isinstance(entry, dict) for entry in layers)):
    return "a functional model's `layers` is not a list of layers"
  # The config index of each layer's first node (None: an input layer, whose
  # one node any index means).
  first = {}
  for entry in layers:
    name, inner = entry.get("name"), entry.get("config")
    if not (isinstance(name, str) and name and isinstance(inner, dict) and
            inner.get("name") == name) or name in first:
      return f"layer {str(name)[:100]!r} is repeated or not named as its config"
    first[name] = None if entry.get("class_name") == "InputLayer" else (
        _first_node(entry))
    if isinstance(first[name], str):
      return first[name]
  waiting = {}  # Per layer, the references of each node still to make.
  for entry in layers:
    name, nodes = entry["name"], entry.get("inbound_nodes")
    if not isinstance(nodes, list) or nodes and first[name] is None:
      return f"layer {name[:100]!r} has invalid inbound nodes"
    waiting[name] = collections.deque()
    for node in nodes:
      refs, problem = _node_refs(node, first)
      if problem:
        return problem
      waiting[name].append(refs)
  made = dict.fromkeys(first, 0)

  def is_made(layer, index):
    if first[layer] is None:
      return True
    return _is_index(index) and 0 <= index - first[layer] < made[layer]

  # Event driven, linear in the references: a layer whose next node waits for
  # a node is woken when that node is made, and goes on from the reference
  # it stopped at (what is made stays made).
  blocked, queue = {}, [name for name in waiting if waiting[name]]
  checked = dict.fromkeys(first, 0)
  while queue:
    layer = queue.pop()
    nodes = waiting[layer]
    while nodes:
      refs = nodes[0]
      while checked[layer] < len(refs) and is_made(*refs[checked[layer]]):
        checked[layer] += 1
      if checked[layer] < len(refs):
        missing = refs[checked[layer]]
        if _is_index(missing[1]):  # Any other index is never made.
          blocked.setdefault(missing, []).append(layer)
        break
      nodes.popleft()
      checked[layer] = 0
      made[layer] += 1
      queue.extend(blocked.pop((layer, first[layer] + made[layer] - 1), ()))
  stuck = [name for name, nodes in waiting.items() if nodes]
  if stuck:
    return (f"layer {stuck[0][:100]!r} is called on a node that is never "
            "made (a cycle, or a wrong node index)")
  for key in ("input_layers", "output_layers"):
    stack = [config.get(key)]
    while stack:
      value = stack.pop()
      if isinstance(value, list) and not _is_ref(value):
        stack.extend(value)
      elif not (_is_ref(value) and len(value) == 3 and value[0] in first and
                is_made(value[0], value[1]) and _is_index(value[2])):
        return f"{key} holds {str(value)[:100]}, not a node that is made"
  return None


def architecture_problem(config):
  """Why a Keras model config may not be deserialised, or None if it may.

  Every object with a `class_name` must be an allowed class under its own
  module (Keras imports the module an object names), objects named by a
  string (activations, initializers, ...) must be built-in names, and the
  layer graph of every functional model must be one Keras can rebuild.
  """
  if not (isinstance(config, dict) and config.get("class_name") in _MODELS):
    return "the architecture is not a Keras model config"
  stack, layers = [(config, 0)], 0
  while stack:
    obj, depth = stack.pop()
    if depth > MAX_DEPTH:
      return f"nested more than {MAX_DEPTH} deep"
    if isinstance(obj, dict):
      if "class_name" in obj:
        problem = _class_problem(obj)
        if problem:
          return problem
        layers += obj.get("module") not in _NON_LAYER_MODULES
        if layers > MAX_LAYERS:
          return f"more than {MAX_LAYERS} layers"
        if obj["class_name"] in ("Functional", "Model"):
          problem = _graph_problem(obj.get("config"))
        elif obj["class_name"] == "Sequential":
          problem = _sequential_problem(obj.get("config"))
        if problem:
          return problem
      for key, value in obj.items():
        if (isinstance(value, str) and isinstance(key, str) and
            key.endswith(_LOOKUP_SUFFIXES) and not value.isidentifier()):
          return f"{key} {value[:100]!r} is not a built-in name"
      stack.extend((value, depth + 1) for value in obj.values())
    elif isinstance(obj, list):
      stack.extend((value, depth + 1) for value in obj)
  return None


def without_custom_modules(config):
  """A copy of a model config whose library classes and models name no module.

  Keras finds those classes by their registered name, and nested models by
  their class name; the module path, which changes when code moves (Keras
  2.14's `keras.src.engine.functional` is tf-keras' `tf_keras.src...`), is
  neither stored nor read.
  """
  config = copy.deepcopy(config)
  stack = [config]
  while stack:
    obj = stack.pop()
    if isinstance(obj, dict):
      if isinstance(obj.get("registered_name"), str) and (
          obj["registered_name"] in _CUSTOM or
          obj.get("class_name") in _MODELS and
          obj["registered_name"] == obj["class_name"]):
        obj.pop("module", None)
      stack.extend(obj.values())
    elif isinstance(obj, list):
      stack.extend(obj)
  return config


def _layer_class(entry):
  registered = entry.get("registered_name")
  if isinstance(registered, str) and registered in _CUSTOM:
    return _CUSTOM[registered]
  return getattr(keras.layers, entry["class_name"])


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
  if "module" in entry and (
      entry["module"] == _stock_classes().get(entry["class_name"])):
    del entry["module"]
  if "registered_name" in entry and entry["registered_name"] is None:
    del entry["registered_name"]
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
  module and empty registered name, and in functional models the layers'
  `build_config`.

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
