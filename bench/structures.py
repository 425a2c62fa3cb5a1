"""Benchmark: what each sparsity structure gives, LeNet-5 on MNIST.

Trains `train/configs/mnist_lenet5.py` (the size recipe: slices, the
config's lambda_rho) and `train/configs/mnist_lenet5_speed.py` at each
lambda_rho of `--lambda_sparsity` in `ROOT/<name>` (a finished run is only
read again), exports each with `python -m export.tflite` (channel removal,
verification on 1,000 test images, float32 latency against the dense export
of the same weights, batch 1, 1 and 2 threads, interleaved, medians), and
prints per run: test accuracy, `.lnx` bytes, output channels kept,
parameters and MACs before and after removal, and the latency ratio.

  python bench/structures.py --root=/tmp/structures \
      [--lambda_sparsity=1e-4,3e-4,1e-3] [--json=docs/results/structures_lenet5.json]
"""

import json
import pathlib
import subprocess
import sys

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROOT = flags.DEFINE_string("root", None, "Folder of the runs.", required=True)
_RHOS = flags.DEFINE_list("lambda_sparsity", ["1e-4", "3e-4", "1e-3"],
                          "lambda_rho of the speed recipe's runs.")
_DATA = flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data" /
                                            "mnist"), "MNIST folder.")
_JSON = flags.DEFINE_string("json", None, "Where to write the results.")


def _run(name, config, overrides):
  workdir = pathlib.Path(_ROOT.value) / name
  if not (workdir / "metrics.json").exists():
    print(f"training {name} in {workdir}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "train", f"--config={config}",
         f"--workdir={workdir}", f"--config.data_dir={_DATA.value}",
         "--config.log_histograms=False", *overrides],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  report_path = workdir / "export_report.json"
  if not report_path.exists():
    subprocess.run(
        [sys.executable, "-m", "export.tflite", f"--workdir={workdir}",
         f"--output={workdir / 'model.tflite'}", "--check-samples=1000"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  with open(workdir / "metrics.json") as f:
    final = json.load(f)["final"]
  with open(report_path) as f:
    report = json.load(f)
  return dict(
      name=name, config=config, overrides=overrides,
      test_accuracy=final["test_accuracy"], coded_bytes=final["coded_bytes"],
      file_bytes=final["file_bytes"],
      channels_kept=report["channels"]["kept"],
      channels_total=report["channels"]["total"],
      params_before=report["params"]["before"],
      params_after=report["params"]["after"],
      macs_before=report["macs"]["before"], macs_after=report["macs"]["after"],
      latency_ms={threads: dict(dense=row["dense"], exported=row["exported"],
                                speedup=row["speedup"])
                  for threads, row in report["latency_ms"].items()})


def main(argv):
  del argv
  runs = [_run("size", "train/configs/mnist_lenet5.py", [])]
  runs += [_run(f"speed_{rho}", "train/configs/mnist_lenet5_speed.py",
                [f"--config.lambda_sparsity={rho}"]) for rho in _RHOS.value]
  print(f"{'run':<14} {'acc %':>6} {'.lnx B':>7} {'channels':>9} "
        f"{'params':>17} {'MACs x fewer':>12} {'1 thread':>8} {'2 threads':>9}")
  for run in runs:
    print(f"{run['name']:<14} {100 * run['test_accuracy']:>6.2f} "
          f"{run['file_bytes']:>7,} "
          f"{run['channels_kept']:>4}/{run['channels_total']:<4} "
          f"{run['params_before']:>8,}->{run['params_after']:<8,} "
          f"{run['macs_before'] / run['macs_after']:>12.2f} "
          f"{run['latency_ms']['1']['speedup']:>7.2f}x "
          f"{run['latency_ms']['2']['speedup']:>8.2f}x")
  if _JSON.value:
    provenance.write_results(_JSON.value, dict(runs=runs))


if __name__ == "__main__":
  app.run(main)
