"""End-to-end smoke test of `bench/compare.py` (LilNetX against tfmot).

Runs the benchmark's `--quick` mode on MNIST LeNet-5 (512 training and 256 test
images, one epoch, every pipeline) in a subprocess and checks the table it
writes. About two minutes on two shared CPU cores.
"""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

from lilnetx_tf import data as data_lib
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.deploy import tflite_check

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every pipeline of the mnist_lenet5 task, as named in the JSON table.
PIPELINES = (
    "baseline_float32",
    "ptq_int8",
    "cluster16_float",
    "prune90_int8",
    "prune90_cluster16_int8",
    "prune95_int8",
    "prune95_cluster16_int8",
    "lilnetx_lambda1",
    "lilnetx_lambda2",
    "lilnetx_lambda4",
)


def test_quick_comparison_runs_every_pipeline(data_dir, tmp_path):
  out = tmp_path / "compare"
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run(
      [sys.executable, "bench/compare.py", "--task=mnist_lenet5", "--quick",
       f"--data_dir={data_dir / 'mnist'}", f"--output_dir={out}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
      check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "quoted, not measured" in result.stdout

  with open(out / "compare_mnist_lenet5.json") as f:
    table = json.load(f)
  rows = {row["name"]: row for row in table["rows"]}
  assert set(rows) == set(PIPELINES)
  # Every accuracy, measured again from the file the row ships, on the same
  # 256 test images.
  x, y, info = data_lib.load_arrays("mnist", "test", limit=256,
                                    data_dir=str(data_dir / "mnist"))
  x = np.asarray(data_lib.normalize(x, info))
  for name, row in rows.items():
    assert row["bytes"] > 0, name
    content = (out / row["file"]).read_bytes()
    if row["file"].endswith(".lnx"):
      logits = fileformat.load_compressed_bytes(content)(x).numpy()
    else:
      logits = tflite_check.TFLiteRunner(gzip.decompress(content))(x)
    accuracy = float(np.mean(np.argmax(logits, -1) == y))
    # LilNetX rows are measured on the trained model, which the file decodes
    # to up to float rounding: one near-tie may flip.
    assert abs(row["test_accuracy"] - accuracy) <= 1 / 256, name
  for name in ("lilnetx_lambda1", "lilnetx_lambda2", "lilnetx_lambda4"):
    assert 0 < rows[name]["coded_latent_bytes"] < rows[name]["bytes"], name
    assert (out / rows[name]["file"]).stat().st_size == rows[name]["bytes"]
  gzipped = [row for row in rows.values() if row["file"].endswith(".gz")]
  assert len(gzipped) == 7
  for row in gzipped:
    assert row["bytes"] < table["float32_bytes"], row["name"]
    assert (out / row["file"]).stat().st_size == row["bytes"]
  assert table["quick"] and table["epochs"] == 1
  assert (out / "compare_mnist_lenet5.png").stat().st_size > 0
