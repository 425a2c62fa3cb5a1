"""Replacing the layers of a subclassed Keras model, in the model itself.

A subclassed model's architecture is its Python code: no copy of it can be
built from a config, as `keras.models.clone_model` builds one of a
functional or Sequential model. `replace_layers` instead puts the new layers
where the model holds the old ones: its attributes, the lists and dicts in
them, and the same in the layers and subclassed models it holds, at any
depth (the places Keras tracks, which its checkpoints name:
`tf.train.TrackableView`). The model's `call` then uses the new layers.
"""

import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

__all__ = ["replace_layers", "walks_into"]

# The compiled functions of a model, traced on the layers it held then.
_TRACED = ("train_function", "test_function", "predict_function",
           "train_tf_function")


def walks_into(layer):
  """Whether the layers `layer` holds are replaced one by one.

  Stock layers (a `Bidirectional` and its wrapped layer) and functional or
  Sequential models (whose layers a graph of calls holds, not attributes)
  are replaced whole, or kept.
  """
  stock = getattr(keras.layers, type(layer).__name__, None) is type(layer)
  return not stock and not compat.is_graph_network(layer) and not isinstance(
      layer, keras.Sequential)


def _held(view, holder):
  """`(key, value)` of what `holder` holds: by attribute, index or key."""
  if isinstance(holder, keras.layers.Layer):
    return list(view.children(holder).items())
  if isinstance(holder, dict):
    return list(holder.items())
  return list(enumerate(holder))


def _check_place(holder, key, old, model):
  """Raises unless `old` can be replaced where `holder` holds it."""
  if isinstance(holder, keras.layers.Layer):
    if getattr(holder, key, None) is not old:
      raise ValueError(
          f"Model {model.name!r}: layer {old.name!r} is tracked by "
          f"{holder.name!r} as {key!r}, which is not an attribute holding "
          "it; hold the layer in an attribute, a list or a dict to convert "
          "it.")
  elif isinstance(holder, tuple):
    raise ValueError(
        f"Model {model.name!r}: layer {old.name!r} is held in a tuple, which "
        "cannot change; hold it in a list or an attribute to convert it.")


def _put(holder, key, new):
  if isinstance(holder, keras.layers.Layer):
    setattr(holder, key, new)
  else:
    holder[key] = new


def replace_layers(model, replace):
  """Replaces, in place, the layers a subclassed model holds.

  Args:
    model: A built subclassed `keras.Model`; modified.
    replace: Called once per distinct layer found: returns its (unbuilt or
      built) replacement, or None to keep it. A kept layer that is neither a
      stock Keras layer nor a functional or Sequential model is walked into.
      A replacement is built for the input shape the old layer was built
      for.

  Returns:
    The `(old, new)` layer pairs, in the order found.

  Raises:
    ValueError: if a layer to replace is held in a tuple, or was never built
      (then the model is left as it was).
  """
  view = tf.train.TrackableView(model)
  new_of, pairs, visited, places = {}, [], set(), []

  def visit(holder):
    if id(holder) in visited:
      return
    visited.add(id(holder))
    for key, value in _held(view, holder):
      if isinstance(value, keras.layers.Layer):
        if id(value) not in new_of:
          new = new_of[id(value)] = replace(value)
          if new is not None:
            if not new.built:
              config = value.get_build_config()
              if config is None:
                raise ValueError(
                    f"Model {model.name!r}: layer {value.name!r} was never "
                    "built; call the model on an input first.")
              new.build_from_config(config)
              # What a first call does after `build`: record the shape.
              keras.layers.Layer.build(new, config["input_shape"])
            pairs.append((value, new))
          elif walks_into(value):
            visit(value)
        if new_of[id(value)] is not None:
          places.append((holder, key, value))
      elif isinstance(value, (list, tuple, dict)):  # Keras wraps them.
        visit(value)

  visit(model)
  for holder, key, old in places:  # Every place first: all or nothing.
    _check_place(holder, key, old, model)
  for holder, key, old in places:
    _put(holder, key, new_of[id(old)])
  for name in _TRACED:  # Traced on the old layers: trace again.
    if getattr(model, name, None) is not None:
      setattr(model, name, None)
  return pairs
