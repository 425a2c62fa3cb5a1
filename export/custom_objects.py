"""`--custom_objects`: the user's own Keras classes and functions, for the CLIs.

A model made of the user's own layers or functions (activations, ...) is
stored with them named by the name they are registered under,
`keras.utils.register_keras_serializable(package="myapp")`, and loads only
with them passed as `custom_objects`; the library never imports a module a
file names. These CLIs import the modules the user names,

  python -m export.tflite --compressed=model.lnx --custom_objects=myapp.layers

(importable from the working directory or `PYTHONPATH`; a comma-separated
list for several), and pass every Keras object registered from code in
them, or in modules below them, as `custom_objects`.
"""

import importlib
import sys

from absl import flags

from lilnetx_tf.compat import keras

__all__ = ["CUSTOM_OBJECTS", "custom_objects"]

CUSTOM_OBJECTS = flags.DEFINE_list(
    "custom_objects", [], "Python modules (comma-separated, e.g. "
    "myapp.layers) defining the model's own layers and functions, "
    "registered with keras.utils.register_keras_serializable: the CLI "
    "imports them and loads the model with every Keras object registered "
    "from code in them (or in modules below them) as custom_objects.")


def custom_objects():
  """Imports the flag's modules; returns their registered Keras objects.

  Returns:
    Registered name ("myapp>MyLayer") -> class or function, for each one
    whose code is in a named module or below it.
  """
  names = CUSTOM_OBJECTS.value
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      sys.exit(f"error: --custom_objects={name}: {e} (run from the folder "
               "that holds it, or add that folder to PYTHONPATH)")
  found = {}
  for key, obj in keras.utils.get_custom_objects().items():
    module = getattr(obj, "__module__", None) or ""
    if any(module == n or module.startswith(n + ".") for n in names):
      found[key] = obj
  if names and not found:
    sys.exit(f"error: --custom_objects={','.join(names)} registers no Keras "
             "object: decorate the classes and functions with "
             "@keras.utils.register_keras_serializable(package=...)")
  return found
