"""Benchmark: the shipped LeNet-5 config on both stacks, several seeds.

Runs the training CLI (`python -m train`) with `train/configs/mnist_lenet5.py`
for each seed under each stack's Python (one run at a time, the stacks
alternating), in `ROOT/<stack>_s<seed>` (a finished run is only read again,
an interrupted one resumes), then prints per run and per stack (medians) the
test accuracy, coded latents, coded/entropy and file size, and the current
stack's median coded latents against the pinned stack's; writes them as
JSON.

  python bench/stack_seeds.py --root=/tmp/stack_seeds [--seeds=0,1,2]
      [--data_dir=../shared/data/mnist]
      [--json=docs/results/stacks_lenet5.json]
"""

import json
import pathlib
import statistics
import subprocess
import sys

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import provenance  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROOT = flags.DEFINE_string("root", None, "Folder of the runs.", required=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_DATA = flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data" /
                                            "mnist"), "MNIST folder.")
_PYTHONS = {"pinned": flags.DEFINE_string("pinned_python", ".venv/bin/python",
                                          "The pinned stack's Python."),
            "current": flags.DEFINE_string(
                "current_python", ".venv-current/bin/python",
                "The current stack's Python.")}
_JSON = flags.DEFINE_string("json", None, "Where to write the results.")


def _versions(python):
  code = ("import json, sys; sys.path.insert(0, '.'); "
          "from bench import provenance; "
          "print(json.dumps(provenance.stack_versions()))")
  out = subprocess.run([python, "-c", code], cwd=REPO, capture_output=True,
                       text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def _run(stack, seed):
  workdir = pathlib.Path(_ROOT.value) / f"{stack}_s{seed}"
  metrics = workdir / "metrics.json"
  if not metrics.exists():
    print(f"training {stack} seed {seed} in {workdir}", flush=True)
    subprocess.run(
        [_PYTHONS[stack].value, "-m", "train",
         "--config=train/configs/mnist_lenet5.py", f"--workdir={workdir}",
         f"--config.data_dir={_DATA.value}", f"--config.seed={seed}"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  final = json.loads(metrics.read_text())["final"]
  return {"seed": int(seed), "test_accuracy": final["test_accuracy"],
          "coded_bytes": final["coded_bytes"],
          "coded_to_entropy": final["coded_to_entropy"],
          "file_bytes": final["file_bytes"]}


def main(argv):
  del argv
  runs = {stack: [] for stack in _PYTHONS}
  for seed in _SEEDS.value:
    for stack in (_PYTHONS if int(seed) % 2 == 0 else reversed(_PYTHONS)):
      runs[stack].append(_run(stack, seed))
  summary = {}
  print(f"{'stack':<9}{'seed':>5}{'test acc':>10}{'latents B':>11}"
        f"{'coded/H':>9}{'file B':>8}")
  for stack, rows in runs.items():
    for r in sorted(rows, key=lambda r: r["seed"]):
      print(f"{stack:<9}{r['seed']:>5}{100 * r['test_accuracy']:>9.2f}%"
            f"{r['coded_bytes']:>11,}{r['coded_to_entropy']:>9.4f}"
            f"{r['file_bytes']:>8,}")
    summary[stack] = {
        key: statistics.median(r[key] for r in rows)
        for key in ("test_accuracy", "coded_bytes", "coded_to_entropy",
                    "file_bytes")}
    s = summary[stack]
    print(f"{stack:<9}{'med.':>5}{100 * s['test_accuracy']:>9.2f}%"
          f"{s['coded_bytes']:>11,.0f}{s['coded_to_entropy']:>9.4f}"
          f"{s['file_bytes']:>8,.0f}")
  ratio = summary["current"]["coded_bytes"] / summary["pinned"]["coded_bytes"]
  print(f"median coded latents, current / pinned: {ratio:.4f} "
        "(target within 3%)")
  if _JSON.value:
    provenance.write_results(_JSON.value, {
        "config": "train/configs/mnist_lenet5.py", "runs": runs,
        "medians": summary, "coded_ratio_current_to_pinned": ratio,
        "stacks": {s: _versions(_PYTHONS[s].value) for s in _PYTHONS}})


if __name__ == "__main__":
  app.run(main)
