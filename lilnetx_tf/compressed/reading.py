"""The model of a compressed file's bytes, or a model filled with its weights.

`loaded_model` is what `fileformat.load_compressed` does after reading the
bytes: `sections.parse` checks the whole file, the latents are range decoded
(`codec`) and decoded into kernels (`decode_kernel`), and then either the
file's architecture is rebuilt under a budget of the weights the file holds
and every weight set (`build_model`), or the caller's model is filled by
layer name (`named_weights.fill`, `into=`). The byte layout is in
`lilnetx_tf.compressed.fileformat`; the writing side is `writing`.
"""

import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed import tf_ops
from lilnetx_tf.compressed import writing
from lilnetx_tf.compressed.architecture import keras_custom_objects
from lilnetx_tf.compressed.architecture import without_custom_modules
from lilnetx_tf.compressed.sections import CorruptFileError
from lilnetx_tf.method import named_weights
from lilnetx_tf.method.decoders import decode_kernel

__all__ = ["build_model", "decoded_weights", "loaded_model"]

# The weight indices of the kernels of each layer class a file may code.
_KERNEL_WEIGHTS = {keras.layers.Conv1D: (0,), keras.layers.Conv2D: (0,),
                   keras.layers.DepthwiseConv2D: (0,),
                   keras.layers.SeparableConv2D: (0, 1),
                   keras.layers.Dense: (0,)}
# Variables an architecture may create beyond the weights the file holds.
_WEIGHT_SLACK = 2**16
# What Keras raises on a config it cannot deserialise, from the layers' own
# argument checks to its graph rebuilding: the types that fuzzing the
# architecture (tests/test_fileformat.py) met. `architecture_problem` has
# already refused the configs Keras would loop on or fail an assertion on.
_KERAS_CONFIG_ERRORS = (ValueError, TypeError, IndexError, AttributeError,
                        OverflowError)


def _weight_budget(num_weights, refusals):
  """A variable creator refusing weights beyond `num_weights` elements.

  Each variable is checked before it is allocated, and starts as zeros
  instead of its random initialiser: every weight is overwritten. A refusal
  is a `CorruptFileError`, also appended to `refusals`: Keras re-raises an
  error from inside a layer call (where e.g. MultiHeadAttention makes its
  weights) as a RuntimeError of its own.
  """
  created = 0

  def refuse(reason):
    refusals.append(CorruptFileError("architecture", reason))
    raise refusals[-1]

  def creator(next_creator, **kwargs):
    nonlocal created
    init, dtype = kwargs.get("initial_value"), kwargs.get("dtype")
    if callable(init):
      shape = tf.TensorShape(kwargs.get("shape"))
      if not shape.is_fully_defined():
        refuse(f"it creates a weight of unknown shape {shape}")
      created += shape.num_elements()
      if created > num_weights + _WEIGHT_SLACK:
        refuse(f"it creates more weights than the file holds ({num_weights})")
      if dtype is not None:
        kwargs["initial_value"] = lambda: tf.zeros(shape, dtype)
    return next_creator(**kwargs)

  return creator


def _assign(model, values, kernels):
  """Sets every weight of `model` from `values`, using each value once."""
  layers = writing.weighted_layers(model)
  names = [l.name for l in layers]
  if len(set(names)) != len(names):
    _refuse("the architecture has several layers of the same name")
  missing = {name for name, _ in kernels} - set(names)
  if missing:
    _refuse(f"group layers {sorted(missing)[:5]} are not in the architecture")
  used = 0
  for layer in layers:
    for name, index in kernels:
      if name == layer.name and index not in _KERNEL_WEIGHTS.get(
          type(layer), ()):
        _refuse(f"group layer {layer.name!r} is a {type(layer).__name__}, "
                f"whose weight {index} is not a kernel of a stock kernel layer")
    weights = []
    for index, weight in enumerate(layer.weights):
      value = values.get((layer.name, index))
      if value is None:
        _refuse(f"the file holds no weight {index} ({weight.name}) of layer "
                f"{layer.name!r}")
      if value.shape != tuple(weight.shape):
        _refuse(f"weight {weight.name!r} has shape {value.shape} in the file, "
                f"{tuple(weight.shape)} in the architecture")
      # The file holds float32 values: a weight of another type would not
      # hold them exactly (or at all).
      if weight.dtype != tf.float32:
        _refuse(f"weight {weight.name!r} is {weight.dtype.name} in the "
                "architecture, the file holds float32 weights")
      weights.append(value)
    layer.set_weights(weights)
    used += len(weights)
  if used != len(values):
    _refuse(f"the file holds {len(values) - used} weights the architecture "
            "does not have")


def _refuse(reason):
  raise CorruptFileError("weights", reason)


def decoded_weights(parsed):
  """`(layer name, weight index) -> array` of a parsed file, and its kernels.

  Args:
    parsed: What `sections.parse` returns.

  Returns:
    The dict of every weight (kernels decoded from the latents with their
    group's matrix, float32 arrays) and the set of the kernels'
    `(layer name, weight index)`.

  Raises:
    CorruptFileError: if the range coder reports bad latents.
    coders.CoderUnavailableError: if the file's coder is not installed.
  """
  values = {}
  for g in parsed["groups"]:
    coded = g["coded"]
    with sections.reading(f"latents[{coded.group}]", (codec.DecodeError,)):
      latents = codec.decompress_latents([coded])
    for name, index in zip(coded.layers, g["weights"]):
      values[(name, index)] = decode_kernel(latents[name], g["matrix"]).numpy()
  for p, value in zip(parsed["header"]["float_params"], parsed["floats"]):
    values[(p["layer"], p["index"])] = value
  return values, {(n, i) for g in parsed["groups"]
                  for n, i in zip(g["coded"].layers, g["weights"])}


def build_model(parsed, custom_objects=None):
  """The plain Keras model of a parsed file, with its decoded weights.

  Args:
    parsed: What `sections.parse` returns, for a file with an architecture.
    custom_objects: The caller's classes and functions, as
      `fileformat.load_compressed` takes them.

  Returns:
    The functional or Sequential `keras.Model`.

  Raises:
    CorruptFileError: if the architecture makes more weights than the file
      holds, is not a model, or its weights differ from the file's.
    coders.CoderUnavailableError: if the file's coder is not installed.
    MissingCustomObjectError: if `custom_objects` lacks a name of the file.
  """
  header, groups = parsed["header"], parsed["groups"]
  coders.require(header["coder"])  # Before Keras builds anything.
  # Only the caller's objects, under the names the file uses.
  objects = keras_custom_objects(header["architecture"], custom_objects)
  num_weights = (sum(g["coded"].num_latents for g in groups) +
                 sum(a.size for a in parsed["floats"]))
  config = tf_ops.with_ellipses(without_custom_modules(header["architecture"]))
  refusals = []
  try:
    with tf.variable_creator_scope(_weight_budget(num_weights, refusals)):
      with sections.reading("architecture", _KERAS_CONFIG_ERRORS):
        model = keras.layers.deserialize(config, custom_objects=objects)
  except Exception:  # pylint: disable=broad-except
    if refusals:  # Whatever Keras made of it.
      raise refusals[0] from None
    raise
  if not isinstance(model, keras.Model):
    raise CorruptFileError("architecture", f"it describes a "
                           f"{type(model).__name__}, not a model")
  _assign(model, *decoded_weights(parsed))
  return model


def loaded_model(data, into, source, custom_objects=None):
  """The model of a file's bytes, or `into` filled with its weights.

  Args:
    data: The file's bytes.
    into: None, or the plain model to fill (`named_weights.fill`).
    source: What the bytes are, for messages ("file 'model.lnx'").
    custom_objects: As `build_model`'s.

  Returns:
    The model built from the file's architecture, or `into`.

  Raises:
    ValueError: for a weights-only file without `into`; and what
      `build_model` and `named_weights.fill` raise.
  """
  parsed = sections.parse(data)
  if into is not None:
    coders.require(parsed["header"]["coder"])
    return named_weights.fill(into, *decoded_weights(parsed), source)
  if parsed["header"]["architecture"] is None:
    raise ValueError(
        f"{source[0].upper()}{source[1:]} holds weights only (saved with "
        "weights_only=True), no architecture: build the model in code and "
        "pass it, load_compressed(path, into=model).")
  return build_model(parsed, custom_objects)
