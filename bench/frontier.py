"""Benchmark: the LeNet-5 frontier from one run against separate runs.

Trains `train/configs/mnist_lenet5_frontier.py` (one run, lambda_I raised
along its schedule, a `.lnx` at each point) for each seed in
`ROOT/s<seed>` (a finished run is only read again, an interrupted one
resumes), then compares every point with the frontier of separately trained
single-lambda runs (the LilNetX rows of docs/results/compare_mnist_lenet5.json,
same data and seed 0), interpolated linearly in file bytes at the point's
size: the point's accuracy minus the separate runs' there. Prints a table and
writes JSON.

  python bench/frontier.py --root=/tmp/frontier [--seeds=0,1,2]
      [--data_dir=../shared/data/mnist] [--json=docs/results/frontier_lenet5.json]
"""

import json
import pathlib
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIG = "train/configs/mnist_lenet5_frontier.py"
SEPARATE = REPO / "docs" / "results" / "compare_mnist_lenet5.json"

_ROOT = flags.DEFINE_string("root", None, "Folder of the runs.", required=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_DATA = flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data" /
                                            "mnist"), "MNIST folder.")
_JSON = flags.DEFINE_string("json", None, "Where to write the results.")


def separate_frontier(path=SEPARATE):
  """`(file bytes, test accuracy)` of the separate LilNetX runs, by size."""
  with open(path) as f:
    rows = json.load(f)["rows"]
  return sorted((r["bytes"], r["test_accuracy"]) for r in rows
                if r["name"].startswith("lilnetx_lambda"))


def below_separate(file_bytes, accuracy, separate):
  """Points by which `accuracy` is below the separate runs at that size.

  Linear interpolation in bytes between the separate runs; beyond their
  range, the nearest run's accuracy (a larger file is not held to more).
  """
  sizes, accuracies = zip(*separate)
  return 100 * (float(np.interp(file_bytes, sizes, accuracies)) - accuracy)


def _run(seed):
  workdir = pathlib.Path(_ROOT.value) / f"s{seed}"
  metrics = workdir / "metrics.json"
  seconds = None
  if not metrics.exists():
    print(f"training seed {seed} in {workdir}", flush=True)
    start = time.time()
    subprocess.run(
        [sys.executable, "-m", "train", f"--config={CONFIG}",
         f"--workdir={workdir}", f"--config.data_dir={_DATA.value}",
         f"--config.seed={seed}", "--config.log_histograms=False"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.time() - start
  with open(metrics) as f:
    train_seconds = json.load(f)["train_wall_seconds"]
  with open(workdir / "frontier" / "frontier.json") as f:
    rows = json.load(f)["rows"]
  return dict(seed=seed, workdir=str(workdir), train_wall_seconds=train_seconds,
              wall_seconds=seconds, points=rows)


def main(argv):
  del argv
  separate = separate_frontier()
  runs = [_run(int(seed)) for seed in _SEEDS.value]
  print(f"separate runs (compare_mnist_lenet5.json): " + ", ".join(
      f"{b:,} B at {100 * a:.2f}%" for b, a in separate))
  print(f"{'seed':>4} {'lambda_I':>8} {'file B':>8} {'test %':>7} "
        f"{'below separate':>14}")
  for run in runs:
    for point in run["points"]:
      point["below_separate_points"] = below_separate(
          point["file_bytes"], point["test_accuracy"], separate)
      print(f"{run['seed']:>4} {point['lambda_rate']:>8g} "
            f"{point['file_bytes']:>8,} {100 * point['test_accuracy']:>7.2f} "
            f"{point['below_separate_points']:>14.2f}")
    in_range = [p for p in run["points"]
                if 0.985 <= p["test_accuracy"] <= 0.992]
    run["points_in_98.5_99.2"] = len(in_range)
    run["worst_below_separate"] = max(p["below_separate_points"]
                                      for p in run["points"])
    print(f"seed {run['seed']}: {len(in_range)} points in 98.5-99.2%, at "
          f"most {run['worst_below_separate']:.2f} points below the separate "
          f"runs, {run['train_wall_seconds']:.0f} s of training")
  if _JSON.value:
    provenance.write_results(_JSON.value, dict(
        config=CONFIG, separate=[dict(file_bytes=b, test_accuracy=a)
                                 for b, a in separate], runs=runs))


if __name__ == "__main__":
  app.run(main)
