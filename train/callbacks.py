"""Callbacks of the training CLI: run state, learning rate, summaries.

`RunCheckpoint` owns everything a resumed run needs: one `tf.train.Checkpoint`
of the model (which tracks its weights, both optimizers with their step
counters and slots, the priors and the lambda variables) plus the number of
finished epochs, the best validation accuracy, its epoch and the training
time so far. It also writes `model.keras` (latest) and `best.keras` (best
validation accuracy) atomically, so a reader never sees a half-written file.

A kill at any moment leaves a resumable run: an epoch's checkpoint is
recorded as the latest only once its files are complete and every other
output of the epoch exists, and `best.keras` is replaced only after the
checkpoint that names its epoch (see `RunCheckpoint`).
"""

import glob
import os
import re
import time

from absl import logging
import numpy as np
import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

import lilnetx_tf
from lilnetx_tf.atomic import atomic_path
from lilnetx_tf.atomic import atomic_write
from . import faults

__all__ = ["BEST_METRIC", "EpochRandomness", "EpochSummary",
           "EpochTensorBoard", "LatentHistograms", "LearningRateLogger",
           "ProgbarLogger", "RunCheckpoint", "save_atomically"]

# Keras's name for the validation split's accuracy (`validation_data`).
BEST_METRIC = "val_accuracy"

_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"
# The checkpoint files of a run's epoch n are `ckpt-n.index` and
# `ckpt-n.data-*`; the pending best model of epoch n is `.best-n.keras`.
_PENDING_BEST = re.compile(r"\.best-(\d+)\.keras$")
# What unreadable checkpoint files raise (IndexError: a truncated data file).
_UNREADABLE = (tf.errors.OpError, IndexError)


def save_atomically(model, path, before_rename=None):
  """Saves `model` to `path` (Keras format) through `atomic_path`.

  Args:
    model: The model.
    path: The destination.
    before_rename: Called without arguments once the temporary file holds
      the whole model, before it replaces `path` (a test hook).
  """
  with atomic_path(path, suffix=".keras") as tmp:
    model.save(tmp)
    if before_rename is not None:
      before_rename()


def _number(path):
  """n of a checkpoint path `.../ckpt-n`."""
  return int(path.rsplit("-", 1)[1])


def _recorded_checkpoints(directory):
  """The checkpoint paths recorded in `directory`, newest first."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  paths = set(state.all_model_checkpoint_paths)
  paths.add(state.model_checkpoint_path)
  return sorted(paths, key=_number, reverse=True)


def _record_checkpoints(directory, paths):
  """Writes `directory`'s `checkpoint` file: `paths` kept, the last latest.

  The text format of `tf.train.CheckpointState`, with relative names so that
  the directory can move; written atomically, so a kill leaves the old list.
  """
  names = [os.path.basename(p) for p in paths]
  lines = [f'model_checkpoint_path: "{names[-1]}"']
  lines += [f'all_model_checkpoint_paths: "{n}"' for n in names]
  atomic_write(os.path.join(directory, "checkpoint"), "\n".join(lines) + "\n")


def _readable(path):
  """Whether every value of checkpoint `path` can be read (logs if not).

  Checked before restoring, so that a damaged checkpoint is skipped before
  any variable is assigned from it.
  """
  try:
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_dtype_map():
      reader.get_tensor(name)
  except _UNREADABLE as e:
    logging.warning("Checkpoint %s is unreadable (%s); using the one before.",
                    path, e)
    return False
  return True


def _remove_checkpoint(path):
  for file in glob.glob(glob.escape(path) + ".*"):
    os.remove(file)


class RunCheckpoint(keras.callbacks.Callback):
  """Checkpoints the run at the end of each epoch and restores it.

  Create it inside the strategy scope after `model.compile`, then call
  `restore()` before `model.fit(initial_epoch=...)`.

  At the end of epoch n it writes, in this order: `model.keras`; a new best
  model (highest `BEST_METRIC`) as the pending `.best-n.keras`; the
  checkpoint files `ckpt-n.*`; the `checkpoint` file naming `ckpt-n` the
  latest (the commit); then renames `.best-n.keras` to `best.keras`.
  `restore()` finishes or discards what a kill interrupted: a pending best
  model is kept if the restored checkpoint chose it, else deleted; a
  checkpoint that cannot be read falls back to the one before.

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
    self._write_dir = write_dir
    self._max_to_keep = max_to_keep
    self._model_dir = model_dir
    self._epoch_start = None

  @staticmethod
  def epochs_done(directory):
    """Epochs recorded by the latest readable checkpoint (0 if none).

    Reads the checkpoint's values without building the model: all of them,
    so that it agrees with `restore` about which checkpoint is readable.
    """
    for path in _recorded_checkpoints(directory):
      if _readable(path):
        return int(tf.train.load_checkpoint(path).get_tensor(_EPOCH_KEY))
    return 0

  def restore(self):
    """Restores the latest readable checkpoint, if any.

    Returns:
      The number of epochs already done (0 for a fresh run).

    Raises:
      ValueError: If the checkpoint does not fit the model (the config's
        model changed since the run started).
    """
    restored = None
    for path in _recorded_checkpoints(self._read_dir):
      if not _readable(path):  # Damaged files: the previous one is whole.
        continue
      try:
        # `read`, the counterpart of `write`: unlike `restore`, it adds no
        # save counter that a fallback checkpoint would lack.
        status = self._checkpoint.read(path)
      except ValueError as e:
        raise self._mismatch(path, e) from e
      try:
        status.assert_existing_objects_matched()
      except AssertionError as e:
        raise self._mismatch(path, e) from e
      restored = path
      break
    self._settle_pending_best()
    if restored is None:
      return 0
    logging.info("Resuming from %s: %d epochs done, best %s %.4f (epoch %d), "
                 "%.0f s of training so far.", restored,
                 int(self.epoch.numpy()), BEST_METRIC,
                 float(self.best.numpy()), int(self.best_epoch.numpy()),
                 float(self.seconds.numpy()))
    return int(self.epoch.numpy())

  @staticmethod
  def _mismatch(path, error):
    return ValueError(
        f"Checkpoint {path} does not fit this config's model (was the "
        "config changed since the run started? see config.json there); "
        f"resume with the same config or use a new --workdir. ({error})")

  def _pending_best_path(self, epoch):
    return os.path.join(self._model_dir, f".best-{epoch}.keras")

  def _settle_pending_best(self):
    """Keeps the pending best model the restored state chose; drops others."""
    chosen = int(self.best_epoch.numpy())
    for name in os.listdir(self._model_dir):
      match = _PENDING_BEST.fullmatch(name)
      if match is None:
        continue
      path = os.path.join(self._model_dir, name)
      if int(match.group(1)) == chosen:
        os.replace(path, os.path.join(self._model_dir, "best.keras"))
      else:
        os.remove(path)

  def _save_checkpoint(self, number):
    """Writes checkpoint `number`, then records it (the commit)."""
    path = self._checkpoint.write(
        os.path.join(self._write_dir, f"ckpt-{number}"))
    faults.kill_point("checkpoint", number)
    recorded = _recorded_checkpoints(self._write_dir)
    older = sorted((p for p in recorded if _number(p) < number), key=_number)
    kept = older[-(self._max_to_keep - 1):] if self._max_to_keep > 1 else []
    _record_checkpoints(self._write_dir, kept + [path])
    # Also newer ones: left by a run resumed from an older checkpoint.
    for old in recorded:
      if old not in kept and old != path:
        _remove_checkpoint(old)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    number = epoch + 1
    self.seconds.assign_add(time.time() - self._epoch_start)
    self.epoch.assign(number)
    save_atomically(
        self.model, os.path.join(self._model_dir, "model.keras"),
        lambda: faults.kill_point("model.keras", number))
    value = logs.get(BEST_METRIC)
    improved = value is not None and value > self.best.numpy()
    if improved:
      self.best.assign(value)
      self.best_epoch.assign(number)
      save_atomically(self.model, self._pending_best_path(number),
                      lambda: faults.kill_point("best.keras", number))
    # A checkpoint for epoch n means every output of epoch n exists.
    self._save_checkpoint(number)
    if improved:
      os.replace(self._pending_best_path(number),
                 os.path.join(self._model_dir, "best.keras"))


class EpochRandomness(keras.callbacks.Callback):
  """Makes each epoch's random ops a function of (seed, epoch) alone.

  A stateful random op in the traced training step (e.g. the priors'
  training noise, an unseeded `tf.random.uniform`) draws from a stream that
  starts when the step function is traced and is in no checkpoint: a resumed
  run would replay the stream's start in a later epoch. So at the start of
  every epoch this sets the global seed from (seed, epoch) and retraces the
  step function, whose streams then start afresh, the same in an
  uninterrupted and in a resumed run. It costs a retrace per epoch, so the
  CLI adds it only with `config.deterministic`.

  Args:
    seed: The run's seed.
  """

  def __init__(self, seed):
    super().__init__()
    self.seed = seed

  def on_epoch_begin(self, epoch, logs=None):
    # SeedSequence: a fixed, well-mixed function of (seed, epoch).
    state = np.random.SeedSequence([self.seed, epoch]).generate_state(1)
    tf.random.set_seed(int(state[0]))
    self.model.make_train_function(force=True)


# Keras calls every callback's batch hooks once any callback in the list has
# one (`StopOnNonFinite`, `EpochSummary`), so the two stock callbacks below
# ran per-step work whose result they discard, more for a LilNetX model
# (five logs, more layers): 162 and 38 us a LeNet-300-100 step, against 69
# and 10 us for the float network.


class EpochTensorBoard(keras.callbacks.TensorBoard):
  """`TensorBoard` writing epoch summaries only (no graph, no profile).

  The stock callback's batch hook creates one summary per log and step,
  which its `update_freq="epoch"` drops.

  Args:
    log_dir: Where to write the event files.
  """

  def __init__(self, log_dir):
    super().__init__(log_dir, write_graph=False, profile_batch=0,
                     update_freq="epoch")

  def on_train_batch_begin(self, batch, logs=None):
    del batch, logs

  def on_train_batch_end(self, batch, logs=None):
    del batch, logs


class ProgbarLogger(keras.callbacks.ProgbarLogger):
  """Keras's `ProgbarLogger` (steps), with no per-step work at verbose 2.

  A line per epoch needs nothing from the steps; the stock batch hook
  collects the model's metrics at every step.
  """

  def __init__(self):
    super().__init__(count_mode="steps")

  def on_train_batch_end(self, batch, logs=None):
    if self.verbose == 1:
      super().on_train_batch_end(batch, logs)


class LearningRateLogger(keras.callbacks.Callback):
  """Adds `learning_rate` (the rate of the epoch's last step) to epoch logs."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      # For a schedule, Keras keeps the rate of the latest step here.
      logs["learning_rate"] = float(
          keras.backend.get_value(self.model.optimizer.learning_rate))


class LatentHistograms(keras.callbacks.Callback):
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
        for layer in compat.flatten_layers(self.model, include_self=False):
          if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense,
                                keras.layers.DepthwiseConv2D)):
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


class EpochSummary(keras.callbacks.Callback):
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
    self._supports_tf_logs = True  # Its batch hook reads no logs.

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
    for key, label in (("accuracy", "train acc"),
                       (BEST_METRIC, "validation acc")):
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
