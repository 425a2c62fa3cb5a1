"""A user's own classes and functions in a `.lnx` architecture.

A file names a class (a layer, an initializer, ...) or a function (an
activation) of the user's by the name Keras registers it under,
`keras.utils.register_keras_serializable(package="myapp")`
(`keras.saving.register_keras_serializable` in tf-keras): "myapp>MyLayer".
It never names its module, so that loading a file cannot import anything.
Saving stores the registered objects the model is made of, checked against
Keras's registry (`registered_in`); loading rebuilds only the ones the caller
passes as `custom_objects`, a dict from name to class or function whose keys
are, as for Keras, registered names ("myapp>MyLayer") or plain ones
("MyLayer"; `resolve`). `architecture.architecture_problem` checks every
such name with the rest of the architecture (`reference_problem`); a file
naming one the caller did not pass raises `MissingCustomObjectError`.

The package "lilnetx_tf" is the library's: its names are no custom objects
(`architecture` allows the ones a file may hold, e.g. `lilnetx_tf>ChannelPad`).
"""

import types

from lilnetx_tf import compat
from lilnetx_tf.compat import keras

__all__ = ["LIBRARY_PACKAGE", "MissingCustomObjectError", "reference_problem",
           "registered_in", "resolve"]

LIBRARY_PACKAGE = "lilnetx_tf"
_REGISTER = ("register it with @keras.utils.register_keras_serializable("
             "package=...) to store it, and pass it in custom_objects to load "
             "it")


class MissingCustomObjectError(ValueError):
  """A file names a class or function of the user's that was not passed.

  The message names it and says what to pass as `custom_objects`. The file
  is not damaged: it loads with them.
  """


def _is_registered_name(name):
  package, _, rest = name.partition(">")
  return bool(package and rest) and ">" not in rest


def resolve(custom_objects, registered, plain):
  """The object `custom_objects` gives for a name, or None.

  Args:
    custom_objects: The caller's dict.
    registered: The registered name ("myapp>MyLayer").
    plain: The class's name, or the function's name without its package.
  """
  if registered in custom_objects:
    return custom_objects[registered]
  return custom_objects.get(plain)


def reference_problem(kind, registered, plain, custom_objects, used):
  """Why a config may not name a user's class or function, or None.

  Args:
    kind: "class", "function", or "object" (a name in a string, which Keras
      looks up as either).
    registered: The name Keras looks it up by.
    plain: The class's name, or the function's name without its package.
    custom_objects: None: only the name is checked (a file that is parsed
      but not loaded); else the objects allowed (`resolve` reads them).
    used: A dict that gets `registered: object` for what is allowed.
  """
  if not _is_registered_name(registered):
    return (f"{kind} {registered[:100]!r} is not a stock Keras {kind} and is "
            f"not registered: {_REGISTER}")
  if registered.partition(">")[0] == LIBRARY_PACKAGE:
    return (f"{kind} {registered[:100]!r} is not one of the library's objects "
            "a file may name")
  if custom_objects is None:
    return None
  obj = resolve(custom_objects, registered, plain)
  if obj is None:
    return (f"{kind} {registered!r} is not a stock Keras {kind}; pass "
            f"custom_objects={{{registered!r}: {plain}}} to load_compressed")
  if (kind == "class" and not (isinstance(obj, type) and
                               obj.__name__ == plain) or
      kind == "function" and (isinstance(obj, type) or not callable(obj))):
    return (f"custom_objects gives {obj!r} for {kind} {registered!r}, which "
            f"is {'the class' if kind == 'class' else 'the function'} "
            f"{plain!r}")
  registry = keras.utils.get_registered_object(registered)
  if registry is not None and registry is not obj:
    # Keras looks names up in its registry before the objects it is given.
    return (f"{kind} {registered!r} is registered in Keras as {registry!r}, "
            f"not as the {obj!r} in custom_objects")
  used[registered] = obj
  return None


def registered_in(model):
  """The custom objects a model may be stored with: Keras's registry, checked.

  Every class and function a layer is made of (its class, its attributes'
  classes, its functions such as its activation) that has a registered name
  must be what the registry holds under that name, the object the file will
  be loaded with.

  Returns:
    A copy of the registry: registered name -> object.

  Raises:
    ValueError: if a registered name resolves to another object (e.g. a class
      defined and registered again under the same name).
  """
  registry = dict(keras.utils.get_custom_objects())
  for layer in compat.flatten_layers(model):
    parts = [type(layer)] + [
        value if isinstance(value, types.FunctionType) else type(value)
        for value in vars(layer).values()]
    for part in parts:
      name = keras.utils.get_registered_name(part)
      if _is_registered_name(name) and registry.get(name) is not part:
        raise ValueError(
            f"Cannot store model {model.name!r}: layer {layer.name!r} uses "
            f"{part!r}, registered as {name!r}, but Keras's registry holds "
            f"{registry.get(name)!r} under that name (registered again?); "
            "rebuild the model with the registered one.")
  return registry
