"""Test-only hook: SIGKILL the training process at a named point of a run.

Tests of kill-proof training set the environment variable

  LILNETX_TEST_KILL_AT=<point>:<epoch>

and run `python -m train`; the process then kills itself with SIGKILL (no
cleanup, no exception handlers, like `kill -9` or a lost machine) when it
reaches that point. Unset, as always outside tests, nothing happens. Points
(epochs counted from 1):

  batch:E        in the middle of epoch E (after half of its steps);
  model.keras:E  end of epoch E, `model.keras` written to its temporary file,
                 not yet renamed into place;
  best.keras:E   the same for the new best model (its pending copy);
  checkpoint:E   epoch E's checkpoint files written, not yet recorded as the
                 latest checkpoint;
  model.lnx:E    right before the final `model.lnx` is written (E: the run's
                 epochs). The file is written atomically, so a kill while it
                 is written leaves the same state plus a stray temporary file.
"""

import os
import signal

from absl import logging
from lilnetx_tf.compat import keras

__all__ = ["ENV", "MidEpochKill", "kill_point", "mid_epoch_kill"]

ENV = "LILNETX_TEST_KILL_AT"


def _kill(point):
  logging.warning("%s=%s: killing this process (SIGKILL).", ENV, point)
  logging.flush()
  os.kill(os.getpid(), signal.SIGKILL)


def kill_point(name, epoch):
  """Kills this process if `ENV` names point `name` in epoch `epoch`."""
  point = f"{name}:{epoch}"
  if os.environ.get(ENV) == point:
    _kill(point)


class MidEpochKill(keras.callbacks.Callback):
  """Kills the process after half of the steps of epoch `epoch` (from 1)."""

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch
    self._current = None

  def on_epoch_begin(self, epoch, logs=None):
    self._current = epoch + 1

  def on_train_batch_end(self, batch, logs=None):
    if (self._current == self.epoch
        and batch + 1 == max(1, self.params["steps"] // 2)):
      _kill(f"batch:{self.epoch}")


def mid_epoch_kill():
  """The `MidEpochKill` callbacks `ENV` asks for: [] or one."""
  point = os.environ.get(ENV, "")
  if not point.startswith("batch:"):
    return []
  return [MidEpochKill(int(point.split(":", 1)[1]))]
