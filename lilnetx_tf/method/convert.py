"""Conversions between plain Keras models and LilNetX models.

`compressible` turns a plain Keras model into a `LilNetXModel` (training form:
latents); `decompressed_model` turns a `LilNetXModel` back into a plain Keras
model whose kernels are the decoded integer latents (decompressed form).
"""

import dataclasses

from absl import logging
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf.method.layers import LATENT_LAYERS
from lilnetx_tf.method.layers import LatentKernel
from lilnetx_tf.method.layers import LatentSeparableConv2D
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
  """
  converted: list
  skipped: dict
  dropped: dict


def _to_latent_class(layer):
  for base, latent_cls in LATENT_LAYERS:
    if type(layer) is base:  # pylint: disable=unidiomatic-typecheck
      return latent_cls
  return None


def _clone(model, clone_function):
  if not isinstance(model, (keras.Sequential, keras.Model)) or not (
      isinstance(model, keras.Sequential) or compat.is_graph_network(model)):
    raise ValueError(
        f"Model {model.name!r} is a subclassed Keras model; LilNetX converts "
        "Sequential and functional models (build yours with the functional "
        "API, or use LatentConv2D/LatentDense in it and wrap it in "
        "LilNetXModel).")
  return keras.models.clone_model(model, clone_function=clone_function)


def compressible(model, *, init_from_weights=False, skip=(), **kwargs):
  """Makes a plain Keras model compressible with LilNetX.

  Every `Conv1D`, `Conv2D`, `DepthwiseConv2D`, `SeparableConv2D` and `Dense`
  layer becomes its latent counterpart (same configuration); every other
  layer is kept as it is. Shared layers, nested models and multiple
  inputs/outputs are preserved. Layers with kernels that cannot be converted
  (e.g. `Conv3D`, `SeparableConv1D`, transposed convolutions, subclasses of
  the stock layers) are left as they are and reported.

  Args:
    model: A built Sequential or functional `keras.Model`.
    init_from_weights: Start the latents from the model's current weights
      (fine-tuning a pretrained model into compressed form); all other layers'
      weights are copied too. Otherwise latents get a fresh LilNetX init and
      the other layers keep fresh initial weights.
    skip: Names of layers to leave uncompressed.
    **kwargs: Passed to `LilNetXModel` (lambda_rate, lambda_sparsity, ...).

  Returns:
    A `LilNetXModel`; its `conversion` attribute is a `ConversionReport`.

  Raises:
    TypeError: if `model` is not a Keras 2 model (a Keras 3 one, say).
    ValueError: if the model is subclassed, unbuilt, or has no layer to
      convert.
  """
  compat.check_keras_model(model)
  if not model.built:
    raise ValueError(f"Model {model.name!r} must be built before conversion.")
  skip = set(skip)
  unknown = skip - {l.name for l in compat.flatten_layers(model)}
  if unknown:
    raise ValueError(f"Layers to skip not in the model: {sorted(unknown)}.")
  report = ConversionReport(converted=[], skipped={}, dropped={})
  pairs = []

  def clone_function(layer):
    if isinstance(layer, keras.Model):
      return _clone(layer, clone_function)
    latent_cls = _to_latent_class(layer)
    config = layer.get_config()
    if latent_cls is not None and layer.name not in skip:
      dropped = [k for k in _KERNEL_PENALTIES if config.get(k) is not None]
      for k in dropped:
        config[k] = None
      if dropped:
        report.dropped[layer.name] = dropped
      new = latent_cls.from_config(config)
      report.converted.append(layer.name)
    else:
      if any(hasattr(layer, a) for a in _KERNEL_ATTRS):
        report.skipped[layer.name] = (
            "skipped on request" if layer.name in skip else
            f"{type(layer).__name__} has no latent counterpart")
      new = layer.__class__.from_config(config)
    pairs.append((layer, new))
    return new

  network = _clone(model, clone_function)
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
  logging.vlog(1, "LilNetX: converted %d layers.", len(report.converted))
  return lilnetx


def decompressed_model(model):
  """A plain Keras model with the decoded weights of a `LilNetXModel`.

  Args:
    model: A `LilNetXModel`.

  Returns:
    A new functional/Sequential `keras.Model` with the stock layers of the
    latent layers, whose kernels are the decoded rounded latents, and all
    other weights copied. Its outputs equal the LilNetX model's in inference
    mode.
  """
  if not isinstance(model, LilNetXModel):
    raise TypeError(f"Expected a LilNetXModel, got {type(model).__name__}.")
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
