"""The size / accuracy frontier from one run (`lilnetx_tf.Frontier`)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import data as data_lib
from lilnetx_tf.compressed import frontier as frontier_lib
from train import loop
from train.configs import digits_lenet


def test_parse_schedule_by_hand():
  assert frontier_lib.parse_schedule("1:6, 2:2,4.5:1") == [
      (1.0, 6), (2.0, 2), (4.5, 1)]


@pytest.mark.parametrize("spec, message", [
    ("1:6,2", "'2' is not lambda_I:epochs"),
    ("1:0", "epochs a positive int"),
    ("2:3,1:3", "must not fall: point 1 has 1.0 after 2.0"),
    ("-1:3", "lambda_I must be finite and >= 0"),
    ("nan:3", "lambda_I must be finite"),
])
def test_bad_schedules_are_refused_by_name(spec, message):
  with pytest.raises(ValueError, match=message):
    frontier_lib.parse_schedule(spec)


def test_rate_of_each_epoch_by_hand():
  frontier = lilnetx_tf.Frontier([(1, 3), (2, 1), (4, 2)], "unused")
  assert frontier.epochs == 6
  assert [frontier.rate(e) for e in range(7)] == [1, 1, 1, 2, 4, 4, 4]


def test_pick_meets_a_size_or_an_accuracy_target():
  rows = [dict(file_bytes=9000, test_accuracy=0.992),
          dict(file_bytes=5000, test_accuracy=0.990),
          dict(file_bytes=4000, test_accuracy=0.991),
          dict(file_bytes=2500, test_accuracy=0.985)]
  pick = frontier_lib.pick
  assert pick(rows, max_bytes=5000) is rows[2]   # Most accurate that fits.
  assert pick(rows, max_bytes=2000) is None
  assert pick(rows, min_accuracy=0.99) is rows[2]  # Smallest that is enough.
  assert pick(rows, min_accuracy=0.995) is None
  with pytest.raises(ValueError, match="exactly one"):
    pick(rows)
  with pytest.raises(ValueError, match="no 'validation_accuracy'"):
    pick(rows, max_bytes=1, metric="validation")


class _Rates(tf.keras.callbacks.Callback):
  """Records lambda_rate as each epoch trains with it."""

  def __init__(self):
    super().__init__()
    self.rates = []

  def on_epoch_end(self, epoch, logs=None):
    self.rates.append(float(self.model.lambda_rate.numpy()))


@pytest.fixture(scope="module")
def digits():
  x, y, info = data_lib.load_arrays("digits", "train")
  xt, yt, _ = data_lib.load_arrays("digits", "test")
  return (data_lib.normalize(x, info).astype(np.float32), y,
          data_lib.normalize(xt, info).astype(np.float32), yt)


def _model():
  inputs = tf.keras.Input((8, 8, 1))
  h = tf.keras.layers.Conv2D(16, 3, activation="relu")(inputs)
  h = tf.keras.layers.Flatten()(h)
  h = tf.keras.layers.Dense(32, activation="relu")(h)
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(h))
  cm = lilnetx_tf.compressible(model, seed=0, initial_prior_steps=50)
  cm.compile(tf.keras.optimizers.Adam(2e-2),
             loss=tf.keras.losses.SparseCategoricalCrossentropy(
                 from_logits=True))
  return cm


def test_one_run_writes_a_falling_frontier_and_resumes(digits, tmp_path):
  x, y, xt, yt = digits
  directory = str(tmp_path / "front")
  schedule = [(0.3, 3), (3.0, 1), (30.0, 1)]
  model, rates = _model(), _Rates()
  frontier = lilnetx_tf.Frontier(schedule, directory, data={"test": (xt, yt)})
  model.fit(x, y, batch_size=64, epochs=4, verbose=0,
            callbacks=[frontier, lilnetx_tf.RateWarmup(1), rates])
  # The warm-up ramps point 0 up (float32 variable).
  assert rates.rates == pytest.approx([0.0, 0.3, 0.3, 3.0], rel=1e-7)
  assert [r["epoch"] for r in frontier.rows] == [3, 4]
  # Resumed at epoch 4: the rows on disk are kept, the last one added.
  resumed = lilnetx_tf.Frontier(schedule, directory, data={"test": (xt, yt)})
  model.fit(x, y, batch_size=64, epochs=5, initial_epoch=4, verbose=0,
            callbacks=[resumed, rates])
  assert rates.rates[-1] == 30.0
  rows = resumed.rows
  assert [(r["epoch"], r["lambda_rate"]) for r in rows] == [
      (3, 0.3), (4, 3.0), (5, 30.0)]
  with open(os.path.join(directory, "frontier.json")) as f:
    assert json.load(f)["rows"] == rows
  sizes = [r["file_bytes"] for r in rows]
  assert sizes[0] > sizes[1] > sizes[2]  # lambda_I 10x: smaller each time.
  for row in rows:
    path = os.path.join(directory, row["file"])
    assert os.path.getsize(path) == row["file_bytes"]
    plain = lilnetx_tf.load_compressed(path)  # The file's own accuracy.
    accuracy = np.mean(np.argmax(plain(xt).numpy(), -1) == yt)
    assert row["test_accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_training_cli_writes_the_frontier_table_and_plot(tmp_path):
  config = digits_lenet.get_config()
  config.update(epochs=3, frontier="0.5:2,4:1", coded_size_every_epoch=False)
  workdir = tmp_path / "run"
  loop.run(config, str(workdir))
  with open(workdir / "frontier" / "frontier.json") as f:
    rows = json.load(f)["rows"]
  assert [(r["epoch"], r["lambda_rate"]) for r in rows] == [(2, 0.5), (3, 4.0)]
  assert {"validation_accuracy", "test_accuracy"} <= set(rows[0])
  table = (workdir / "frontier" / "frontier.txt").read_text()
  assert f"{rows[1]['file_bytes']:,}" in table and "lambda_4.lnx" in table
  assert (workdir / "frontier" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
  config.epochs = 4
  with pytest.raises(ValueError, match="trains 3 epochs, config.epochs is 4"):
    loop.run(config, str(tmp_path / "other"))


def test_segment_schedule_restarts_and_ends_each_segment_near_zero():
  from train.schedule import SegmentCosineDecay  # pylint: disable=g-import-not-at-top
  schedule = SegmentCosineDecay(1.0, [10, 4], warmup_steps=2, restart=0.5)
  rates = [float(schedule(step)) for step in range(15)]
  # Warm-up from peak / 2, then half a cosine over the 8 steps left.
  assert rates[:2] == pytest.approx([0.5, 1.0])
  assert rates[2:10] == pytest.approx(
      [0.5 * (1 + np.cos(np.pi * k / 8)) for k in range(8)], abs=1e-6)
  # Segment 1 restarts at half the peak and decays over its 4 steps.
  assert rates[10:14] == pytest.approx(
      [0.25 * (1 + np.cos(np.pi * k / 4)) for k in range(4)], abs=1e-6)
  assert rates[14] == pytest.approx(0.0, abs=1e-7)  # After the last segment.
  config = schedule.get_config()
  assert type(schedule).from_config(config).get_config() == config
