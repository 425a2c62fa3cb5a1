"""How Keras rebuilds a model config's layer graph, replayed to check it.

Keras rebuilds a functional model by calling each layer once the nodes its
inputs come from exist, and retries the calls it cannot make yet without end:
a reference to a node that is never made (a wrong node index, a cycle) makes
it loop forever, and some malformed node data fails an assertion or leaves a
variable unset. `graph_problem` replays its bookkeeping on the config, before
Keras sees it (`architecture.architecture_problem`); `sequential_problem`
checks the shape of a Sequential model's config.
"""

import collections

__all__ = ["MODELS", "graph_problem", "sequential_problem"]

# The model classes a config may nest.
MODELS = ("Functional", "Sequential", "Model")
# What Keras writes in a node's inputs for a constant instead of a tensor.
_CONSTANT_INPUT = "_CONSTANT_VALUE"


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
  if entry.get("class_name") not in MODELS:
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


def sequential_problem(config):
  """Why Keras could not rebuild a Sequential model's config, or None.

  Keras reads a config without a name as the list of layers, and then fails
  on a variable it never set.
  """
  if not (isinstance(config, dict) and "name" in config and
          isinstance(config.get("layers"), list) and
          all(isinstance(entry, dict) for entry in config["layers"])):
    return "a Sequential model's config is not a name and a list of layers"
  return None


def graph_problem(config):
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
