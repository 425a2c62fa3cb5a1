"""Tests of the training CLI: configs, registries, runs, resume, strategies.

Runs use real data at small scale: scikit-learn's embedded digits, a slice of
MNIST's IDX files and a slice of the CIFAR-10 JPEG archive. Strategies that
need a fresh TensorFlow runtime (logical CPU devices, multi-worker) run in
subprocesses.
"""

import csv
import importlib
import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import zipfile

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import models
from lilnetx_tf import data as data_lib
from train import callbacks as callbacks_lib
from train import distribute
from train import loop
from train import registry
from train.configs import cifar10_resnet20
from train.configs import digits_lenet
from train.configs import mnist_lenet5
from train.schedule import warmup_cosine_decay

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "train" / "configs"


def _epochs_in_csv(workdir):
  with open(os.path.join(workdir, "log.csv"), newline="") as f:
    return [int(row["epoch"]) for row in csv.DictReader(f)]


def _digits_config(**changes):
  config = digits_lenet.get_config()
  config.update({"epochs": 2, "coded_size_every_epoch": False, **changes})
  return config


def _cli(*args, env=None, timeout=240):
  """Runs `python -m train ARGS` from the repository root."""
  return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT,
                        env=env, capture_output=True, text=True,
                        timeout=timeout, check=False)


# -- Configs and registries ----------------------------------------------------


def test_command_line_overrides_reach_the_config():
  argv = ["train", f"--config={CONFIGS / 'cifar10_resnet20.py'}",
          "--config.lambda_rate=3e-4", "--config.model_options.width=1",
          "--config.data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz",
          "--config.train_limit=500", "--config.vanilla=True"]
  flag_values = flags.FlagValues()
  # As `python -m train` defines it; overrides are read from the argv.
  config_flags.DEFINE_config_file("config", flag_values=flag_values,
                                  sys_argv=argv, lock_config=True)
  flag_values(argv)
  config = flag_values.config
  assert config.lambda_rate == 3e-4
  assert config.model_options.width == 1
  assert config.data_dir == "../shared/data/cifar10/cifar10-jpeg.tar.gz"
  assert config.train_limit == 500 and config.test_limit is None
  assert config.vanilla is True
  # Untouched fields keep their defaults (the reference's where it has one).
  assert (config.learning_rate, config.warmup_epochs, config.batch_size,
          config.prior_learning_rate, config.lambda_sparsity,
          config.weight_decay, config.reference) == (
              1e-2, 5, 256, 1e-2, 1e-6, 1e-6, False)
  registry.check_config(config)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("[!_]*.py")),
                         ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path):
  config = importlib.import_module(f"train.configs.{path.stem}").get_config()
  registry.check_config(config)


@pytest.mark.parametrize("field,value,valid", [
    ("model", "resnet21", "resnet20, resnet32"),
    ("dataset", "cifar11", "cifar10, cifar100, digits"),
    ("strategy", "gpus", "default, mirrored, multi_worker, tpu"),
    ("sparsity_structure", "rows", "slice"),
    ("data_source", "web", "auto, local, tfds"),
])
def test_unknown_names_fail_with_the_valid_names(field, value, valid):
  config = cifar10_resnet20.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=f"{value}.*{valid}"):
    registry.check_config(config)


def test_bad_values_and_model_options_are_rejected():
  config = digits_lenet.get_config()
  with pytest.raises(ValueError, match="'width'.*lenet_300_100.*none"):
    config.model_options = {"width": 2}
    registry.check_config(config)
  config = digits_lenet.get_config()
  config.batch_size = 0
  with pytest.raises(ValueError, match="batch_size.*>= 1.*got 0"):
    registry.check_config(config)
  config = digits_lenet.get_config()
  config.warmup_epochs = config.epochs + 1
  with pytest.raises(ValueError, match="warmup_epochs"):
    registry.check_config(config)


def test_cli_rejects_unknown_model_before_training(tmp_path):
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={tmp_path / 'run'}", "--config.model=lenet6")
  assert result.returncode != 0
  assert "Unknown model 'lenet6'; valid names: resnet20" in result.stderr
  assert "lenet5" in result.stderr
  assert not (tmp_path / "run").exists()


def test_log_to_a_file_has_a_line_per_epoch_not_per_step(tmp_path):
  """With stdout not a terminal, no progress bar (one line per step)."""
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={tmp_path / 'run'}", "--config.epochs=2")
  assert result.returncode == 0, result.stderr[-2000:]
  output = result.stdout + result.stderr
  assert "\r" not in output and "\x08" not in output
  steps = 1437 // 64
  assert output.count(f"{steps}/{steps}") == 2  # Keras's line per epoch.
  assert output.count("epoch 1/2 |") == output.count("epoch 2/2 |") == 1


def _snapshot(directory):
  """Path -> bytes of every file under `directory`."""
  return {str(p): p.read_bytes() for p in pathlib.Path(directory).rglob("*")
          if p.is_file()}


def test_workdir_of_another_architecture_is_refused_untouched(tmp_path):
  workdir = tmp_path / "run"
  loop.run(_digits_config(epochs=1), str(workdir))
  before = _snapshot(workdir)
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={workdir}", "--config.epochs=2",
                "--config.dataset=mnist", "--config.model=lenet5")
  assert result.returncode != 0
  assert ("holds a run with config.dataset = 'digits', this command asks "
          "for 'mnist'") in result.stderr
  assert "Traceback" not in result.stderr
  assert _snapshot(workdir) == before


def test_tpu_strategy_fails_clearly_without_a_tpu():
  with pytest.raises(RuntimeError, match="no TPU was found"):
    distribute.make_strategy("tpu")


def test_schedule_warms_up_then_decays_by_cosine():
  schedule = warmup_cosine_decay(1e-2, total_steps=100, warmup_steps=10)
  rates = np.array([float(schedule(s)) for s in range(101)])
  assert rates[0] == pytest.approx(1e-3)  # The first step already counts.
  assert np.all(np.diff(rates[:11]) > 0) and np.all(np.diff(rates[10:]) <= 0)
  assert rates[10] == pytest.approx(1e-2)
  assert rates[55] == pytest.approx(5e-3, rel=1e-5)  # Half-way down.
  assert rates[100] == pytest.approx(0, abs=1e-9)
  # A built-in Keras schedule: saved models need no code of ours to load.
  config = tf.keras.optimizers.schedules.serialize(schedule)
  assert config["module"].startswith("keras.")
  clone = tf.keras.optimizers.schedules.deserialize(config)
  assert float(clone(37)) == float(schedule(37))
  no_warmup = warmup_cosine_decay(1e-2, total_steps=10)
  assert float(no_warmup(0)) == pytest.approx(1e-2)
  with pytest.raises(ValueError, match="warmup_steps"):
    warmup_cosine_decay(1e-2, total_steps=10, warmup_steps=11)


# -- Runs ----------------------------------------------------------------------


def test_digits_run_writes_consistent_outputs_and_is_not_repeated(tmp_path):
  workdir = str(tmp_path / "run")
  metrics = loop.run(_digits_config(log_histograms=True), workdir)
  for name in ("config.json", "model.keras", "best.keras", "metrics.json",
               "report.png", "log.csv"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, "report.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  tags = set()
  for run in ("train", "histograms"):
    for path in (tmp_path / "run" / "tensorboard" / run).glob("events*"):
      for event in tf.compat.v1.train.summary_iterator(str(path)):
        tags.update(f"{run}/{v.tag}" for v in event.summary.value)
  assert {"train/epoch_loss", "train/epoch_accuracy",
          "train/epoch_learning_rate", "train/epoch_estimated_bytes",
          "train/epoch_entropy_bytes", "train/epoch_estimated_to_entropy",
          "train/epoch_slice_sparsity", "histograms/latents/fc1",
          "histograms/latents/logits"} <= tags
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"] == "lenet_300_100"
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))
  assert _epochs_in_csv(workdir) == [0, 1]

  final = metrics["final"]
  assert metrics["epochs"] == final["epoch"] == 2
  assert (metrics["train_examples"], metrics["test_examples"]) == (1437, 360)
  assert 0.5 < final["test_accuracy"] <= 1
  assert 0 < final["coded_bytes"] < final["float32_bytes"] == 4 * 50200
  assert 0 <= final["slice_sparsity"] < 1
  assert 0 < final["macs_effective"] <= final["macs_dense"] == 50200
  assert metrics["best"]["test_accuracy"] >= final["test_accuracy"]
  if importlib.util.find_spec("lilnetx_tf.compressed.fileformat"):
    lnx = os.path.getsize(os.path.join(workdir, "model.lnx"))
    assert final["file_bytes"] == lnx > final["coded_bytes"]
  else:
    assert final["file_bytes"] is None

  # model.keras is the final model: same accuracy, same coded size; and it
  # refers to no code of `train`, so export tools load it with lilnetx_tf.
  with zipfile.ZipFile(os.path.join(workdir, "model.keras")) as archive:
    assert '"module": "train' not in archive.read("config.json").decode()
  model = tf.keras.models.load_model(os.path.join(workdir, "model.keras"))
  assert isinstance(model, lilnetx_tf.LilNetXModel)
  test_ds, _ = data_lib.build_dataset("digits", "test", batch_size=64,
                                      training=False)
  accuracy = model.evaluate(test_ds, return_dict=True, verbose=0)["accuracy"]
  assert accuracy == pytest.approx(final["test_accuracy"], abs=1e-6)
  coded = sum(len(c.data) for c in lilnetx_tf.compress_latents(model))
  assert coded == final["coded_bytes"]

  # Re-running a finished run trains nothing and returns the same figures.
  stamp = os.path.getmtime(os.path.join(workdir, "log.csv"))
  assert loop.run(_digits_config(log_histograms=True), workdir) == json.loads(
      json.dumps(metrics))
  assert os.path.getmtime(os.path.join(workdir, "log.csv")) == stamp


class _AtStep(tf.keras.callbacks.Callback):
  """Acts at one step: `epoch` (0-based) and `batch` of it."""

  def __init__(self, epoch, batch):
    super().__init__()
    self.epoch, self.batch, self._current = epoch, batch, None

  def on_epoch_begin(self, epoch, logs=None):
    self._current = epoch

  def _due(self, batch):
    return (self._current, batch) == (self.epoch, self.batch)


class _Crash(_AtStep):
  """Fails in the middle of an epoch, like a killed process."""

  def on_train_batch_end(self, batch, logs=None):
    if self._due(batch):
      raise RuntimeError("simulated crash")


def test_crash_mid_epoch_then_rerun_resumes_with_same_epoch_count(tmp_path):
  workdir = str(tmp_path / "run")
  config = _digits_config(epochs=3, rate_warmup_epochs=2)
  with pytest.raises(RuntimeError, match="simulated crash"):
    loop.run(config, workdir, extra_callbacks=[_Crash(epoch=1, batch=5)])
  assert _epochs_in_csv(workdir) == [0]
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))

  metrics = loop.run(config, workdir)
  assert metrics["epochs"] == 3
  assert _epochs_in_csv(workdir) == [0, 1, 2]  # No repeated or lost epoch.
  with open(os.path.join(workdir, "log.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [float(r["lambda_rate"]) for r in rows] == pytest.approx(
      [0, 0.5, 1.0])
  # Both optimizers continued from the checkpoint: each took every step of the
  # 3 epochs once (a restart would have lost epoch 1's steps). The priors also
  # took `fit`'s initial fitting steps, once per run.
  steps = 1437 // config.batch_size
  model = tf.keras.models.load_model(os.path.join(workdir, "model.keras"))
  assert int(model.optimizer.iterations) == 3 * steps
  fitting = model.initial_prior_steps
  assert int(model.prior_optimizer.iterations) == (
      2 * fitting + model.prior_steps * 3 * steps)
  schedule = warmup_cosine_decay(config.learning_rate, total_steps=3 * steps,
                                 warmup_steps=steps)
  assert [float(r["learning_rate"]) for r in rows] == pytest.approx(
      [float(schedule(e * steps - 1)) for e in (1, 2, 3)])


class _Poison(_AtStep):
  """Writes a NaN into a latent before a step (a numerical fault)."""

  def on_train_batch_begin(self, batch, logs=None):
    if self._due(batch):
      layer = self.model.latent_layers[0]
      value = layer.latent.numpy()
      value.flat[0] = np.nan
      layer.latent.assign(value)


def test_numerical_fault_stops_naming_it_and_keeps_the_checkpoint(tmp_path):
  workdir = str(tmp_path / "run")
  config = _digits_config(epochs=3)
  with pytest.raises(lilnetx_tf.NonFiniteError) as error:
    loop.run(config, workdir, extra_callbacks=[_Poison(epoch=1, batch=4)])
  # The NaN latent makes the step's loss NaN first.
  assert "in epoch 2, step 5" in str(error.value)
  assert "loss" in str(error.value) or "'fc1'" in str(error.value)
  assert _epochs_in_csv(workdir) == [0]
  assert callbacks_lib.RunCheckpoint.epochs_done(
      os.path.join(workdir, "checkpoints")) == 1
  metrics = loop.run(config, workdir)  # Resumes from the good epoch.
  assert metrics["epochs"] == 3 and _epochs_in_csv(workdir) == [0, 1, 2]
  model = tf.keras.models.load_model(os.path.join(workdir, "model.keras"))
  assert all(np.isfinite(v.numpy()).all() for v in model.weights)


def test_non_finite_weights_are_named():
  """A NaN that has not reached the loss yet is found in the weights."""
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10), seed=0)
  model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
  guard = lilnetx_tf.StopOnNonFinite()
  guard.set_model(model)
  guard.on_train_begin()
  guard.on_epoch_begin(2)
  guard.on_train_batch_end(6, {"loss": 0.5})  # All finite: nothing raised.
  prior = model.priors["dense"]
  prior.tail_loc.assign(tf.fill(prior.tail_loc.shape, np.inf))
  with pytest.raises(lilnetx_tf.NonFiniteError,
                     match="The prior of group 'dense' .* epoch 3, step 7"):
    guard.on_train_batch_end(6, {"loss": 0.5})


def test_vanilla_run_reports_float_size_and_macs(tmp_path):
  metrics = loop.run(_digits_config(vanilla=True), str(tmp_path / "run"))
  final = metrics["final"]
  assert metrics["vanilla"] is True
  assert 0.5 < final["test_accuracy"] <= 1
  assert final["float32_bytes"] == 4 * 50200
  assert final["macs_dense"] == final["macs_effective"] == 50200
  assert final["file_bytes"] is None and "coded_bytes" not in final
  model = tf.keras.models.load_model(str(tmp_path / "run" / "model.keras"))
  assert not isinstance(model, lilnetx_tf.LilNetXModel)


def test_mnist_slice_from_idx_files(tmp_path, data_dir):
  config = mnist_lenet5.get_config()
  config.update(data_dir=str(data_dir / "mnist"), train_limit=2000,
                test_limit=1000, batch_size=64, epochs=1, warmup_epochs=0,
                log_histograms=False, coded_size_every_epoch=False)
  metrics = loop.run(config, str(tmp_path / "run"))
  final = metrics["final"]
  assert (metrics["train_examples"], metrics["test_examples"]) == (2000, 1000)
  assert 0.5 < final["test_accuracy"] <= 1
  assert final["weights"] == 430500  # LeNet-5's kernels (431,080 with biases).
  assert 0 < final["coded_bytes"] < final["float32_bytes"] / 4
  assert 0 < final["macs_effective"] <= final["macs_dense"]


def test_cifar10_slice_from_jpeg_archive_reuses_the_cache(tmp_path, data_dir):
  archive = str(data_dir / "cifar10" / "cifar10-jpeg.tar.gz")
  cache_dir = str(tmp_path / "cache")
  config = cifar10_resnet20.get_config()
  # The vanilla network keeps this data-path test short; LilNetX training is
  # covered above and by the same code path.
  config.update(data_dir=archive, cache_dir=cache_dir, train_limit=256,
                test_limit=200, batch_size=64, epochs=1, warmup_epochs=0,
                vanilla=True, log_histograms=False)
  config.model_options.width = 1
  metrics = loop.run(config, str(tmp_path / "run"))
  assert (metrics["train_examples"], metrics["test_examples"]) == (256, 200)
  assert 0 <= metrics["final"]["test_accuracy"] <= 1
  assert metrics["final"]["weights"] == 268336  # ResNet-20 width 1 kernels.
  assert metrics["final"]["macs_dense"] == 40551040  # lilnetx_tf.models.count_macs.
  (cached,) = os.listdir(cache_dir)
  start = time.time()
  x, _, _ = data_lib.load_arrays("cifar10", "train", data_dir=archive,
                                 cache_dir=cache_dir, limit=10)
  assert time.time() - start < 5  # Decoding all 60,000 JPEGs takes ~20 s.
  assert x.shape == (10, 32, 32, 3) and os.listdir(cache_dir) == [cached]


# -- Strategies ----------------------------------------------------------------


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
  workdir = tmp_path / "run"
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={workdir}", "--config.strategy=mirrored",
                "--config.cpu_devices=2", "--config.epochs=1",
                "--config.log_histograms=False")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "mirrored strategy: 2 replicas" in result.stderr
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["epochs"] == 1 and 0 < metrics["final"]["test_accuracy"] <= 1


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_multi_worker_strategy_with_two_local_workers(tmp_path):
  workdir = tmp_path / "run"
  cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    log = open(tmp_path / f"worker{index}.log", "w")  # pylint: disable=consider-using-with
    workers.append((subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "train",
         f"--config={CONFIGS / 'digits_lenet.py'}", f"--workdir={workdir}",
         "--config.strategy=multi_worker", "--config.epochs=1",
         "--config.log_histograms=False"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
  try:
    codes = [p.wait(timeout=300) for p, _ in workers]
  finally:
    for p, log in workers:
      if p.poll() is None:
        p.kill()
      log.close()
  logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
  assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  assert "multi_worker strategy: 2 replicas" in logs[0]
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["epochs"] == 1 and 0 < metrics["final"]["test_accuracy"] <= 1
  # Only the chief wrote into the run's directory.
  assert _epochs_in_csv(str(workdir)) == [0]
  assert "Removed worker scratch directory" in logs[1]
