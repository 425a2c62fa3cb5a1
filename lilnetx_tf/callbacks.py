"""`model.fit` callbacks of LilNetX, one job each."""

import tensorflow as tf

from lilnetx_tf.stats import compression_stats

__all__ = ["RateWarmup", "CompressionLogger", "LOGGED_FIGURES"]

# Figures `CompressionLogger` adds to the epoch logs, from `compression_stats`.
LOGGED_FIGURES = ("estimated_bytes", "weight_sparsity", "slice_sparsity",
                  "in_channel_sparsity", "out_channel_sparsity", "macs_ratio")


class RateWarmup(tf.keras.callbacks.Callback):
  """Ramps lambda_I linearly from 0 to its target over the first epochs.

  Sets `model.lambda_rate` (a variable, so a resumed run is consistent) to
  `target * min(1, epoch / epochs)` at the start of each epoch, as in the
  reference implementation.

  Args:
    epochs: Warm-up length in epochs; 0 disables the warm-up.
    target: Final lambda_I; defaults to the model's `lambda_rate_target`.
  """

  def __init__(self, epochs, target=None):
    super().__init__()
    if epochs < 0:
      raise ValueError(f"`epochs` must be >= 0, got {epochs}.")
    self.epochs = epochs
    self.target = target

  def on_epoch_begin(self, epoch, logs=None):
    target = (self.model.lambda_rate_target if self.target is None
              else self.target)
    fraction = 1.0 if not self.epochs else min(1.0, epoch / self.epochs)
    self.model.lambda_rate.assign(target * fraction)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["lambda_rate"] = float(self.model.lambda_rate.numpy())


class CompressionLogger(tf.keras.callbacks.Callback):
  """Adds size, sparsity and MAC figures to the epoch logs.

  Put it before `CSVLogger` / `TensorBoard` in the callback list so they
  record the figures; the progress bar shows them too. Figures: estimated
  bytes of the latents, weight sparsity, slice / input- / output-channel
  sparsity of the decoded weights, and effective / dense MAC ratio.

  Args:
    coded: Also log `coded_bytes`, the real range-coded size (slower).
  """

  def __init__(self, coded=False):
    super().__init__()
    self.coded = coded

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    total = compression_stats(self.model, coded=self.coded)["total"]
    for key in LOGGED_FIGURES + (("coded_bytes",) if self.coded else ()):
      logs[key] = float(total[key])
