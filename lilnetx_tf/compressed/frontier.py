"""The size / accuracy frontier from one training run.

Each point of a size / accuracy trade-off would otherwise cost a training
run. `Frontier` trains one model along a rising lambda_I schedule instead:
`[(lambda_I, epochs), ...]`, each segment training its epochs at its lambda_I
(from the previous point's weights), and at the end of each segment it writes
the model as a `.lnx` file and records its size and accuracy. The model
compresses further at each step up, so the files trace the frontier from the
most accurate to the smallest; `pick` chooses the point that meets a target
size or accuracy.

The schedule is a function of the epoch alone, and the rows are read back
from `frontier.json` when training resumes, so a resumed run goes on where it
stopped.
"""

import json
import os

import numpy as np
import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.compressed import fileformat

__all__ = ["Frontier", "parse_schedule", "pick"]

ROWS_FILE = "frontier.json"


def parse_schedule(spec):
  """`"1:8,2:2,4:2"` (lambda_I:epochs, comma separated) as a schedule.

  Raises:
    ValueError: naming the part that is not `lambda:epochs` with a
      non-negative lambda_I and a positive whole number of epochs, or for a
      lambda_I lower than the one before.
  """
  schedule = []
  for part in str(spec).split(","):
    try:
      rate, epochs = part.split(":")
      rate, epochs = float(rate), int(epochs)
    except ValueError:
      raise ValueError(f"Frontier point {part!r} is not lambda_I:epochs "
                       "(e.g. 2:3).") from None
    schedule.append((rate, epochs))
  _check(schedule)
  return schedule


def _check(schedule):
  if not schedule:
    raise ValueError("A frontier needs at least one (lambda_I, epochs) point.")
  for i, (rate, epochs) in enumerate(schedule):
    if not (rate >= 0 and np.isfinite(rate)) or not (
        isinstance(epochs, (int, np.integer)) and epochs > 0):
      raise ValueError(f"Frontier point {i} ({rate}, {epochs}): lambda_I "
                       "must be finite and >= 0, epochs a positive int.")
    if i and rate < schedule[i - 1][0]:
      raise ValueError(f"Frontier lambda_I must not fall: point {i} has "
                       f"{rate} after {schedule[i - 1][0]}.")


def _accuracy(model, data):
  """Top-1 accuracy of `model` in inference mode on (x, y) or batches."""
  if isinstance(data, tf.data.Dataset):
    batches = data
  else:
    images, labels = data
    batches = [(images[i:i + 256], labels[i:i + 256])
               for i in range(0, len(labels), 256)]
  right = total = 0
  for x, y in batches:
    logits = np.asarray(model(x, training=False))
    y = np.asarray(y).reshape(-1)
    right += int(np.sum(logits.argmax(-1) == y))
    total += len(y)
  return right / total


class Frontier(keras.callbacks.Callback):
  """Raises lambda_I along a schedule and writes a `.lnx` at each point.

  At the start of every epoch it sets the model's `lambda_rate_target` (and
  `lambda_rate`) to its segment's lambda_I; put `RateWarmup` after it to ramp
  the first segment up. At the end of each segment it writes
  `directory/lambda_<lambda_I>.lnx` and appends a row to
  `directory/frontier.json`: epoch, lambda_I, file and latent bytes, the
  accuracy on each of `data` (e.g. validation and test).

  Args:
    schedule: `[(lambda_I, epochs), ...]` with lambda_I not falling, or its
      string form (`parse_schedule`). Train for the sum of the epochs.
    directory: Where the files go (created).
    data: Name -> `(x, y)` arrays or a `tf.data.Dataset` of batches, whose
      accuracy each row records (e.g. `{"test": (x_test, y_test)}`).
    **save_kwargs: Passed to `save_compressed` (e.g. `fold_batch_norm`).

  Usage:

    frontier = lilnetx_tf.Frontier([(1, 6), (2, 2), (4, 2), (8, 2)], "front",
                                   data={"validation": (x_val, y_val)})
    model.fit(x, y, epochs=frontier.epochs,
              callbacks=[frontier, lilnetx_tf.RateWarmup(1)])
    best = lilnetx_tf.compressed.frontier.pick(frontier.rows, max_bytes=2400,
                                               metric="validation")
  """

  def __init__(self, schedule, directory, data=None, **save_kwargs):
    super().__init__()
    if isinstance(schedule, str):
      schedule = parse_schedule(schedule)
    schedule = [(float(rate), int(epochs)) for rate, epochs in schedule]
    _check(schedule)
    self.schedule = schedule
    self.directory = directory
    self.data = dict(data or {})
    self.save_kwargs = save_kwargs
    self.rows = []
    self.ends = np.cumsum([epochs for _, epochs in schedule]) - 1

  @property
  def epochs(self):
    """The epochs the schedule trains for."""
    return int(self.ends[-1]) + 1

  def rate(self, epoch):
    """The lambda_I of (0-based) `epoch`; the last one after the schedule."""
    index = min(int(np.searchsorted(self.ends, epoch)), len(self.ends) - 1)
    return self.schedule[index][0]

  def on_train_begin(self, logs=None):
    os.makedirs(self.directory, exist_ok=True)
    path = os.path.join(self.directory, ROWS_FILE)
    if os.path.exists(path):
      with open(path) as f:
        self.rows = json.load(f)["rows"]

  def on_epoch_begin(self, epoch, logs=None):
    rate = self.rate(epoch)
    self.model.lambda_rate_target = rate
    self.model.lambda_rate.assign(rate)

  def on_epoch_end(self, epoch, logs=None):
    if epoch not in self.ends:
      return
    rate = self.rate(epoch)
    path = os.path.join(self.directory, f"lambda_{rate:g}.lnx")
    sizes = fileformat.save_compressed(self.model, path, **self.save_kwargs)
    row = {"epoch": epoch + 1, "lambda_rate": rate,
           "file": os.path.basename(path),
           "file_bytes": sizes["file_bytes"],
           "latent_bytes": sizes["latent_bytes"]}
    for name, data in self.data.items():
      row[f"{name}_accuracy"] = _accuracy(self.model, data)
    self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
    atomic_write(os.path.join(self.directory, ROWS_FILE),
                 json.dumps({"schedule": self.schedule, "rows": self.rows},
                            indent=1))


def pick(rows, *, max_bytes=None, min_accuracy=None, metric="test"):
  """The frontier point that meets a target size or accuracy.

  Args:
    rows: `Frontier.rows` (or `frontier.json`'s "rows").
    max_bytes: The most accurate point whose file is at most this size.
    min_accuracy: Or the smallest file at least this accurate (a fraction).
    metric: Whose accuracy: a name of `Frontier`'s `data`.

  Returns:
    The row, or None if no point meets the target.

  Raises:
    ValueError: unless exactly one target is given, or if the rows lack the
      metric.
  """
  if (max_bytes is None) == (min_accuracy is None):
    raise ValueError("Give exactly one of max_bytes and min_accuracy.")
  key = f"{metric}_accuracy"
  if any(key not in row for row in rows):
    raise ValueError(f"The frontier's rows have no {key!r}; they have "
                     f"{sorted(rows[0]) if rows else 'no rows'}.")
  if max_bytes is not None:
    fits = [r for r in rows if r["file_bytes"] <= max_bytes]
    return max(fits, key=lambda r: (r[key], -r["file_bytes"]), default=None)
  fits = [r for r in rows if r[key] >= min_accuracy]
  return min(fits, key=lambda r: (r["file_bytes"], -r[key]), default=None)
