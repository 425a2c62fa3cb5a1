"""A model's weights by layer name, in the plain (decompressed) form.

What a weights-only `.lnx` file stores and `load_compressed(path,
into=model)` fills: the weights of each layer under the layer's name, with
no architecture. A model whose architecture is code (a subclassed
`keras.Model`, or a model with layers of the user's own classes) is built in
code, then filled from a file (`load_compressed`) or from a `LilNetXModel`
(`decompressed_model(model, into=...)`).

The layers are those `weighted_layers` finds, in the model and in every
layer and model it holds, at any depth (attributes, lists and dicts of a
subclassed model, nested models): a stock Keras layer, a latent layer and a
layer that holds no other layer are one entry each, with all their weights
(as in a functional model's `layers`); any other layer (a model, a user's
layer holding layers) is walked into, and the weights it makes itself
(`add_weight`) are its own entry. A latent layer's weights are given in the
order of its stock counterpart, decoded (`plain_values`), so that a latent
network and its plain form have the same entries.
"""

import collections

import numpy as np
import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf.method.layers import LatentKernel
from lilnetx_tf.method.layers import LatentSeparableConv2D

__all__ = ["fill", "kernel_indices", "plain_entries", "plain_values",
           "weighted_layers"]

# How many missing or extra layer names an error lists.
_SHOWN = 8


def _is_stock(layer):
  """Whether `layer` is of a class of `keras.layers` itself."""
  return getattr(keras.layers, type(layer).__name__, None) is type(layer)


def weighted_layers(model):
  """`(layer, weights)` of every entry holding weights, each layer once.

  Args:
    model: A Keras model (or layer), plain or of latent layers.

  Returns:
    A list in tracking order (the model's own weights first, then its
    layers depth first); `weights` are the layer's variables of the entry
    (see the module docstring).
  """
  entries, covered = [], set()
  for layer in compat.flatten_layers(model):
    if id(layer) in covered:
      continue
    inner = compat.flatten_layers(layer, include_self=False)
    if not isinstance(layer, keras.Model) and (
        not inner or _is_stock(layer) or
        isinstance(layer, (LatentKernel, LatentSeparableConv2D))):
      covered.update(id(l) for l in inner)
      weights = layer.weights
    else:
      held = {id(w) for l in inner for w in l.weights}
      weights = [w for w in layer.weights if id(w) not in held]
    if weights:
      entries.append((layer, weights))
  return entries


def plain_values(layer, weights):
  """The values of an entry's weights as its plain layer holds them.

  A latent layer's are its stock counterpart's: the decoded kernel(s), then
  the bias the op uses (on its grid); any other layer's are its weights'.

  Args:
    layer: A layer of `weighted_layers`.
    weights: Its weights there.

  Returns:
    A list of NumPy arrays.
  """
  if isinstance(layer, LatentKernel):
    kernels = [layer.decoded_kernel()]
  elif isinstance(layer, LatentSeparableConv2D):
    kernels = [layer.depthwise_kernel, layer.pointwise_kernel]
  else:
    return [w.numpy() for w in weights]
  return [np.asarray(k) for k in kernels] + (
      [layer.bias.numpy()] if layer.use_bias else [])


def _refuse_repeated(entries, model):
  counts = collections.Counter(layer.name for layer, _ in entries)
  repeated = sorted(n for n, count in counts.items() if count > 1)
  if repeated:
    raise ValueError(f"Model {model.name!r} has several layers named "
                     f"{repeated[:_SHOWN]}; weights are stored and matched "
                     "by layer name: give them distinct names.")


def plain_entries(network):
  """`(layer, plain values)` of every entry of `network`'s plain form.

  Args:
    network: A network of latent layers (a `LilNetXModel`'s), or a plain
      model.

  Returns:
    The list, in `weighted_layers` order, the values as `plain_values`.

  Raises:
    ValueError: if two entries have the same layer name.
  """
  entries = weighted_layers(network)
  _refuse_repeated(entries, network)
  return [(layer, plain_values(layer, weights)) for layer, weights in entries]


def kernel_indices(layer):
  """The weight indices of a plain layer's kernels that LilNetX codes."""
  if isinstance(layer, keras.layers.SeparableConv2D):
    return (0, 1)
  if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D,
                        keras.layers.Dense)):  # DepthwiseConv2D included.
    return (0,)
  return ()


def _names_hint(missing, extra):
  return (" (Keras numbers the names of layers made without `name=` in the "
          "order a process makes them, so that a second instance of a class "
          "gets other names: give the layers names)"
          if missing and extra else "")


def fill(model, values, kernels, source):
  """Sets every weight of a plain model by layer name; all or nothing.

  Args:
    model: A built Keras model of stock layers (the decompressed form), e.g.
      a subclassed model built in code; modified in place.
    values: `(layer name, weight index)` -> float32 array, every weight of
      every layer.
    kernels: The `(layer name, weight index)` of the coded kernels: each must
      be a kernel of a Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D or
      Dense layer of `model`.
    source: What the values come from, for messages ("file 'model.lnx'").

  Returns:
    `model`.

  Raises:
    TypeError: if `model` is not a Keras 2 model, or holds latent layers.
    ValueError: if it is not built, or its layers, weight counts, shapes or
      dtypes differ from `values`' (the message names the layer and both).
  """
  compat.check_keras_model(model, "model to load into")
  latent = [l.name for l in compat.flatten_layers(model)
            if isinstance(l, (LatentKernel, LatentSeparableConv2D))]
  if latent:  # A LilNetXModel among them.
    raise TypeError(
        f"Cannot fill model {model.name!r} from {source}: it holds latent "
        f"layers ({', '.join(latent[:_SHOWN])}); give the plain model (stock "
        "Conv2D, Dense, ... layers), then lilnetx_tf.compressible(model, "
        "init_from_weights=True) to train it further.")
  if not model.built:
    raise ValueError(f"Model {model.name!r} is not built: call it on an "
                     f"input (or build it) before filling it from {source}.")
  entries = weighted_layers(model)
  _refuse_repeated(entries, model)
  names = [layer.name for layer, _ in entries]
  counts = collections.Counter(name for name, _ in values)
  missing = sorted(set(counts) - set(names))
  extra = sorted(set(names) - set(counts))
  if missing or extra:
    raise ValueError(
        f"Model {model.name!r} does not have the layers of {source}: "
        f"layers of {source} not in the model: {missing[:_SHOWN]}; layers "
        f"of the model not in {source}: {extra[:_SHOWN]}"
        f"{_names_hint(missing, extra)}.")
  assignments = []
  for layer, weights in entries:
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    if counts[layer.name] != len(weights):
      raise ValueError(f"{where} has {len(weights)} weights in model "
                       f"{model.name!r}, {counts[layer.name]} in {source}.")
    for index, weight in enumerate(weights):
      value = values.get((layer.name, index))
      if value is None:
        raise ValueError(f"{source} has no weight {index} of {where}.")
      if value.shape != tuple(weight.shape):
        raise ValueError(
            f"{where}: weight {index} ({weight.name}) has shape "
            f"{tuple(weight.shape)} in model {model.name!r}, {value.shape} "
            f"in {source}.")
      if weight.dtype != tf.float32:
        raise ValueError(f"{where}: weight {weight.name} is "
                         f"{weight.dtype.name}; {source} holds float32.")
      if ((layer.name, index) in kernels and
          index not in kernel_indices(layer)):
        raise ValueError(f"{where}: weight {index} is a coded kernel in "
                         f"{source}, which only a Conv1D, Conv2D, "
                         "DepthwiseConv2D, SeparableConv2D or Dense kernel "
                         "can be.")
      assignments.append((weight, value))
  for weight, value in assignments:
    weight.assign(value)
  return model
