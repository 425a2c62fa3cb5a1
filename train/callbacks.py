"""Callbacks of the training CLI: run state, learning rate, summaries.

`RunCheckpoint` owns everything a resumed run needs: one `tf.train.Checkpoint`
of the model (which tracks its weights, both optimizers with their step
counters and slots, the priors and the lambda variables) plus the number of
finished epochs, the best validation accuracy and the training time so far.
It also writes `model.keras` (latest) and `best.keras` atomically, so a reader
never sees a half-written file.
"""

import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf.atomic import atomic_path

__all__ = ["EpochSummary", "LatentHistograms", "LearningRateLogger",
           "RunCheckpoint", "save_atomically"]

BEST_METRIC = "val_accuracy"


def save_atomically(model, path):
  """Saves `model` to `path` (Keras format) through `atomic_path`."""
  with atomic_path(path, suffix=".keras") as tmp:
    model.save(tmp)


class RunCheckpoint(tf.keras.callbacks.Callback):
  """Checkpoints the run at the end of each epoch and restores it.

  Create it inside the strategy scope after `model.compile`, then call
  `restore()` before `model.fit(initial_epoch=...)`.

  Args:
    model: The compiled model.
    read_dir: Directory the checkpoints are restored from (the chief's).
    write_dir: Directory they are saved to (a scratch directory on
      non-chief workers).
    model_dir: Where `model.keras` / `best.keras` go.
    max_to_keep: Checkpoints kept.
  """

  def __init__(self, model, read_dir, write_dir, model_dir, max_to_keep=2):
    super().__init__()
    # Build the optimizers' slots now, so restoring fills them at once instead
    # of deferring (deferred slot restores are easy to lose).
    if isinstance(model, lilnetx_tf.LilNetXModel):
      model.optimizer.build(model.network_variables())
      model.prior_optimizer.build(model.prior_variables())
    else:
      model.optimizer.build(model.trainable_variables)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False,
                            name="best")
    self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name="best_epoch")
    self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                               name="train_seconds")
    self._checkpoint = tf.train.Checkpoint(
        model=model, epoch=self.epoch, best=self.best,
        best_epoch=self.best_epoch, train_seconds=self.seconds)
    self._read_dir = read_dir
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, write_dir, max_to_keep=max_to_keep)
    self._model_dir = model_dir
    self._epoch_start = None

  @staticmethod
  def epochs_done(directory):
    """Epochs recorded by the latest checkpoint in `directory` (0 if none).

    Reads one value, without building the model.
    """
    path = tf.train.latest_checkpoint(directory)
    if path is None:
      return 0
    return int(tf.train.load_checkpoint(path).get_tensor(
        "epoch/.ATTRIBUTES/VARIABLE_VALUE"))

  def restore(self):
    """Restores the latest checkpoint, if any.

    Returns:
      The number of epochs already done (0 for a fresh run).

    Raises:
      ValueError: If the checkpoint does not fit the model (the config's
        model changed since the run started).
    """
    path = tf.train.latest_checkpoint(self._read_dir)
    if path is None:
      return 0
    try:
      self._checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise ValueError(
          f"Checkpoint {path} does not fit this config's model (was the "
          "config changed since the run started? see config.json there); "
          f"resume with the same config or use a new --workdir. ({e})") from e
    logging.info("Resuming from %s: %d epochs done, best %s %.4f (epoch %d), "
                 "%.0f s of training so far.", path, int(self.epoch.numpy()),
                 BEST_METRIC, float(self.best.numpy()),
                 int(self.best_epoch.numpy()), float(self.seconds.numpy()))
    return int(self.epoch.numpy())

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    self.seconds.assign_add(time.time() - self._epoch_start)
    self.epoch.assign(epoch + 1)
    save_atomically(self.model, os.path.join(self._model_dir, "model.keras"))
    value = logs.get(BEST_METRIC)
    if value is not None and value > self.best.numpy():
      self.best.assign(value)
      self.best_epoch.assign(epoch + 1)
      save_atomically(self.model, os.path.join(self._model_dir, "best.keras"))
    # Last: a checkpoint for epoch e means every output of epoch e exists.
    self._manager.save(checkpoint_number=epoch + 1)


class LearningRateLogger(tf.keras.callbacks.Callback):
  """Adds `learning_rate` (the rate of the epoch's last step) to epoch logs."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      # For a schedule, Keras keeps the rate of the latest step here.
      logs["learning_rate"] = float(
          tf.keras.backend.get_value(self.model.optimizer.learning_rate))


class LatentHistograms(tf.keras.callbacks.Callback):
  """Writes TensorBoard histograms of the rounded latents, once per epoch.

  The integers that get range coded, one histogram per layer
  (`latents/<layer>`); for a plain Keras model, its kernels
  (`kernels/<layer>`).

  Args:
    logdir: TensorBoard run directory to write to.
  """

  def __init__(self, logdir):
    super().__init__()
    self.logdir = logdir
    self._writer = None

  def on_epoch_end(self, epoch, logs=None):
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self.logdir)
    with self._writer.as_default():
      if isinstance(self.model, lilnetx_tf.LilNetXModel):
        for layer in self.model.latent_layers:
          tf.summary.histogram(f"latents/{layer.name}",
                               tf.round(layer.latent), step=epoch)
      else:
        for layer in self.model._flatten_layers(include_self=False):  # pylint: disable=protected-access
          if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense,
                                tf.keras.layers.DepthwiseConv2D)):
            tf.summary.histogram(f"kernels/{layer.name}", layer.weights[0],
                                 step=epoch)
    self._writer.flush()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def _bytes(n):
  for unit in ("B", "KB", "MB", "GB"):
    if abs(n) < 1000 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1000.0


class EpochSummary(tf.keras.callbacks.Callback):
  """Logs one line per epoch: accuracy, size and sparsity.

  Also logs when the first training step starts, counted from `start_time`
  (the time to first step shows whether data caches were reused).

  Args:
    epochs: Total epochs of the run, for "epoch 3/20".
    start_time: `time.time()` when the run started.
  """

  def __init__(self, epochs, start_time):
    super().__init__()
    self.epochs = epochs
    self.start_time = start_time
    self._start = None
    self._first_step_seen = False

  def on_train_batch_begin(self, batch, logs=None):
    if not self._first_step_seen:
      self._first_step_seen = True
      logging.info("First training step %.1f s after start.",
                   time.time() - self.start_time)

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    parts = [f"epoch {epoch + 1}/{self.epochs}"]
    for key, label in (("accuracy", "train acc"), ("val_accuracy", "test acc")):
      if key in logs:
        parts.append(f"{label} {100 * logs[key]:.2f}%")
    if "estimated_bytes" in logs:
      size = f"size {_bytes(logs['estimated_bytes'])} est."
      if "coded_bytes" in logs:
        size += f", {_bytes(logs['coded_bytes'])} coded"
      if "entropy_bytes" in logs:
        size += (f", {_bytes(logs['entropy_bytes'])} entropy (est./entropy "
                 f"{logs['estimated_to_entropy']:.3f}")
        if "coded_to_entropy" in logs:
          size += f", coded/entropy {logs['coded_to_entropy']:.3f}"
        size += ")"
      parts.append(size)
    if "slice_sparsity" in logs:
      parts.append(f"slice sparsity {100 * logs['slice_sparsity']:.1f}%, "
                   f"zero weights {100 * logs['weight_sparsity']:.1f}%")
    if "learning_rate" in logs:
      parts.append(f"lr {logs['learning_rate']:.2e}")
    parts.append(f"{time.time() - self._start:.0f} s")
    logging.info(" | ".join(parts))
