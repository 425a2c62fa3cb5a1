"""The zeros a pruned model still holds, and whether any runtime skips them.

Channel removal turns whole zero channels into fewer multiply-adds on every
runtime. The zeros left inside the kept channels (zero k x k slices, single
zero weights) make the `.lnx` file smaller but the `.tflite` model no faster:
TFLite's convolution kernels are dense, and XNNPACK's sparse inference takes
only 1x1 convolutions of MobileNet-shaped graphs, on ARM
(`tflite_sparse.xnnpack_sparse_eligibility`). `remaining_zeros` says so per
layer, plainly, for the export's report.
"""

import numpy as np

from lilnetx_tf.deploy import graph as graph_lib

__all__ = ["remaining_zeros"]


def _kernels(layer):
  """`(label, kernel array)` of a conv / dense layer's kernels."""
  kind = graph_lib.linear_kind(layer)
  if kind is None:
    return []
  if kind == "separable":
    return [("depthwise", layer.depthwise_kernel.numpy()),
            ("pointwise", layer.pointwise_kernel.numpy())]
  kernel = layer.depthwise_kernel if kind == "depthwise" else layer.kernel
  return [("kernel", kernel.numpy())]


def _statement(kernel, zero_weights, zero_slices):
  spatial = kernel.shape[:-2]
  if not zero_weights:
    return "no zero weights"
  if int(np.prod(spatial)) > 1:
    shape = "x".join(str(s) for s in spatial)
    return (f"{100 * zero_slices:.1f}% of its {shape} slices are zero "
            f"({100 * zero_weights:.1f}% of weights); no TFLite kernel skips "
            "them")
  return (f"{100 * zero_weights:.1f}% of weights are zero; only XNNPACK's "
          "sparse inference skips them, on ARM, in MobileNet-shaped graphs "
          "(see the XNNPACK verdict)")


def remaining_zeros(model):
  """Per conv / dense kernel of `model`, its zeros and what skips them.

  Args:
    model: A Keras model of stock layers, e.g. `prepare_for_export(...)
      .pruned`.

  Returns:
    A list of dicts: `layer`, `kernel` ("kernel", or "depthwise" /
    "pointwise" of a separable convolution), `shape`, `zero_weights` and
    `zero_slices` (fractions; a slice is the spatial taps of one input and
    output channel, one weight for 1x1 kernels and dense layers) and
    `statement`, a sentence for people.

  Usage:

    for row in remaining_zeros(prepare_for_export(model).pruned):
      print(row["layer"], row["statement"])
  """
  rows = []
  for layer in model.layers:
    for label, kernel in _kernels(layer):
      slices = kernel.reshape(-1, *kernel.shape[-2:])
      zero_weights = float(np.mean(kernel == 0)) if kernel.size else 0.0
      zero_slices = (float(np.mean(np.all(slices == 0, axis=0)))
                     if kernel.size else 0.0)
      rows.append(dict(layer=layer.name, kernel=label,
                       shape=list(kernel.shape), zero_weights=zero_weights,
                       zero_slices=zero_slices,
                       statement=_statement(kernel, zero_weights,
                                            zero_slices)))
  return rows
