"""Tests of the training CLI: configs, registries, runs, resume, strategies.

Runs use real data at small scale: scikit-learn's embedded digits, a slice of
MNIST's IDX files and a slice of the CIFAR-10 JPEG archive. Strategies that
need a fresh TensorFlow runtime (logical CPU devices, multi-worker) run in
subprocesses.
"""

import collections
import csv
import importlib
import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import zipfile

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import models
from lilnetx_tf import data as data_lib
from lilnetx_tf.data import image_folder
from train import callbacks as callbacks_lib
from train import distribute
from train import faults
from train import loop
from train import registry
from train.configs import cifar10_resnet20
from train.configs import digits_lenet
from train.configs import mnist_lenet5
from train.schedule import warmup_cosine_decay

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "train" / "configs"

# scikit-learn's digits: our train split is its first 1437 images, test the
# other 360. The default validation split holds out round(10%) of the 1437.
DIGITS_TRAIN, DIGITS_TEST = 1437, 360
DIGITS_VALIDATION = 144
DIGITS_FITTED = DIGITS_TRAIN - DIGITS_VALIDATION


def _test_accuracy(workdir, dataset, **load):
  """The test accuracy of `workdir`'s model.keras, computed here."""
  x, y, info = data_lib.load_arrays(dataset, "test", **load)
  model = tf.keras.models.load_model(os.path.join(workdir, "model.keras"),
                                     compile=False)
  logits = model(np.asarray(data_lib.normalize(x, info)), training=False)
  return float(np.mean(np.argmax(logits.numpy(), -1) == y))


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
  # Untouched fields keep the config's values (the reference's where it
  # has one and the config does not change it).
  assert (config.learning_rate, config.latent_init_bound,
          config.warmup_epochs, config.batch_size,
          config.prior_learning_rate, config.lambda_sparsity,
          config.weight_decay, config.reference) == (
              6e-2, 4.0, 5, 256, 1e-2, 1e-6, 1e-6, False)
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
  config = digits_lenet.get_config()
  config.grid_bits = -2
  with pytest.raises(ValueError, match="grid_bits must be an integer >= -1"):
    registry.check_config(config)
  config = digits_lenet.get_config()
  config.compression_interval = 0
  with pytest.raises(ValueError,
                     match="compression_interval must be an integer >= 1"):
    registry.check_config(config)
  # In range for the config, too fine for the decoders: refused while the
  # model is built, before training.
  config = digits_lenet.get_config()
  config.grid_bits = 17
  with pytest.raises(registry.ConfigError, match=r"grid_bits.*\[0, 16\]"):
    registry.build_model(config, data_lib.dataset_info("digits"), 1)


def test_init_weights_starts_latents_from_a_float_model(tmp_path):
  config = digits_lenet.get_config()
  config.model = "resnet20"  # Batch norm, whose weights are copied as saved.
  info = data_lib.dataset_info("digits")
  float_model = models.build_model(config.model, info.input_shape,
                                   info.num_classes)
  rng = np.random.default_rng(0)
  float_model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                           for w in float_model.get_weights()])
  path = str(tmp_path / "float.keras")
  float_model.save(path)
  config.init_weights = path
  model = registry.build_model(config, info, 1)
  float_weights = {l.name: l.get_weights() for l in float_model.layers}
  for layer in model.latent_layers:
    kernel = float_weights[layer.name][0]
    # Identity decoders: the kernel rounded to multiples of the group's scale,
    # computed here with NumPy.
    scale = float(layer.decoder.scale.numpy())
    np.testing.assert_array_equal(layer.kernel.numpy(),
                                  np.round(kernel / scale) * scale)
    assert np.max(np.abs(layer.kernel.numpy() - kernel)) <= scale / 2 + 1e-7
  copied = [l for l in model.network.layers
            if l.weights and l not in model.latent_layers]
  for layer in copied:  # Batch norm: every weight as saved.
    for got, want in zip(layer.get_weights(), float_weights[layer.name]):
      np.testing.assert_array_equal(got, want)
  assert copied
  # A LilNetX model, or another network, is refused before training.
  model.save(str(tmp_path / "lilnetx.keras"))
  models.build_model("lenet_300_100", info.input_shape,
                     info.num_classes).save(str(tmp_path / "other.keras"))
  for bad, match in (("lilnetx.keras", "holds a LilNetX model"),
                     ("missing.keras", "no file"),
                     ("other.keras", "is not this network")):
    config.init_weights = str(tmp_path / bad)
    with pytest.raises(registry.ConfigError, match=match):
      registry.build_model(config, info, 1)
  # A resumed run's checkpoint holds every weight: the file may be gone.
  config.init_weights = str(tmp_path / "missing.keras")
  assert registry.build_model(config, info, 1, resuming=True).latent_layers
  # The same float file as a teacher: loaded as saved, refused the same way.
  config.init_weights = None
  config.teacher = path
  config.distillation_weight = 0.5
  term = registry.build_model(config, info, 1).distillation
  assert (term.weight, term.temperature) == (0.5, 4.0)
  for got, want in zip(term.teacher.get_weights(),
                       float_model.get_weights()):
    np.testing.assert_array_equal(got, want)
  # A teacher for other data is refused before training, not at its step.
  models.build_model("lenet_300_100", info.input_shape, 5).save(
      str(tmp_path / "five.keras"))
  models.build_model("lenet_300_100", (28, 28, 3), info.num_classes).save(
      str(tmp_path / "rgb.keras"))
  for bad, match in (("lilnetx.keras", "holds a LilNetX model"),
                     ("missing.keras", "config.teacher: no file"),
                     ("five.keras", r"to outputs \(None, 5\)"),
                     ("rgb.keras", r"inputs \(None, 28, 28, 3\)")):
    config.teacher = str(tmp_path / bad)
    with pytest.raises(registry.ConfigError, match=match):
      registry.build_model(config, info, 1)
  config.teacher, config.vanilla = path, True
  with pytest.raises(ValueError, match="teacher needs a LilNetX run"):
    registry.check_config(config)


def test_cli_rejects_unknown_model_before_training(tmp_path):
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={tmp_path / 'run'}", "--config.model=lenet6")
  assert result.returncode != 0
  assert "Unknown model 'lenet6'; valid names: resnet20" in result.stderr
  assert "lenet5" in result.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message", [
    (["--config.sparsity_groups=conv9x9"],
     "Invalid config: sparsity_groups ['conv9x9'] are not in this model; its "
     "groups are ['dense']."),
    (["--config.lambda_sparsity=-0.5"],
     "Invalid config: config.lambda_sparsity must be a finite number >= 0, "
     "got -0.5."),
    (["--config.lambda_rate=abc"],
     "flag --config.lambda_rate=abc: could not convert string to float"),
    (["--config.dataset=mnist", "--config.model=lenet5",
      "--config.data_source=local", "--config.data_dir=/nonexistent"],
     "Missing data: No local files for 'mnist' in '/nonexistent'; expected"),
])
def test_cli_refuses_bad_configs_before_writing(tmp_path, args, message):
  """Non-zero exit, what is wrong and what is valid, no traceback, no files."""
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={tmp_path / 'run'}", *args)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def test_log_to_a_file_has_a_line_per_epoch_not_per_step(tmp_path):
  """With stdout not a terminal, no progress bar (one line per step)."""
  result = _cli(f"--config={CONFIGS / 'digits_lenet.py'}",
                f"--workdir={tmp_path / 'run'}", "--config.epochs=2")
  assert result.returncode == 0, result.stderr[-2000:]
  output = result.stdout + result.stderr
  assert "\r" not in output and "\x08" not in output
  steps = DIGITS_FITTED // 64
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
  assert (metrics["train_examples"], metrics["validation_examples"],
          metrics["test_examples"]) == (DIGITS_FITTED, DIGITS_VALIDATION,
                                        DIGITS_TEST)
  assert 0.5 < final["test_accuracy"] <= 1
  assert 0 < final["coded_bytes"] < final["float32_bytes"] == 4 * 50200
  # Dense layers only: a slice is one weight of the decoded kernels.
  kernels = [l.decoded_kernel().numpy() for l in tf.keras.models.load_model(
      os.path.join(workdir, "model.keras")).latent_layers]
  assert final["slice_sparsity"] == pytest.approx(
      sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels))
  assert 0 < final["macs_effective"] <= final["macs_dense"] == 50200
  # The best epoch's validation accuracy is the highest of the run's, the
  # final model's included.
  assert metrics["best"]["validation_accuracy"] >= final["validation_accuracy"]
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
  # took `fit`'s initial fitting steps, once: the resumed run's priors were
  # restored fitted, as an uninterrupted run's are at its epoch 2.
  steps = DIGITS_FITTED // config.batch_size
  model = tf.keras.models.load_model(os.path.join(workdir, "model.keras"))
  assert int(model.optimizer.iterations) == 3 * steps
  fitting = model.initial_prior_steps
  assert int(model.prior_optimizer.iterations) == (
      fitting + model.prior_steps * 3 * steps)
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
  """A NaN that has not reached the loss yet is found at the epoch's end.

  Before the end-of-epoch callbacks after the guard (a checkpoint) run; and a
  non-finite loss names the weight that made it.
  """
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10), seed=0)
  model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
  guard = lilnetx_tf.StopOnNonFinite()
  guard.set_model(model)
  guard.on_train_begin()
  guard.on_epoch_begin(2)
  guard.on_train_batch_end(6, {"loss": 0.5})  # All finite: nothing raised.
  guard.on_epoch_end(2)
  prior = model.priors["dense"]
  prior.tail_loc.assign(tf.fill(prior.tail_loc.shape, np.inf))
  guard.on_train_batch_end(6, {"loss": 0.5})  # The loss does not show it yet.
  with pytest.raises(lilnetx_tf.NonFiniteError,
                     match="The prior of group 'dense' .* epoch 3, by its end"):
    guard.on_epoch_end(2)
  with pytest.raises(lilnetx_tf.NonFiniteError,
                     match="The prior of group 'dense' .* epoch 3, step 7"):
    guard.on_train_batch_end(6, {"loss": tf.constant(np.nan)})


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
                log_histograms=False, coded_size_every_epoch=False,
                validation_fraction=0.1)
  metrics = loop.run(config, str(tmp_path / "run"))
  final = metrics["final"]
  # 10% of the 2000 held out for validation.
  assert (metrics["train_examples"], metrics["validation_examples"],
          metrics["test_examples"]) == (1800, 200, 1000)
  assert 0.5 < final["test_accuracy"] <= 1
  assert final["weights"] == 430500  # LeNet-5's kernels (431,080 with biases).
  assert 0 < final["coded_bytes"] < final["float32_bytes"] / 4
  assert 0 < final["macs_effective"] <= final["macs_dense"]


def test_cifar10_slice_from_jpeg_archive_reuses_the_cache(tmp_path, data_dir,
                                                         monkeypatch):
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
  # round(10% of 256) held out for validation.
  assert (metrics["train_examples"], metrics["validation_examples"],
          metrics["test_examples"]) == (230, 26, 200)
  assert metrics["final"]["test_accuracy"] == pytest.approx(_test_accuracy(
      str(tmp_path / "run"), "cifar10", data_dir=archive, cache_dir=cache_dir,
      limit=200), abs=1 / 200)
  assert metrics["final"]["weights"] == 268336  # ResNet-20 width 1 kernels.
  assert metrics["final"]["macs_dense"] == 40551040  # lilnetx_tf.models.count_macs.
  (cached,) = os.listdir(cache_dir)

  def no_decoding(*args, **kwargs):
    raise AssertionError("an image was decoded instead of read from the cache")
  monkeypatch.setattr(image_folder, "_decode_image", no_decoding)
  x, _, _ = data_lib.load_arrays("cifar10", "train", data_dir=archive,
                                 cache_dir=cache_dir, limit=10)
  assert x.shape == (10, 32, 32, 3) and os.listdir(cache_dir) == [cached]


# -- Validation split and best epoch -------------------------------------------


def _digits_train_keys():
  """Counter of (uint8 pixels, label) of our digits train split, by hand.

  From scikit-learn directly: pixels 0..16 scaled so that 16 is 255.
  """
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  digits = sklearn.datasets.load_digits()
  x = np.round(digits.images[:DIGITS_TRAIN] * (255 / 16)).astype(np.uint8)
  return collections.Counter(
      (image.tobytes(), int(label))
      for image, label in zip(x, digits.target[:DIGITS_TRAIN]))


def _example_keys(batches, info):
  """(uint8 pixels, label) of each example of normalised batches."""
  keys = []
  for images, labels in batches:
    pixels = np.round((images * np.float32(info.std) + np.float32(info.mean))
                      * 255).astype(np.uint8)
    keys += [(p.tobytes(), int(y)) for p, y in zip(pixels[..., 0], labels)]
  return keys


def _run_datasets(config):
  """The pipelines `loop.run` trains, validates and tests a fresh run on."""
  return loop._datasets(config, 0)  # pylint: disable=protected-access


def test_validation_examples_are_held_out_of_fitting_and_fixed_by_seed():
  config = _digits_config(epochs=2)
  train_ds, validation_ds, _, train_info, _ = _run_datasets(config)
  again_ds, again_val, *_ = _run_datasets(config)
  steps = DIGITS_FITTED // config.batch_size
  assert train_info.num_examples["train"] == DIGITS_FITTED
  assert train_info.num_examples["validation"] == DIGITS_VALIDATION

  validation = list(validation_ds.as_numpy_iterator())
  validation_keys = _example_keys(validation, train_info)
  assert len(validation_keys) == DIGITS_VALIDATION
  train_batches = list(train_ds.as_numpy_iterator())
  assert len(train_batches) == 2 * steps  # The training pipeline's 2 epochs.
  raw = _digits_train_keys()
  for epoch in range(2):
    fitted = _example_keys(train_batches[epoch * steps:(epoch + 1) * steps],
                           train_info)
    assert len(fitted) == steps * config.batch_size
    # Each epoch fits distinct training examples, none of them held out.
    counts = collections.Counter(fitted) + collections.Counter(
        validation_keys)
    assert all(n <= raw[key] for key, n in counts.items())
  # Over both epochs the examples fitted are the training split less the
  # validation examples: at most the remainder batch of each epoch unseen.
  seen = set(_example_keys(train_batches, train_info))
  assert seen <= set(raw) - set(validation_keys)
  assert len(seen) >= DIGITS_FITTED - 2 * (DIGITS_FITTED % config.batch_size)

  # A second build holds out the same examples and fits them in the same
  # order; another seed chooses other examples.
  for a, b in zip(validation, again_val.as_numpy_iterator()):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  for a, b in zip(train_batches, again_ds.as_numpy_iterator()):
    np.testing.assert_array_equal(a[0], b[0])
  other = _run_datasets(_digits_config(epochs=2, seed=1))[1]
  other_keys = _example_keys(other.as_numpy_iterator(), train_info)
  assert len(other_keys) == DIGITS_VALIDATION
  assert set(other_keys) != set(validation_keys)


class _Sabotage(_AtStep):
  """Zeroes the logits layer's latents after a step: chance accuracy."""

  def on_train_batch_end(self, batch, logs=None):
    if self._due(batch):
      latent = self.model.latent_layers[-1].latent
      latent.assign(tf.zeros_like(latent))


def _accuracy(model, x, y):
  """Accuracy of `model` on uint8 digits `x`, computed by hand."""
  info = data_lib.dataset_info("digits")
  inputs = (x.astype(np.float32) / 255 - np.float32(info.mean)) / np.float32(
      info.std)
  logits = model.predict(inputs, batch_size=100, verbose=0)
  return float(np.mean(np.argmax(logits, -1) == y))


def test_best_epoch_is_chosen_on_validation_and_tested_on_test(tmp_path):
  workdir = tmp_path / "run"
  config = _digits_config(epochs=3)
  steps = DIGITS_FITTED // config.batch_size
  # The last epoch ends with a broken model: its validation accuracy drops,
  # so the selected epoch is an earlier one.
  metrics = loop.run(config, str(workdir),
                     extra_callbacks=[_Sabotage(epoch=2, batch=steps - 1)])
  with open(workdir / "log.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  validation = [float(r["val_accuracy"]) for r in rows]
  best = metrics["best"]
  assert best["epoch"] == 1 + int(np.argmax(validation)) < 3
  assert best["validation_accuracy"] == pytest.approx(
      validation[best["epoch"] - 1], abs=1e-6)
  final = metrics["final"]
  assert final["validation_accuracy"] == pytest.approx(validation[-1],
                                                        abs=1e-6)
  assert final["validation_accuracy"] < 0.3  # The sabotage worked.

  # The reported test accuracies are those of best.keras and model.keras on
  # the 360 test digits, computed here from scikit-learn's arrays.
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  digits = sklearn.datasets.load_digits()
  x_test = np.round(digits.images[DIGITS_TRAIN:] * (255 / 16))[..., None]
  y_test = digits.target[DIGITS_TRAIN:]
  best_model = tf.keras.models.load_model(workdir / "best.keras")
  final_model = tf.keras.models.load_model(workdir / "model.keras")
  assert best["test_accuracy"] == pytest.approx(
      _accuracy(best_model, x_test, y_test), abs=1e-6)
  assert final["test_accuracy"] == pytest.approx(
      _accuracy(final_model, x_test, y_test), abs=1e-6)
  assert best["test_accuracy"] > final["test_accuracy"] + 0.3
  # best.keras is the selected epoch's model: on the validation examples it
  # scores the accuracy logged for that epoch.
  _, validation_ds, *_ = _run_datasets(config)
  scored = best_model.evaluate(validation_ds, return_dict=True, verbose=0)
  assert scored["accuracy"] == pytest.approx(best["validation_accuracy"],
                                             abs=1e-6)


def test_without_validation_split_only_the_final_model_is_reported(tmp_path):
  workdir = tmp_path / "run"
  metrics = loop.run(_digits_config(epochs=1, validation_fraction=0.0),
                     str(workdir))
  assert metrics["best"] is None
  assert (metrics["train_examples"], metrics["validation_examples"]) == (
      DIGITS_TRAIN, 0)
  assert "validation_accuracy" not in metrics["final"]
  assert not (workdir / "best.keras").exists()
  with open(workdir / "log.csv", newline="") as f:
    (row,) = csv.DictReader(f)
  # Keras's CSVLogger writes val_ columns without values ("NA").
  assert row["accuracy"] != "NA" and row["val_accuracy"] == "NA"
  assert 0.3 < metrics["final"]["test_accuracy"] <= 1


# -- Checkpoint files ----------------------------------------------------------


def _tiny_run_state(tmp_path):
  """A compiled one-layer model and its RunCheckpoint in tmp_path."""
  model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
  model.compile(tf.keras.optimizers.Adam(), "mse")
  state = callbacks_lib.RunCheckpoint(
      model, read_dir=str(tmp_path / "ckpt"), write_dir=str(tmp_path / "ckpt"),
      model_dir=str(tmp_path), max_to_keep=2)
  state.set_model(model)
  return model, state


def _end_epoch(model, state, epoch, val_accuracy):
  """Ends epoch `epoch` (0-based) with kernel entries epoch + 1."""
  model.layers[0].kernel.assign(np.full((3, 2), epoch + 1.0, np.float32))
  state.on_epoch_begin(epoch)
  state.on_epoch_end(epoch, {"val_accuracy": val_accuracy})


def _kernel_in(path):
  return tf.keras.models.load_model(path).layers[0].kernel.numpy()


def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(tmp_path):
  model, state = _tiny_run_state(tmp_path)
  for epoch in range(3):
    _end_epoch(model, state, epoch, 0.5)
  ckpt = tmp_path / "ckpt"
  assert sorted(p.name for p in ckpt.glob("*.index")) == [
      "ckpt-2.index", "ckpt-3.index"]  # max_to_keep.
  (data,) = ckpt.glob("ckpt-3.data-*")
  data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
  assert callbacks_lib.RunCheckpoint.epochs_done(str(ckpt)) == 2
  model, state = _tiny_run_state(tmp_path)
  assert state.restore() == 2
  np.testing.assert_array_equal(model.layers[0].kernel.numpy(),
                                np.full((3, 2), 2.0))
  # Epoch 3 again replaces the damaged files.
  _end_epoch(model, state, 2, 0.5)
  model, state = _tiny_run_state(tmp_path)
  assert state.restore() == 3
  np.testing.assert_array_equal(model.layers[0].kernel.numpy(),
                                np.full((3, 2), 3.0))


class _Killed(Exception):
  pass


def test_best_model_is_replaced_only_by_a_committed_epoch(tmp_path,
                                                          monkeypatch):
  model, state = _tiny_run_state(tmp_path)
  _end_epoch(model, state, 0, 0.5)
  best = tmp_path / "best.keras"
  committed = best.read_bytes()

  # Killed between a better epoch's pending best model and its checkpoint:
  # the restored run (epoch 1) keeps epoch 1's best model.
  def kill_at(point):
    def kill_point(name, epoch):
      if f"{name}:{epoch}" == point:
        raise _Killed(point)
    return kill_point

  monkeypatch.setattr(faults, "kill_point", kill_at("checkpoint:2"))
  with pytest.raises(_Killed):
    _end_epoch(model, state, 1, 0.9)
  assert (tmp_path / ".best-2.keras").exists()
  assert best.read_bytes() == committed
  model, state = _tiny_run_state(tmp_path)
  assert state.restore() == 1 and int(state.best_epoch.numpy()) == 1
  assert not list(tmp_path.glob(".best-*")) and best.read_bytes() == committed

  # Killed after epoch 2's checkpoint, before its best model was renamed:
  # the restored run (epoch 2, best epoch 2) puts it in place.
  monkeypatch.setattr(faults, "kill_point", kill_at("none:0"))
  real_replace = os.replace

  def replace(src, dst):
    if os.fspath(dst) == str(best) and ".best-" in os.fspath(src):
      raise _Killed("rename")
    real_replace(src, dst)

  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(_Killed):
    _end_epoch(model, state, 1, 0.9)
  monkeypatch.setattr(os, "replace", real_replace)
  assert best.read_bytes() == committed
  model, state = _tiny_run_state(tmp_path)
  assert state.restore() == 2 and int(state.best_epoch.numpy()) == 2
  assert not list(tmp_path.glob(".best-*"))
  np.testing.assert_array_equal(_kernel_in(best), np.full((3, 2), 2.0))


# -- Kills and deterministic resume --------------------------------------------

# Two epochs, op determinism: a killed and resumed run must end where an
# uninterrupted one does, bit for bit.
_KILL_RUN_FLAGS = ("--config.epochs=2", "--config.deterministic=True",
                   "--config.coded_size_every_epoch=False")


def _run_args(workdir):
  return (f"--config={CONFIGS / 'digits_lenet.py'}", f"--workdir={workdir}",
          *_KILL_RUN_FLAGS)


def _env(**changes):
  env = {k: v for k, v in os.environ.items() if k != faults.ENV}
  env.update(changes)
  return env


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
  result = _cli(*_run_args(workdir), env=_env())
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _weights(path):
  return tf.keras.models.load_model(path, compile=False).get_weights()


def _metrics_without_times(workdir):
  metrics = json.loads((workdir / "metrics.json").read_text())
  metrics.pop("train_wall_seconds")
  return metrics


@pytest.mark.parametrize("point", [
    "batch:2",  # Mid-epoch.
    "model.keras:2",  # model.keras written, not yet in place.
    "checkpoint:2",  # Checkpoint files written, not yet recorded.
    "model.lnx:2",  # After training, before the compressed file.
])
def test_killed_run_resumes_to_the_uninterrupted_result(point, tmp_path,
                                                        uninterrupted_run):
  workdir = tmp_path / "run"
  killed = _cli(*_run_args(workdir), env=_env(**{faults.ENV: point}))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert f"{faults.ENV}={point}: killing" in killed.stderr
  assert not (workdir / "metrics.json").exists()

  resumed = _cli(*_run_args(workdir), env=_env())
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  trained_again = point != "model.lnx:2"
  assert ("Resuming at epoch 2/2" in resumed.stderr) == trained_again
  assert _epochs_in_csv(workdir) == [0, 1]  # No repeated or lost epoch.
  assert not list(workdir.glob(".best-*"))

  # Every output loads, and is what the uninterrupted run wrote.
  for name in ("model.keras", "best.keras"):
    for ours, reference in zip(_weights(workdir / name),
                               _weights(uninterrupted_run / name),
                               strict=True):
      assert ours.dtype == reference.dtype
      np.testing.assert_array_equal(ours, reference)
  lilnetx_tf.load_compressed(str(workdir / "model.lnx"))
  assert (workdir / "model.lnx").read_bytes() == (
      uninterrupted_run / "model.lnx").read_bytes()
  assert _metrics_without_times(workdir) == _metrics_without_times(
      uninterrupted_run)
  assert (workdir / "log.csv").read_text() == (
      uninterrupted_run / "log.csv").read_text()


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
  assert metrics["epochs"] == 1
  assert metrics["final"]["test_accuracy"] == pytest.approx(
      _test_accuracy(str(workdir), "digits"), abs=1 / DIGITS_TEST)


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
  assert metrics["epochs"] == 1
  assert metrics["final"]["test_accuracy"] == pytest.approx(
      _test_accuracy(str(workdir), "digits"), abs=1 / DIGITS_TEST)
  # Only the chief wrote into the run's directory.
  assert _epochs_in_csv(str(workdir)) == [0]
  assert "Removed worker scratch directory" in logs[1]
