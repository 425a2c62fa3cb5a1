"""`model.fit` callbacks of LilNetX, one job each."""

import math

import numpy as np
import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.method.model import LilNetXModel
from lilnetx_tf.method.stats import compression_stats

__all__ = ["RateWarmup", "CompressionLogger", "StopOnNonFinite",
           "NonFiniteError", "LOGGED_FIGURES", "CODED_FIGURES",
           "WARMUP_FORMULAS"]

# Figures `CompressionLogger` adds to the epoch logs, from `compression_stats`.
LOGGED_FIGURES = ("estimated_bytes", "entropy_bytes", "estimated_to_entropy",
                  "weight_sparsity", "slice_sparsity", "in_channel_sparsity",
                  "out_channel_sparsity", "macs_ratio")
# With `coded=True`, also these.
CODED_FIGURES = ("coded_bytes", "coded_to_entropy")


WARMUP_FORMULAS = ("linear", "reference")


class RateWarmup(keras.callbacks.Callback):
  """Ramps lambda_I up to its target over the first epochs.

  Sets `model.lambda_rate` (a variable, so a resumed run is consistent) at
  the start of each (0-based) epoch `e` to, with `W = epochs`,

  - `"linear"`: `target * min(1, e / W)` (0 in the first epoch);
  - `"reference"`: `target * (min(e, W) + 1) / (W + 1)`, the official
    implementation's formula (`target / (W + 1)` in the first epoch).

  Args:
    epochs: Warm-up length in epochs; 0 disables the warm-up.
    target: Final lambda_I; defaults to the model's `lambda_rate_target`.
    formula: `"linear"` or `"reference"`.

  Usage:

    model.fit(x, y, epochs=10, callbacks=[lilnetx_tf.RateWarmup(2)])
  """

  def __init__(self, epochs, target=None, formula="linear"):
    super().__init__()
    if epochs < 0:
      raise ValueError(f"`epochs` must be >= 0, got {epochs}.")
    if formula not in WARMUP_FORMULAS:
      raise ValueError(f"Unknown warm-up formula {formula!r}; valid: "
                       f"{', '.join(WARMUP_FORMULAS)}.")
    self.epochs = epochs
    self.target = target
    self.formula = formula

  def fraction(self, epoch):
    """The fraction of the target lambda_I used in (0-based) `epoch`."""
    if not self.epochs:
      return 1.0
    if self.formula == "reference":
      return (min(epoch, self.epochs) + 1) / (self.epochs + 1)
    return min(1.0, epoch / self.epochs)

  def on_epoch_begin(self, epoch, logs=None):
    target = (self.model.lambda_rate_target if self.target is None
              else self.target)
    self.model.lambda_rate.assign(target * self.fraction(epoch))

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["lambda_rate"] = float(self.model.lambda_rate.numpy())


class CompressionLogger(keras.callbacks.Callback):
  """Adds size, sparsity and MAC figures to the epoch logs.

  Put it before `CSVLogger` / `TensorBoard` in the callback list so they
  record the figures; the progress bar shows them too. Figures: the
  latents' estimated bytes (under the priors), their empirical entropy in
  bytes and the ratio of the two, weight sparsity, slice / input- /
  output-channel sparsity of the decoded weights, and effective / dense MAC
  ratio.

  Args:
    coded: Also log `coded_bytes`, the real range-coded size (slower), and
      `coded_to_entropy`.

  Usage:

    model.fit(x, y, epochs=10, callbacks=[
        lilnetx_tf.CompressionLogger(),
        keras.callbacks.CSVLogger("log.csv")])  # Records the figures too.
  """

  def __init__(self, coded=False):
    super().__init__()
    self.coded = coded

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    total = compression_stats(self.model, coded=self.coded)["total"]
    for key in LOGGED_FIGURES + (CODED_FIGURES if self.coded else ()):
      logs[key] = float(total[key])


class NonFiniteError(FloatingPointError):
  """Training produced a NaN or infinity (see `StopOnNonFinite`)."""


def _watched_variables(model):
  """(description, variables) pairs that must stay finite."""
  if isinstance(model, LilNetXModel):
    watched = [(f"the latents of layer {l.name!r}", [l.latent])
               for l in model.latent_layers]
    watched += [(f"the decoder of group {g!r}", d.trainable_weights)
                for g, d in sorted(model.decoders.items())]
    watched += [(f"the prior of group {g!r}", p.trainable_weights)
                for g, p in sorted(model.priors.items())]
    return watched
  return [(f"the weight {v.name!r}", [v]) for v in model.trainable_variables]


# Step logs that must stay finite: the task loss, and the rate bound, which
# reads every latent (Keras's `loss` is the task loss alone; a NaN latent may
# leave it finite for a step).
_WATCHED_LOGS = (("loss", "The training loss"),
                 ("bits_per_latent", "The rate bound (bits per latent)"))


class StopOnNonFinite(keras.callbacks.Callback):
  """Stops training at the first NaN or infinity, saying what and where.

  After every training step it checks the loss and the rate bound; at the
  end of every epoch, and whenever those are not finite, it also checks, in
  one fused op, every latent, decoder and prior weight (every trainable
  weight of a plain Keras model). On a non-finite value it raises
  `NonFiniteError` naming the first bad one, the epoch and the step, before
  any end-of-epoch callback after it runs (put it first): a checkpointing
  callback never saves the broken state, so the last good checkpoint stays
  the latest. (Keras's `TerminateOnNaN` stops gracefully instead, letting
  end-of-epoch callbacks save the broken weights.) A weight that turns
  non-finite mid-epoch makes the next steps' loss or bound so; checking the
  weights after every step instead took a pass over all of them, a tenth of
  a LeNet-300-100 step.

  Usage:

    model.fit(x, y, epochs=10, callbacks=[
        lilnetx_tf.StopOnNonFinite(),  # First: before any checkpoint saves.
        keras.callbacks.ModelCheckpoint("ckpt/{epoch}.weights.h5",
                                        save_weights_only=True)])
  """

  def __init__(self):
    super().__init__()
    # Only the watched logs are read: no per-step conversion of every log.
    self._supports_tf_logs = True
    self._epoch = 0
    self._watched = None
    self._check = None

  def on_train_begin(self, logs=None):
    self._watched = _watched_variables(self.model)
    variables = [vs for _, vs in self._watched]

    @tf.function
    def check():
      return tf.stack([tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                                      for v in vs]) for vs in variables])

    self._check = check

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def _check_weights(self, where):
    finite = self._check().numpy()
    if not finite.all():
      what = self._watched[int(np.argmin(finite))][0]
      raise NonFiniteError(f"{what[0].upper()}{what[1:]} became NaN or "
                           f"infinite {where}.")

  def on_train_batch_end(self, batch, logs=None):
    for key, what in _WATCHED_LOGS:
      value = (logs or {}).get(key)
      if value is not None and not math.isfinite(float(value)):
        where = f"in epoch {self._epoch + 1}, step {batch + 1}"
        self._check_weights(where)
        raise NonFiniteError(f"{what} became {float(value)} {where}.")

  def on_epoch_end(self, epoch, logs=None):
    self._check_weights(f"in epoch {epoch + 1}, by its end")