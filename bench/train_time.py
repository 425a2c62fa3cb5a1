"""Benchmark: training wall time of LilNetX against the float baseline.

Trains one task's network with the training CLI's loop (`train.loop.run`),
in turn as LilNetX (the task config as shipped) and as the plain float
model (`config.vanilla`, no weight decay, as `bench/compare.py` trains its
baseline): the same data pipeline, schedule and callbacks, so that the ratio
is the method's cost, not a harness's. The two alternate, `--rounds` times
each (the order swapped every round), so that both see the same machine
conditions, and the table reports the medians of the loop's own
`train_wall_seconds` (its epochs; LilNetX's initial and final prior fits
are outside it) and their ratio.

  python bench/train_time.py [--task=mnist_lenet300] [--epochs=3]
      [--rounds=3] [--data_dir=...]
"""

import pathlib
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

import lilnetx_tf  # pylint: disable=unused-import  # Quiets TF first.

from bench import run_configs
from train import loop
from train.configs import mnist_lenet300
from train.configs import mnist_lenet5

_DATA_ROOT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
_TASKS = {"mnist_lenet5": (mnist_lenet5, "mnist"),
          "mnist_lenet300": (mnist_lenet300, "mnist")}

_TASK = flags.DEFINE_enum("task", "mnist_lenet300", list(_TASKS),
                          "Task (its shipped training config).")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per run.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Runs per mode.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "The task's data; default ../shared/data/<dataset> "
    "beside the repository.")


def _config(vanilla):
  module, dataset = _TASKS[_TASK.value]
  config = module.get_config()
  config.data_dir = _DATA_DIR.value or str(_DATA_ROOT / dataset)
  run_configs.with_budget(config, _EPOCHS.value)
  return run_configs.float_baseline(config) if vanilla else config


def main(argv):
  del argv
  if _EPOCHS.value < 1 or _ROUNDS.value < 1:
    raise app.UsageError("--epochs and --rounds must be >= 1.")
  modes = {"float baseline": True, "LilNetX": False}
  seconds = {name: [] for name in modes}
  out = pathlib.Path(tempfile.mkdtemp(prefix="lilnetx_train_time_"))
  try:
    for round_ in range(_ROUNDS.value):
      order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
      for name in order:
        workdir = out / "run"
        shutil.rmtree(workdir, ignore_errors=True)
        metrics = loop.run(_config(modes[name]), str(workdir))
        seconds[name].append(metrics["train_wall_seconds"])
        print(f"round {round_ + 1}/{_ROUNDS.value}: {name} "
              f"{seconds[name][-1]:.1f} s", flush=True)
  finally:
    shutil.rmtree(out, ignore_errors=True)
  base = statistics.median(seconds["float baseline"])
  print()
  print(f"{_TASK.value}, {_EPOCHS.value} epochs per run, medians of "
        f"{_ROUNDS.value} alternating runs per mode (train.loop epochs)")
  print(f"{'mode':<16}{'train s':>9}{'ratio':>8}")
  for name in modes:
    median = statistics.median(seconds[name])
    print(f"{name:<16}{median:>9.1f}{median / base:>8.3f}")


if __name__ == "__main__":
  app.run(main)
