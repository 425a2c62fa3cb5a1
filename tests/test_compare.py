"""`bench/compare.py` (LilNetX against tfmot): its recipes and a smoke run.

The recorded tables (docs/results/compare_*.json) are what the tasks'
configs train. The benchmark's `--quick` mode on MNIST LeNet-5 (512 training
and 256 test images, one epoch, every pipeline) runs in a subprocess, its
table is checked, then it resumes, adding LilNetX fine-tuned from the
baseline. About three minutes on two shared CPU cores.
"""

import gzip
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bench import run_configs
from lilnetx_tf import data as data_lib
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.deploy import tflite_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"

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


def _compare(data_dir, out, *flags):
  result = subprocess.run(
      [sys.executable, "-m", "bench.compare", "--task=mnist_lenet5", "--quick",
       f"--data_dir={data_dir / 'mnist'}", f"--output_dir={out}", *flags],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
      capture_output=True, text=True, timeout=900, check=False)
  return result, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("task", sorted(run_configs.TASKS))
def test_the_recorded_rows_are_the_configs_recipes(task):
  module = run_configs.TASKS[task]["config"]
  with open(RESULTS / f"compare_{task}.json") as f:
    recorded = json.load(f)
  path = run_configs.config_path(task)
  assert recorded["config"] == path and (ROOT / path).is_file()
  for recipe in run_configs.RECIPES:
    config = run_configs.recipe_config(task, recipe)
    expected = module.get_config(recipe)
    # At the config's own budget the benchmark changes only what is logged:
    # its epoch rules give each recipe's own epochs and warm-ups.
    changed = {k for k in expected.keys() if config[k] != expected[k]}
    assert changed <= {"log_histograms", "coded_size_every_epoch"}, (
        recipe, changed)
    assert (config.model, config.dataset, config.batch_size,
            config.model_options.to_dict(), config.validation_fraction) == (
                recorded["model"], recorded["dataset"],
                recorded["batch_size"], recorded["model_options"], 0.0)
    if recipe != "finetune":
      assert config.epochs == recorded["epochs"], recipe
  assert module.get_config().lambda_rate in run_configs.rates_of(task,
                                                                 "scratch")
  # Every recorded LilNetX row of the task's config is one of its rates.
  names = {f"lilnetx_{prefix}lambda{rate:g}"
           for recipe, prefix in (("scratch", ""), ("finetune", "finetune_"),
                                  ("distill", "distill_"))
           for rate in run_configs.rates_of(task, recipe)}
  rows = [row["name"] for row in recorded["rows"] if row["family"] ==
          "lilnetx" and row.get("config", path) == path]
  assert rows and set(rows) <= names, rows


# What a row measures, not how long it took.
_TIMES = ("train_wall_seconds", "convert_seconds")


def _measured(rows):
  return [{k: v for k, v in row.items() if k not in _TIMES} for row in rows]


def test_quick_comparison_runs_every_pipeline(data_dir, tmp_path):
  out = tmp_path / "compare"
  result, output = _compare(data_dir, out)
  assert result.returncode == 0, output
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
  assert table["quick"] and table["epochs"] == 1 and table["complete"]
  # Where the table comes from: the config, this stack, the command.
  assert table["config"] == "train/configs/mnist_lenet5.py"
  for package in ("tensorflow", "tensorflow-model-optimization"):
    assert table["stack"][package] == importlib.metadata.version(package)
  assert table["command"].startswith("python bench/compare.py "
                                     "--task=mnist_lenet5 --quick")
  assert (out / "compare_mnist_lenet5.png").stat().st_size > 0

  # Resumed: finished pipelines are kept. A tfmot pipeline whose rows are
  # gone trains again, on a fresh copy of the data pipeline, and measures
  # what it measured in the first run (its training is seeded); a LilNetX
  # one is re-reported from its finished run directory. LilNetX fine-tuned
  # from the baseline's kept model is added.
  (out / "rows" / "prune95.json").unlink()
  (out / "rows" / "lilnetx_lambda4.json").unlink()
  result, output = _compare(
      data_dir, out, "--resume",
      "--pipelines=baseline,tfmot,lilnetx,lilnetx_finetune,lilnetx_distill")
  assert result.returncode == 0, output
  assert result.stdout.count("kept from the earlier run") == 5, output
  with open(out / "compare_mnist_lenet5.json") as f:
    resumed = {row["name"]: row for row in json.load(f)["rows"]}
  row = resumed.pop("lilnetx_finetune_lambda2")
  distilled = resumed.pop("lilnetx_distill_lambda2")
  assert _measured(resumed.values()) == _measured(table["rows"])
  # Distilled: the same start, the baseline as teacher, the whole budget.
  with open(out / "lilnetx_distill_lambda2" / "config.json") as f:
    config = json.load(f)
  baseline = str(out / "baseline_float32" / "model.keras")
  assert config["init_weights"] == config["teacher"] == baseline
  assert (config["lambda_rate"], config["learning_rate"],
          config["epochs"]) == (2.0, 1e-2, table["epochs"])
  assert 0 < distilled["coded_latent_bytes"] < distilled["bytes"]

  # The fine-tuned file ships its accuracy; its time adds the baseline's.
  logits = fileformat.load_compressed_bytes(
      (out / row["file"]).read_bytes())(x).numpy()
  accuracy = float(np.mean(np.argmax(logits, -1) == y))
  assert abs(row["test_accuracy"] - accuracy) <= 1 / 256
  with open(out / "lilnetx_finetune_lambda2" / "metrics.json") as f:
    finetune_seconds = json.load(f)["train_wall_seconds"]
  assert row["train_wall_seconds"] == (
      resumed["baseline_float32"]["train_wall_seconds"] + finetune_seconds)
  with open(out / "lilnetx_finetune_lambda2" / "config.json") as f:
    config = json.load(f)
  assert config["init_weights"] == str(out / "baseline_float32" /
                                       "model.keras")
  assert (config["lambda_rate"], config["learning_rate"]) == (2.0, 1e-2)

  # Another budget in the same directory is refused.
  result, output = _compare(data_dir, out, "--resume", "--epochs=2")
  assert result.returncode != 0 and "other settings" in output, output
  assert "epochs 1 there, 2 now" in output, output
