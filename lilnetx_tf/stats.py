"""Size, sparsity and computation figures of a `LilNetXModel`.

Sparsities are measured on the decoded weights (exact zeros). A *slice* is the
k x k kernel of one (input, output) pair (a single weight for dense layers);
an input (output) channel is zero when all its slices are. As in the reference
implementation, the model's slice and channel sparsities count convolutions
only (dense layers' "slices" are single weights, which would drown the
structured figure); a model without convolutions counts its dense layers. Effective MACs
count only the nonzero slices, i.e. the work left once zero slices are
skipped; `lilnetx_tf.remove_zero_channels` realises the channel part of it.
"""

import numpy as np

from lilnetx_tf import codec
from lilnetx_tf import groups
from lilnetx_tf.models.macs import layer_macs

__all__ = ["compression_stats", "layer_stats"]


def _zero_slices(kernel):
  """Boolean (in, out) matrix: which slices of a decoded kernel are all zero."""
  if kernel.ndim == 2:
    return kernel == 0
  return np.all(kernel == 0, axis=(0, 1))


def layer_stats(layer, prior=None):
  """Figures of one latent layer.

  Args:
    layer: A latent layer attached to its decoder.
    prior: Its group's `GroupPrior`, to add the estimated bits.

  Returns:
    A dict of plain Python numbers (JSON-ready).
  """
  kernel = np.asarray(layer.decoded_kernel())
  zero = _zero_slices(kernel)
  macs = layer_macs(layer)
  stats = dict(
      group=layer.group,
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
  if prior is not None:
    stats["estimated_bits"] = float(
        prior.bits(groups.to_positions(layer.latent), training=False))
  return stats


def _ratio(part, whole):
  return float(part) / whole if whole else 0.0


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
  layers = {l.name: layer_stats(l, model.priors[l.group])
            for l in model.latent_layers}

  convs = [s for s in layers.values() if len(s["shape"]) == 4]
  structured = convs or list(layers.values())

  def total(key, among=tuple(layers.values())):
    return sum(s[key] for s in among)

  weights = total("weights")
  stats = dict(
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
      estimated_bytes=total("estimated_bits") / 8,
      float32_bytes=4 * weights,
  )
  stats["macs_ratio"] = _ratio(stats["macs_effective"], stats["macs_dense"])
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
