"""Conversions between plain Keras models and LilNetX models.

`compressible` turns a plain Keras model into a `LilNetXModel` (training form:
latents); `decompressed_model` turns a `LilNetXModel` back into a plain Keras
model whose kernels are the decoded integer latents (decompressed form).
Functional and Sequential models are copied layer by layer; a subclassed
model, whose architecture is code that no copy can be built from, is
converted in place (`subclassed`), and its plain form is a model the user
builds in code, which `decompressed_model(model, into=...)` fills
(`named_weights`).
"""

import dataclasses

from absl import logging
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf.method.layers import LATENT_LAYERS
from lilnetx_tf.method.layers import LatentKernel
from lilnetx_tf.method.layers import LatentSeparableConv2D
from lilnetx_tf.method import named_weights
from lilnetx_tf.method import subclassed
from lilnetx_tf.method.model import LilNetXModel

__all__ = ["compressible", "decompressed_model", "ConversionReport"]

# Layers with kernels that LilNetX does not (yet) represent as latents.
_KERNEL_ATTRS = ("kernel", "depthwise_kernel", "pointwise_kernel",
                 "embeddings")
# Kernel regularizers and constraints: the latents' own terms replace them.
_KERNEL_PENALTIES = tuple(f"{kernel}_{kind}" for kernel in (
    "kernel", "depthwise", "pointwise") for kind in ("regularizer",
                                                     "constraint"))


@dataclasses.dataclass
class ConversionReport:
  """What `compressible` converted.

  Attributes:
    converted: Names of the layers now holding latent kernels.
    skipped: Layer name -> reason, for layers with kernels left as they are.
    dropped: Layer name -> kernel regularizer / constraint dropped (the latent
      weight decay and sparsity priors act instead).
    renamed: Path of a layer in the user's model ("base/conv1": model names
      down to the layer's) -> its name in the LilNetX model, for the layers
      of nested models renamed because another layer had their name
      (`_unique_layer_names`).
  """
  converted: list
  skipped: dict
  dropped: dict
  renamed: dict = dataclasses.field(default_factory=dict)


def _to_latent_class(layer):
  for base, latent_cls in LATENT_LAYERS:
    if type(layer) is base:  # pylint: disable=unidiomatic-typecheck
      return latent_cls
  return None


def _unique_layer_names(model):
  """New names for the weighted layers whose name another one took first.

  A `.lnx` file and a `LilNetXModel` find a weight by its layer's name, and
  nested models may repeat names (two `keras.applications` bases both have
  a `conv1`; a user's head may name a layer as a base does). Level by level
  (the outer model's layers first, then those of the models it holds, in
  layer order), a layer whose name an earlier one took gets the name of the
  model holding it as a prefix, as `lilnetx_tf.deploy.graph.flattened` does
  (numbered when that is taken too). Names of models and of layers without
  weights are kept.

  Args:
    model: A Sequential or functional Keras model.

  Returns:
    A dict: id of a layer to rename -> (its path, "base/conv1"; its new name).
  """
  existing = {l.name for l in compat.flatten_layers(model)}
  taken, seen, renamed = set(), set(), {}
  queue = [(model, "")]
  while queue:
    net, path = queue.pop(0)
    for layer in net.layers:
      if id(layer) in seen:
        continue
      seen.add(id(layer))
      if isinstance(layer, keras.Model):
        queue.append((layer, f"{path}{layer.name}/"))
        continue
      if not layer.weights:
        continue
      name, i = layer.name, 1
      while name in taken or (name != layer.name and name in existing):
        name = f"{net.name}_{layer.name}" + (f"_{i}" if i > 1 else "")
        i += 1
      if name != layer.name:
        renamed[id(layer)] = (f"{path}{layer.name}", name)
      taken.add(name)
  return renamed


def _is_graph(model):
  return isinstance(model, keras.Sequential) or compat.is_graph_network(model)


def _clone(model, clone_function):
  if not _is_graph(model):
    raise ValueError(
        f"Model {model.name!r} is a subclassed Keras model inside a "
        "functional or Sequential one, which LilNetX does not convert: "
        "convert the subclassed model itself (compressible converts it in "
        "place), or build it with the functional API.")
  return keras.models.clone_model(model, clone_function=clone_function)


def _converted_in_place(model, clone_function, skip, report):
  """A subclassed `model` itself, its kernel layers replaced by latent ones.

  A functional or Sequential model it holds is replaced by its converted
  copy (`clone_function`); subclassed models and the user's layers it holds
  are walked into.
  """

  def replace(layer):
    if isinstance(layer, keras.Model):
      return None if subclassed.walks_into(layer) else clone_function(layer)
    if _to_latent_class(layer) is None or layer.name in skip:
      if any(hasattr(layer, a) for a in _KERNEL_ATTRS):
        report.skipped[layer.name] = (
            "skipped on request" if layer.name in skip else
            f"{type(layer).__name__} has no latent counterpart")
      return None
    if not layer.built:  # No shape to build its latents with.
      report.skipped[layer.name] = "never called by the model"
      return None
    return clone_function(layer)

  subclassed.replace_layers(model, replace)
  return model


def compressible(model, *, init_from_weights=False, skip=(), **kwargs):
  """Makes a plain Keras model compressible with LilNetX.

  Every `Conv1D`, `Conv2D`, `DepthwiseConv2D`, `SeparableConv2D` and `Dense`
  layer becomes its latent counterpart (same configuration); every other
  layer is kept as it is. Shared layers, nested models and multiple
  inputs/outputs are preserved; a layer of a nested model whose name another
  layer has is renamed (prefixed with its model's name; reported in
  `conversion.renamed`), since kernels are stored by layer name. The
  `trainable` flags (a frozen base) and the call arguments (`base(x,
  training=False)`) are kept. Layers with kernels that cannot be converted
  (e.g. `Conv3D`, `SeparableConv1D`, transposed convolutions, subclasses of
  the stock layers) are left as they are and reported.

  A subclassed model is converted in place: `model` itself becomes the
  network of the returned `LilNetXModel`, its stock kernel layers replaced by
  latent ones where it holds them (attributes, lists and dicts, in the
  layers and subclassed models it holds, at any depth; not in tuples), built
  for the input shapes the old ones were; its other layers are its own, kept
  with their weights. A functional or Sequential model it holds is replaced
  by its converted copy. Its plain form is the model as the user's code
  builds it: `save_compressed(..., weights_only=True)` and
  `load_compressed(path, into=model)`, or `decompressed_model(lilnetx,
  into=model)`.

  Args:
    model: A built Sequential, functional or subclassed `keras.Model` (a
      subclassed one is modified).
    init_from_weights: Start the latents from the model's current weights
      (fine-tuning a pretrained model into compressed form); all other layers'
      weights are copied too. Otherwise latents get a fresh LilNetX init and
      the other layers keep fresh initial weights.
    skip: Names of layers to leave uncompressed (every layer of the name, in
      any nested model).
    **kwargs: Passed to `LilNetXModel` (lambda_rate, lambda_sparsity, ...).

  Returns:
    A `LilNetXModel`; its `conversion` attribute is a `ConversionReport`.

  Raises:
    TypeError: if `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: if the model is unbuilt, or has no layer to convert; for
      a subclassed model, if a layer to convert is held in a tuple.

  Usage:

    model = lilnetx_tf.compressible(keras_model, lambda_rate=2.0,
                                    lambda_sparsity=1e-4,
                                    sparsity_structure="slice+out_channel")
    print(model.conversion.converted, model.conversion.skipped)
  """
  compat.check_keras_model(model)
  if not model.built:
    raise ValueError(f"Model {model.name!r} must be built before conversion.")
  skip = set(skip)
  unknown = skip - {l.name for l in compat.flatten_layers(model)}
  if unknown:
    raise ValueError(f"Layers to skip not in the model: {sorted(unknown)}.")
  report = ConversionReport(converted=[], skipped={}, dropped={})
  renamed = _unique_layer_names(model)
  pairs = []

  def clone_function(layer):
    if isinstance(layer, keras.Model):
      return _clone(layer, clone_function)
    latent_cls = _to_latent_class(layer)
    config = layer.get_config()
    if id(layer) in renamed:
      path, config["name"] = renamed[id(layer)]
      report.renamed[path] = config["name"]
    name = config["name"]
    if latent_cls is not None and layer.name not in skip:
      dropped = [k for k in _KERNEL_PENALTIES if config.get(k) is not None]
      for k in dropped:
        config[k] = None
      if dropped:
        report.dropped[name] = dropped
      new = latent_cls.from_config(config)
      report.converted.append(name)
    else:
      if any(hasattr(layer, a) for a in _KERNEL_ATTRS):
        report.skipped[name] = (
            "skipped on request" if layer.name in skip else
            f"{type(layer).__name__} has no latent counterpart")
      new = layer.__class__.from_config(config)
    pairs.append((layer, new))
    return new

  if _is_graph(model):
    network = _clone(model, clone_function)
  else:
    network = _converted_in_place(model, clone_function, skip, report)
  if not report.converted:
    raise ValueError(f"Model {model.name!r} has no Conv1D, Conv2D, "
                     "DepthwiseConv2D, SeparableConv2D or Dense layer to "
                     "convert.")
  lilnetx = LilNetXModel(network, initialize=not init_from_weights,
                         name=f"lilnetx_{model.name}", **kwargs)
  if init_from_weights:
    kernels = {}
    for old, new in pairs:
      if isinstance(new, LatentKernel):
        weights = old.get_weights()
        kernels[new.name] = weights[0]
        for var, value in zip(new.weights[1:], weights[1:]):
          var.assign(value)
      elif isinstance(new, LatentSeparableConv2D):
        weights = old.get_weights()  # depthwise, pointwise[, bias]
        kernels[new.depthwise_layer.name] = weights[0]
        kernels[new.pointwise_layer.name] = weights[1]
        if new.use_bias:
          new.bias_variable.assign(weights[2])
      elif old.weights and not isinstance(old, keras.Model):
        new.set_weights(old.get_weights())
    lilnetx.initialize_latents(kernels)
  lilnetx.conversion = report
  for name, reason in report.skipped.items():
    logging.warning("LilNetX: layer %r not converted: %s.", name, reason)
  for path, name in report.renamed.items():
    logging.warning("LilNetX: layer %r renamed %r (its name is taken).",
                    path, name)
  logging.vlog(1, "LilNetX: converted %d layers.", len(report.converted))
  return lilnetx


def decompressed_model(model, *, into=None):
  """A plain Keras model with the decoded weights of a `LilNetXModel`.

  Args:
    model: A `LilNetXModel`.
    into: Optional: a built plain model to fill instead of building one, the
      network's plain form as the user's code builds it (stock `Conv2D`,
      `Dense`, ... layers where the network has latent ones); needed for a
      subclassed network. Its weights are matched by layer name and checked
      (`named_weights.fill`).

  Returns:
    A new functional/Sequential `keras.Model` with the stock layers of the
    latent layers, whose kernels are the decoded rounded latents, and all
    other weights copied; or `into`, filled with the same weights. Its
    outputs equal the LilNetX model's in inference mode.

  Raises:
    TypeError: if `model` is not a `LilNetXModel`, or `into` is not a plain
      Keras model.
    ValueError: for a subclassed network without `into`, or an `into` whose
      layers differ from the network's.
  """
  if not isinstance(model, LilNetXModel):
    raise TypeError(f"Expected a LilNetXModel, got {type(model).__name__}.")
  if into is not None:
    values = {(layer.name, index): value
              for layer, plain in named_weights.plain_entries(model.network)
              for index, value in enumerate(plain)}
    return named_weights.fill(into, values,
                              {l.kernel_ref for l in model.latent_layers},
                              f"LilNetX model {model.name!r}")
  if not _is_graph(model.network):
    raise ValueError(
        f"LilNetX model {model.name!r} has a subclassed network "
        f"({type(model.network).__name__}), whose architecture is code: "
        "build its plain form in code (stock Conv2D, Dense, ... layers where "
        "it has latent ones) and pass it as decompressed_model(model, "
        "into=plain).")
  plain_of = {latent_cls: base for base, latent_cls in LATENT_LAYERS}
  pairs = []

  def clone_function(layer):
    if isinstance(layer, keras.Model):
      return _clone(layer, clone_function)
    config = layer.get_config()
    if type(layer) in plain_of:  # pylint: disable=unidiomatic-typecheck
      config.pop("latent_initializer")
      new = plain_of[type(layer)].from_config(config)
    else:
      new = layer.__class__.from_config(config)
    pairs.append((layer, new))
    return new

  plain = _clone(model.network, clone_function)
  for old, new in pairs:
    if isinstance(old, LatentKernel):
      # The bias the op uses: on its grid, if the model has one.
      new.set_weights([old.decoded_kernel().numpy()] +
                      ([old.bias.numpy()] if old.use_bias else []))
    elif isinstance(old, LatentSeparableConv2D):
      new.set_weights([old.depthwise_kernel.numpy(),
                       old.pointwise_kernel.numpy()] +
                      ([old.bias.numpy()] if old.use_bias else []))
    elif old.weights and not isinstance(old, keras.Model):
      new.set_weights(old.get_weights())
  return plain
