"""Size, sparsity and computation figures of LilNetX and plain Keras models.

Sparsities are measured on the decoded (or plain) kernels' exact zeros. A
*slice* is the k x k kernel of one (input, output) pair (a single weight for
dense layers); an input (output) channel is zero when all its slices are. As
in the reference implementation, a model's slice and channel sparsities count
convolutions only (dense layers' "slices" are single weights, which would
drown the structured figure); a model without convolutions counts its dense
layers. Effective MACs count only the nonzero slices, i.e. the work left once
zero slices are skipped; `lilnetx_tf.deploy.prune.remove_zero_channels`
realises the channel part of it.

MACs (multiply-accumulates, batch 1) are counted for the layers that hold
nearly all of the arithmetic and all the weights LilNetX compresses; batch
norm, activations, pooling, additions and biases are not counted. With output
shapes taken from the layers themselves:

* Conv1D/Conv2D: `output positions * kernel size * (C_in / groups) * C_out`.
* DepthwiseConv1D/2D: `output positions * kernel size * C_in * multiplier`.
* SeparableConv1D/2D: the depthwise part, plus `output positions * C_in *
  multiplier * C_out` for the pointwise part.
* Dense: `in * out`, times the product of any axes between batch and features
  (a Dense layer on a (T, in) input computes T products of the weights).

Nested models are counted through their layers. Every counted layer must be
called once and have fully defined output shapes.
"""

import numpy as np
import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf.compressed import codec
from lilnetx_tf.method import groups
from lilnetx_tf.method.layers import LatentSeparableConv2D

__all__ = ["compression_stats", "count_macs", "kernel_macs", "layer_macs",
           "layer_stats", "plain_stats"]

_LAYERS = keras.layers
# Subclasses of counted layers whose cost follows the input, not the output,
# size.
_TRANSPOSED = (_LAYERS.Conv1DTranspose, _LAYERS.Conv2DTranspose)


# -- MACs ----------------------------------------------------------------------


def _shape(layer, attribute):
  try:
    shape = getattr(layer, attribute)
  except AttributeError:  # No call recorded: a layer of a subclassed model.
    shape = (layer.get_build_config() or {}).get("input_shape")
    if shape is None:
      raise ValueError(f"count_macs: layer {layer.name!r} was never called; "
                       "call the model on an input first.") from None
    if attribute == "output_shape":
      shape = layer.compute_output_shape(shape)
  shape = tf.TensorShape(shape).as_list()
  if any(d is None for d in shape[1:]):
    raise ValueError(f"count_macs: layer {layer.name!r} has an undefined "
                     f"{attribute.split('_')[0]} shape {shape}; build the model "
                     f"with a fixed input size.")
  return shape


def kernel_macs(kernel_shape, output_shape):
  """MACs of one convolution, depthwise convolution or dense op, batch 1.

  One product per kernel weight per output position: the formulas of the
  module docstring, since the kernel is `(*spatial, C_in / groups, C_out)`,
  `(*spatial, C_in, multiplier)` or `(in, out)`.

  Args:
    kernel_shape: The kernel's shape.
    output_shape: The op's output shape, batch axis first; the axes between
      batch and channels are the output positions.
  """
  positions = np.prod(tuple(output_shape)[1:-1], dtype=np.int64)
  return int(positions) * int(np.prod(tuple(kernel_shape), dtype=np.int64))


def _kernel_shapes(layer, c_in, c_out):
  """Shapes of the kernels a counted layer multiplies by, from its config.

  Reading a latent layer's kernel would decode it, hence the configuration.
  """
  if isinstance(layer, _LAYERS.Dense):
    return [(c_in, c_out)]
  size = tuple(layer.kernel_size)
  if isinstance(layer, (_LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)):
    return [(*size, c_in, c_out // c_in)]
  if isinstance(layer, (_LAYERS.SeparableConv1D, _LAYERS.SeparableConv2D)):
    multiplier = layer.depth_multiplier
    return [(*size, c_in, multiplier), (c_in * multiplier, c_out)]
  return [(*size, c_in // layer.groups, c_out)]


def layer_macs(layer):
  """MACs of one layer (0 for layers that are not counted)."""
  if isinstance(layer, keras.Model):
    return sum(layer_macs(inner) for inner in layer.layers)
  if isinstance(layer, _TRANSPOSED):
    raise ValueError(
        f"count_macs: {type(layer).__name__} layer {layer.name!r} is not "
        "supported (Conv1D/2D, DepthwiseConv1D/2D, SeparableConv1D/2D and "
        "Dense are).")
  if isinstance(layer, (_LAYERS.Conv1D, _LAYERS.Conv2D,
                        _LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D,
                        _LAYERS.SeparableConv1D, _LAYERS.SeparableConv2D)):
    if layer.data_format != "channels_last":
      raise ValueError(f"count_macs: layer {layer.name!r} must use "
                       f"channels_last, got {layer.data_format!r}.")
  elif not isinstance(layer, _LAYERS.Dense):
    return 0
  out_shape = _shape(layer, "output_shape")
  c_in = _shape(layer, "input_shape")[-1]
  return sum(kernel_macs(shape, out_shape)
             for shape in _kernel_shapes(layer, c_in, out_shape[-1]))


def count_macs(model):
  """Returns the MACs of one forward pass (batch 1) of a Keras model.

  Args:
    model: A built `keras.Model` with fixed input size, plain or LilNetX.
      Only the layers of the module docstring are counted, by its formulas.

  Returns:
    The number of multiply-accumulates, a Python int.

  Raises:
    ValueError: If a counted layer has undefined shapes, uses channels_first,
      or is a transposed convolution.
  """
  return int(sum(layer_macs(layer) for layer in model.layers))


# -- Sparsity and size ---------------------------------------------------------


def _zero_slices(kernel):
  """Boolean (in, out) matrix: which slices of a kernel are all zero."""
  return np.all(kernel == 0, axis=tuple(range(kernel.ndim - 2)))


def _kernel_figures(kernel, macs):
  """Figures of one kernel: weights, zero slices and channels, MACs."""
  zero = _zero_slices(kernel)
  return dict(
      shape=list(kernel.shape),
      weights=int(kernel.size),
      nonzero_weights=int(np.count_nonzero(kernel)),
      slices=int(zero.size),
      zero_slices=int(zero.sum()),
      in_channels=int(zero.shape[0]),
      zero_in_channels=int(np.all(zero, axis=1).sum()),
      out_channels=int(zero.shape[1]),
      zero_out_channels=int(np.all(zero, axis=0).sum()),
      macs_dense=int(macs),
      macs_effective=int(round(macs * (1 - zero.mean()))),
  )


def _ratio(part, whole):
  return float(part) / whole if whole else 0.0


def _totals(layers):
  """Model totals of per-kernel figures (see `compression_stats`)."""
  # Structured sparsity: convolutions only, as in the module docstring.
  structured = [s for s in layers if len(s["shape"]) > 2] or layers

  def total(key, among=layers):
    return sum(s[key] for s in among)

  weights = total("weights")
  return dict(
      weights=weights,
      nonzero_weights=total("nonzero_weights"),
      weight_sparsity=1 - _ratio(total("nonzero_weights"), weights),
      slice_sparsity=_ratio(total("zero_slices", structured),
                            total("slices", structured)),
      in_channel_sparsity=_ratio(total("zero_in_channels", structured),
                                 total("in_channels", structured)),
      out_channel_sparsity=_ratio(total("zero_out_channels", structured),
                                  total("out_channels", structured)),
      macs_dense=total("macs_dense"),
      macs_effective=total("macs_effective"),
      macs_ratio=_ratio(total("macs_effective"), total("macs_dense")),
      float32_bytes=4 * weights,
  )


def _separable_kernel_macs(network):
  """Sublayer name -> MACs, for the kernels of separable convolutions.

  Their sublayers are not called in the model's graph; the separable layer's
  output shape gives their output positions.
  """
  macs = {}
  for layer in compat.flatten_layers(network, include_self=False):
    if isinstance(layer, LatentSeparableConv2D):
      out_shape = _shape(layer, "output_shape")
      for sub in (layer.depthwise_layer, layer.pointwise_layer):
        macs[sub.name] = kernel_macs(sub.latent.shape, out_shape)
  return macs


def layer_stats(layer, prior=None, macs=None):
  """Figures of one latent layer.

  Args:
    layer: A latent layer attached to its decoder.
    prior: Its group's `GroupPrior`, to add the estimated bits.
    macs: The MACs of its kernel; default `layer_macs(layer)`.

  Returns:
    A dict of plain Python numbers (JSON-ready).
  """
  if macs is None:
    macs = layer_macs(layer)
  stats = dict(group=layer.group, **_kernel_figures(
      np.asarray(layer.decoded_kernel()), macs))
  if prior is not None:
    # `bits(..., training=False)` from the histogram: the density network on
    # each integer present instead of each latent (an epoch-end callback's
    # cost).
    stats["estimated_bits"] = float(
        prior.histogram_bits(groups.to_positions(layer.latent)))
  return stats


def compression_stats(model, coded=True):
  """Per-layer and total compression figures of a `LilNetXModel`.

  Args:
    model: A `LilNetXModel`.
    coded: Also range code the latents and report their real size (takes a
      second or so per group); otherwise only the estimate.

  Returns:
    A dict with `layers` (name -> `layer_stats`) and `total`: weights,
    nonzero weights, weight / slice / input-channel / output-channel
    sparsity, dense and effective MACs and their ratio, the latents' size
    three ways: `estimated_bytes` (their bits under the learned priors),
    `entropy_bytes` (their factorized empirical entropy: one histogram per
    group and kernel position, the size coding with fitted tables
    approaches) and `estimated_to_entropy`; float32 bytes of the kernels; and
    with `coded=True` the real range-coded `coded_bytes`, `coded_to_entropy`
    and the compression ratio against float32.
  """
  macs = _separable_kernel_macs(model.network)
  layers = {l.name: layer_stats(l, model.priors[l.group], macs.get(l.name))
            for l in model.latent_layers}
  stats = _totals(list(layers.values()))
  stats["estimated_bytes"] = sum(
      s["estimated_bits"] for s in layers.values()) / 8
  stats["entropy_bytes"] = sum(
      codec.empirical_entropy_bits(s)
      for s in codec.group_symbols(model).values()) / 8
  stats["estimated_to_entropy"] = _ratio(stats["estimated_bytes"],
                                         stats["entropy_bytes"])
  if coded:
    coded_bytes = sum(len(c.data) for c in codec.compress_latents(model))
    stats["coded_bytes"] = coded_bytes
    stats["coded_to_entropy"] = _ratio(coded_bytes, stats["entropy_bytes"])
    stats["compression_ratio"] = _ratio(stats["float32_bytes"], coded_bytes)
  return dict(layers=layers, total=stats)


def _plain_kernels(layer):
  """The kernels of a plain layer that MACs count, as NumPy arrays."""
  if isinstance(layer, (_LAYERS.SeparableConv1D, _LAYERS.SeparableConv2D)):
    return [layer.depthwise_kernel.numpy(), layer.pointwise_kernel.numpy()]
  if isinstance(layer, (_LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)):
    return [layer.depthwise_kernel.numpy()]
  return [layer.kernel.numpy()]


def plain_stats(model):
  """`compression_stats`' figures of a plain Keras model's float kernels.

  Args:
    model: A built Keras model; the kernels of the layers MACs count (see the
      module docstring) are measured.

  Returns:
    `{'layers': {name: {...}}, 'total': {...}}` with the keys of
    `compression_stats` that need no latents (weights, sparsities, MACs,
    float32 bytes), plus `params`, all of the model's parameters.
  """
  layers = {}
  for layer in compat.flatten_layers(model, include_self=False):
    if isinstance(layer, keras.Model) or not layer_macs(layer):
      continue
    out_shape = _shape(layer, "output_shape")
    for i, kernel in enumerate(_plain_kernels(layer)):
      # A separable convolution's second kernel is its pointwise 1x1 conv.
      name = f"{layer.name}/pointwise" if i else layer.name
      layers[name] = _kernel_figures(
          kernel, kernel_macs(kernel.shape, out_shape))
  total = _totals(list(layers.values()))
  total["params"] = int(model.count_params())
  return dict(layers=layers, total=total)
