"""Initial latents and decoders of a LilNetX model.

Three starts: random latents with decoders scaled so that decoded weights
have the standard deviation of each layer's own Keras initializer (the
default); the latents of given float kernels (a pretrained model) under
scaled identity decoders; or the official PyTorch implementation's
initialisation (`reference=True`).
"""

import math

import numpy as np

from lilnetx_tf.method import groups

__all__ = ["initialize", "kernel_shape"]


def kernel_shape(layer):
  """A latent layer's kernel shape, a tuple of ints."""
  return tuple(int(d) for d in layer.latent.shape)


def _out_channels(layer):
  shape = kernel_shape(layer)
  if hasattr(layer, "depth_multiplier"):  # Depthwise: in * multiplier.
    return shape[-2] * shape[-1]
  return shape[-1]


def initialize(model, kernels=None):
  """Initialises a `LilNetXModel`'s latents and decoders.

  Without `kernels`, latents are uniform in +-`model.latent_init_bound`
  (scaled per layer) and each decoder's scale is chosen so that decoded
  weights have the standard deviation of the layer's own
  `kernel_initializer`. With `kernels`, decoders become scaled identities
  and latents are the given float kernels divided by the scale, so decoding
  the rounded latents gives the kernels back up to the rounding step.

  Args:
    model: The `LilNetXModel`.
    kernels: Optional dict, layer name -> float kernel (NumPy), for every
      latent layer (e.g. the weights of a pretrained model).

  Raises:
    ValueError: if `kernels` lacks a latent layer's kernel.
  """
  rng = np.random.default_rng(model.seed)
  bound = model.latent_init_bound
  if model.reference and kernels is None:
    _initialize_as_reference(model, rng)
    return
  for g, layers in model.group_layers.items():
    if kernels is not None:
      missing = [l.name for l in layers if l.name not in kernels]
      if missing:
        raise ValueError(f"No kernel given for layers {missing}.")
      stds = [float(np.std(kernels[l.name])) for l in layers]
    else:
      stds = [float(np.std(l.kernel_initializer(kernel_shape(l))))
              for l in layers]
    stds = [max(s, 1e-8) for s in stds]
    group_std = math.exp(sum(math.log(s) for s in stds) / len(stds))
    # A uniform +-b latent has std b / sqrt(3).
    scale = group_std * math.sqrt(3.0) / max(bound, 1e-8)
    model.decoders[g].reset(scale, identity=kernels is not None)
    for layer, std in zip(layers, stds):
      shape = kernel_shape(layer)
      if kernels is not None:
        value = np.asarray(kernels[layer.name], np.float32) / scale
      else:
        b = bound * std / group_std
        value = rng.uniform(-b, b, size=shape)
      layer.latent.assign(value.astype(np.float32).reshape(shape))


def _initialize_as_reference(model, rng):
  """The official implementation's initialisation (`reference=True`).

  With b = `latent_init_bound` and F the largest output-channel count of
  the model, `var = 24 / F / ((2b + 1)**2 - 1)`; decoders are raw matrices
  (scale 1) with N(0, var) entries, and the latents of a layer with
  PyTorch fan-out f (output channels times kernel positions) are uniform
  in +-(sqrt(24 / (var * f) + 1) - 1) / 2.
  """
  fans = {l.name: (_out_channels(l), groups.num_positions(kernel_shape(l)))
          for l in model.latent_layers}
  b = model.latent_init_bound
  var = 24.0 / max(o for o, _ in fans.values()) / ((2 * b + 1)**2 - 1)
  for g, layers in model.group_layers.items():
    p = model.decoders[g].positions
    model.decoders[g].reset(1.0, matrix=rng.normal(0, math.sqrt(var), (p, p)))
    for layer in layers:
      out, positions = fans[layer.name]
      bound = (math.sqrt(24.0 / (var * out * positions) + 1) - 1) / 2
      shape = kernel_shape(layer)
      layer.latent.assign(
          rng.uniform(-bound, bound, size=shape).astype(np.float32))
