"""Tests of the TFLite export: exact channel removal, conversions, checks, CLI.

The invariants: the exported (pruned) model computes the trained LilNetX
model's logits to float32 rounding while being smaller; every quantization
mode yields a model that runs in the TFLite interpreter (LiteRT's where
installed, `lilnetx_tf.compat.lite_interpreter`) on real data; the
verification fails for a model that is not the trained one; the CLI writes
everything it promises. Channels are zeroed at random here, through the
latents, and batch norm statistics are randomised so that folding matters.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf import data
from lilnetx_tf import models as zoo
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.deploy import tflite_sparse

ROOT = pathlib.Path(__file__).resolve().parents[1]
L = tf.keras.layers


def _relative(a, b):
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def mnist(data_dir):
  """Normalised MNIST train / test slices (real data)."""
  x, y, info = data.load_arrays("mnist", "train", data_dir=data_dir / "mnist",
                                limit=2048)
  x_test, y_test, _ = data.load_arrays("mnist", "test",
                                       data_dir=data_dir / "mnist", limit=256)
  return (data.normalize(x, info), y, data.normalize(x_test, info), y_test)


def _rgb32(x):
  """MNIST digits as 32x32x3 images, for the CIFAR-shaped zoo models."""
  return np.tile(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), (1, 1, 1, 3))


def _randomise_weights(network, rng):
  """Random batch norm statistics and biases: dead channels become constant."""
  for layer in network.layers:
    if isinstance(layer, L.BatchNormalization):
      gamma, beta, mean, var = layer.get_weights()
      layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape),
                         rng.normal(0, 0.5, beta.shape),
                         rng.normal(0, 0.5, mean.shape),
                         rng.uniform(0.5, 2.0, var.shape)])
    elif getattr(layer, "use_bias", False) and len(layer.weights) > 1:
      weights = layer.get_weights()
      weights[1] = rng.normal(0, 0.1, weights[1].shape)
      layer.set_weights(weights)


def _zero_channels(model, rng, fraction=0.4):
  """Zeroes random whole output channels or input-channel slices of latents."""
  layers = model.latent_layers[:-1]  # Keep the logits layer intact.
  for layer in layers:
    latent = layer.latent.numpy()
    depthwise = isinstance(layer, L.DepthwiseConv2D)
    axis = latent.ndim - (2 if depthwise or rng.random() < 0.5 else 1)
    count = latent.shape[axis]
    if count < 3 or rng.random() < 0.25:
      continue
    index = rng.choice(count, max(1, int(fraction * count)), replace=False)
    slices = [slice(None)] * latent.ndim
    slices[axis] = index
    latent[tuple(slices)] = 0
    layer.latent.assign(latent)


_ZOO = [
    ("resnet20", dict(width=1), (32, 32, 3)),
    ("mobilenet_v2", dict(alpha=0.35), (32, 32, 3)),
    ("vgg16", dict(width=0.25), (32, 32, 3)),
    ("lenet5", {}, (28, 28, 1)),
]


@pytest.mark.parametrize("name,options,shape", _ZOO, ids=[z[0] for z in _ZOO])
def test_export_removes_zero_channels_exactly(mnist, name, options, shape):
  rng = np.random.default_rng(1)
  plain = zoo.build_model(name, shape, 10, **options)
  model = lilnetx_tf.compressible(plain, seed=0)
  _randomise_weights(model.network, rng)
  _zero_channels(model, rng)
  if name == "resnet20":  # Inner channels of a residual block, for sure.
    layer = model.network.get_layer("stage2_block2_conv2")
    latent = layer.latent.numpy()
    latent[:, :, [5, 7], :] = 0
    layer.latent.assign(latent)
  x = mnist[2][:64] if shape[-1] == 1 else _rgb32(mnist[2][:64])

  exported = tflite.prepare_for_export(model)
  report = exported.prune_report
  reference = tflite_check.keras_logits(model, x)
  assert _relative(tflite_check.keras_logits(exported.dense, x),
                   reference) <= 1e-5
  assert _relative(tflite_check.keras_logits(exported.pruned, x),
                   reference) <= 1e-5
  assert report.params_after < report.params_before
  assert report.macs_after < report.macs_before
  assert exported.pruned.count_params() == report.params_after
  kept = {l.name: l for l in report.layers}
  if name == "resnet20":
    # The zeroed input channels of conv2 take conv1's outputs with them.
    assert kept["stage2_block2_conv1"].out_kept <= 30
    assert kept["stage2_block2_conv2"].in_kept <= 30
    assert sum(exported.silenced.values()) > 0

  content = tflite.convert(exported.pruned)
  outputs = tflite_check.TFLiteRunner(content)(x)
  assert _relative(outputs, reference) <= 1e-5
  result = tflite_check.verify(reference, outputs, np.zeros(len(x), int),
                               float_parity=True)
  assert result.passed and result.agreement == 1.0
  if name == "resnet20":
    xnn = tflite_sparse.xnnpack_sparse_eligibility(content)
    assert not xnn["qualifies"]
    assert any("starts with CONV_2D 3x3 stride 1x1" in r
               for r in xnn["reasons"])


def _small_net(input_shape=(28, 28, 1)):
  """Conv-BN-ReLU x3 (two strided), flatten, dense: a tiny CNN."""
  inputs = tf.keras.Input(input_shape, name="image")
  x = inputs
  for i, (filters, strides) in enumerate(((8, 1), (16, 2), (16, 2)), 1):
    x = L.Conv2D(filters, 3, strides, "same", use_bias=False,
                 name=f"conv{i}")(x)
    x = L.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
    x = L.ReLU(name=f"relu{i}")(x)
  x = L.Flatten(name="flatten")(x)
  return tf.keras.Model(inputs, L.Dense(10, name="logits")(x), name="small")


@pytest.fixture(scope="module")
def small(mnist):
  """A LilNetX small net trained briefly on real MNIST, with zero channels.

  Returns:
    The model and its `ExportModels`.
  """
  tf.keras.utils.set_random_seed(0)
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  model.compile(
      # Latents move in integer steps: LilNetX needs a large learning rate.
      optimizer=tf.keras.optimizers.Adam(3e-2),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      run_eagerly=True)  # Tracing the train step costs more than 30 steps.
  model.fit(mnist[0], mnist[1], batch_size=64, epochs=1, steps_per_epoch=30,
            verbose=0)
  conv3 = model.network.get_layer("conv3")
  latent = conv3.latent.numpy()
  latent[:, :, ::3, :] = 0  # conv2's channels 0, 3, ... are no longer read.
  conv3.latent.assign(latent)
  logits = model.network.get_layer("logits")
  latent = logits.latent.numpy()
  latent[np.random.default_rng(0).random(latent.shape) < 0.5] = 0
  logits.latent.assign(latent)  # Unstructured zeros for --sparse.
  return model, tflite.prepare_for_export(model)


_MODES = [("none", False, False), ("none", True, False),
          ("float16", False, False), ("float16", True, False),
          ("dynamic", False, False), ("int8", False, False),
          ("int8", False, True)]  # int8 + sparse: in the CLI test.


def _nested_classifier():
  """A classifier around a functional base that holds a Sequential stem.

  The base's ReLU is named like the classifier's Dense, so inlining must
  rename one of them.
  """
  inputs = L.Input((28, 28, 1))
  stem = tf.keras.Sequential([L.Input((28, 28, 1)), L.Conv2D(8, 3),
                              L.BatchNormalization(), L.ReLU()], name="stem")
  h = L.Conv2D(12, 3, strides=2)(stem(inputs))
  h = L.ReLU(name="logits")(L.BatchNormalization()(h))
  base = tf.keras.Model(inputs, L.Conv2D(16, 3)(h), name="base")
  outer = L.Input((28, 28, 1))
  h = L.GlobalAveragePooling2D()(base(outer, training=False))
  return tf.keras.Model(outer, L.Dense(10, name="logits")(h))


def test_nested_models_export_exactly(mnist):
  """The transfer-learning pattern: a base model inside a classifier."""
  rng = np.random.default_rng(2)
  model = lilnetx_tf.compressible(_nested_classifier(), seed=0)
  assert len(model.latent_layers) == 4  # The nested models' kernels too.
  for network in (model.network.get_layer("base"),
                  model.network.get_layer("base").get_layer("stem")):
    _randomise_weights(network, rng)
  _zero_channels(model, rng, fraction=0.5)
  x = mnist[2][:64]
  reference = tflite_check.keras_logits(model, x)
  exported = tflite.prepare_for_export(model)
  # One flat graph: every layer of every level, the clash renamed.
  names = [l.name for l in exported.pruned.layers]
  assert not any(isinstance(l, tf.keras.Model) for l in exported.pruned.layers)
  assert len(names) == len(set(names)) and "logits" in names
  assert sum(isinstance(l, L.Conv2D) for l in exported.pruned.layers) == 3
  report = exported.prune_report
  assert report.params_after < report.params_before
  assert exported.pruned.count_params() == report.params_after
  for keras_model in (exported.dense, exported.pruned):
    assert _relative(tflite_check.keras_logits(keras_model, x),
                     reference) <= 1e-5
  outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(x)
  result = tflite_check.verify(reference, outputs, np.argmax(reference, 1),
                               float_parity=True)
  assert result.passed and result.agreement == 1.0
  # The user's model is untouched: still nested, still the same outputs.
  assert isinstance(model.network.get_layer("base"), tf.keras.Model)
  np.testing.assert_array_equal(tflite_check.keras_logits(model, x),
                                reference)


@pytest.mark.parametrize("quantize,sparse,int8_io", _MODES)
def test_every_quantization_mode_runs_on_real_data(mnist, small, quantize,
                                                   sparse, int8_io):
  model, exported = small
  x_train, _, x, y = mnist
  content = tflite.convert(exported.pruned, quantize, sparse=sparse,
                           representative_data=x_train[:100], int8_io=int8_io)
  runner = tflite_check.TFLiteRunner(content)
  outputs = runner(x, batch_size=100)  # Two batch sizes: 100 and 56.
  reference = tflite_check.keras_logits(model, x)
  assert outputs.shape == reference.shape and np.all(np.isfinite(outputs))
  input_type = runner.interpreter.get_input_details()[0]["dtype"]
  assert input_type == (np.int8 if int8_io else np.float32)
  weights = tflite_sparse.weight_summary(content)
  assert (weights["stored_sparse"] > 0) == sparse
  result = tflite_check.verify(reference, outputs, y,
                               float_parity=quantize == "none")
  if quantize == "none":
    assert result.passed and result.relative_dlogit <= 1e-5
  elif quantize == "float16":
    assert result.relative_dlogit <= 1e-2 and result.agreement >= 0.98
  else:
    assert result.agreement >= 0.9
    assert result.accuracy_exported >= result.accuracy_reference - 0.05


def test_quantization_aware_finetune_keeps_every_zero(mnist):
  # Conv -> ReLU (fused for QAT), depthwise -> ReLU6 (outside tfmot's
  # prune-preserving scheme), dense: zeros must survive in all three.
  inputs = tf.keras.Input((28, 28, 1))
  x = L.ReLU()(L.Conv2D(8, 3, 2, name="conv")(inputs))
  x = L.ReLU(6.0)(L.DepthwiseConv2D(3, name="dw")(x))
  x = L.Dense(10, name="logits")(L.Flatten()(x))
  model = tf.keras.Model(inputs, x)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if layer.weights:
      weights = layer.get_weights()
      weights[0][rng.random(weights[0].shape) < 0.5] = 0
      layer.set_weights(weights)
  qat = tflite.quantization_aware_finetune(
      model, mnist[0][:256], mnist[1][:256], epochs=1, batch_size=32,
      learning_rate=1e-2)
  kept, total = tflite.zero_weights_kept(model, qat)
  assert total > 0.4 * model.count_params() and kept == total
  trained = {l.name: l.get_weights() for l in model.layers}
  assert any(not np.array_equal(w.numpy(), trained["logits"][0])
             for w in qat.trainable_weights if "logits/kernel" in w.name)


def test_verify_rejects_a_different_model(mnist, small):
  model, exported = small
  x, y = mnist[2], mnist[3]
  reference = tflite_check.keras_logits(model, x)
  different = tf.keras.models.clone_model(exported.pruned)
  weights = exported.pruned.get_weights()
  # 1% noise on the logits layer: nearly the same model, but not the same.
  weights[-2] = weights[-2] * (1 + 0.01 * np.random.default_rng(0).normal(
      size=weights[-2].shape)).astype(np.float32)
  different.set_weights(weights)
  outputs = tflite_check.TFLiteRunner(tflite.convert(different))(x)
  result = tflite_check.verify(reference, outputs, y, float_parity=True)
  assert not result.passed and "dlogit" in result.failure
  assert result.max_abs_dlogit > 1e-4 * np.max(np.abs(reference))
  # The same logits pass; a quantized export losing 2 points fails at 1.
  assert tflite_check.verify(reference, reference, y, float_parity=True).passed
  worse = reference.copy()
  right = np.flatnonzero(reference.argmax(1) == y)[:max(1, len(y) // 40)]
  worse[right, y[right]] = -1e3
  result = tflite_check.verify(reference, worse, y, float_parity=False,
                               max_accuracy_drop=1.0)
  assert not result.passed and "accuracy drops" in result.failure
  with pytest.raises(ValueError, match="do not match"):
    tflite_check.verify(reference, reference[:-1], y, float_parity=True)


def test_runner_falls_back_to_the_builtin_kernels(mnist, small, monkeypatch):
  """Where XNNPACK fails to prepare a model, the builtin kernels run it.

  LiteRT 2.3's delegate fails so on int8 models with sparse weights; here a
  stand-in interpreter fails the same way whenever XNNPACK would be used.
  """
  _, exported = small
  x = mnist[2][:16]
  content = tflite.convert(exported.pruned)
  expected = tflite_check.TFLiteRunner(content)(x)
  real = compat.lite_interpreter
  calls = []

  def failing(**kwargs):
    calls.append(kwargs)
    if "experimental_op_resolver_type" not in kwargs:
      raise RuntimeError("failed to delegate FULLY_CONNECTED node #4Node "
                         "number 6 (TfLiteXNNPackDelegate) failed to prepare.")
    return real(**kwargs)

  monkeypatch.setattr(compat, "lite_interpreter", failing)
  runner = tflite_check.TFLiteRunner(content)
  assert runner.xnnpack
  np.testing.assert_allclose(runner(x, batch_size=16), expected, rtol=1e-4,
                             atol=1e-5)
  assert not runner.xnnpack
  assert [c.get("experimental_op_resolver_type") for c in calls] == [
      None, compat.lite_builtin_kernels()]
  timing = tflite_check.measure_latency({"m": content}, x[:1], threads=[1],
                                        rounds=3, warmup=1)
  assert timing[1]["without_xnnpack"] == ["m"]
  # Other errors are not taken for XNNPACK's.
  def broken(**kwargs):
    raise RuntimeError(f"bad model {sorted(kwargs)}")

  monkeypatch.setattr(compat, "lite_interpreter", broken)
  with pytest.raises(RuntimeError, match="bad model"):
    tflite_check.TFLiteRunner(content)(x)


def _mobile_net(sparse_fraction, rng):
  """MobileNet-like: 3x3 s2 stem on RGB, depthwise + 1x1 blocks, mean, dense."""
  inputs = tf.keras.Input((32, 32, 3))
  x = L.ZeroPadding2D(1)(inputs)
  x = L.Conv2D(16, 3, 2, activation="relu6")(x)
  for filters in (32, 32):
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Conv2D(filters, 1, activation="relu6")(x)
  x = L.GlobalAveragePooling2D()(x)
  model = tf.keras.Model(inputs, L.Dense(10)(x))
  for layer in model.layers:
    if isinstance(layer, L.Conv2D) and layer.kernel_size == (1, 1):
      kernel, bias = layer.get_weights()
      kernel[rng.random(kernel.shape) < sparse_fraction] = 0
      layer.set_weights([kernel, bias])
  return model


def test_xnnpack_sparse_eligibility():
  rng = np.random.default_rng(0)
  model = _mobile_net(0.8, rng)
  sparse = tflite_sparse.xnnpack_sparse_eligibility(
      tflite.convert(model, sparse=True))
  assert sparse["qualifies"], sparse["reasons"]
  assert sparse["conv1x1_zero_fraction"] >= 2 / 3
  assert sparse["weights_stored_sparse"] > 0 and sparse["ends_in_mean"]
  dense = tflite_sparse.xnnpack_sparse_eligibility(tflite.convert(model))
  assert len(dense["reasons"]) == 1
  assert "no weights stored sparse" in dense["reasons"][0]
  too_few = tflite_sparse.xnnpack_sparse_eligibility(
      tflite.convert(_mobile_net(0.4, rng), sparse=True))
  assert any("needs at least 2/3" in r for r in too_few["reasons"])


def test_cli_exports_verifies_and_reports(small, mnist, tmp_path, data_dir):
  model, _ = small
  workdir = tmp_path / "run"
  workdir.mkdir()
  model.save(workdir / "model.keras")
  with open(workdir / "config.json", "w") as f:
    json.dump({"dataset": "mnist", "data_dir": str(data_dir / "mnist"),
               "model": "small"}, f)
  output = tmp_path / "out" / "model.tflite"
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run(
      [sys.executable, "-m", "export.tflite", f"--workdir={workdir}",
       f"--output={output}", "--quantize=int8", "--sparse",
       "--check-samples=200", "--qat-epochs=1", "--qat_samples=256",
       "--representative_samples=64", "--max_accuracy_drop=5",
       "--latency_rounds=3", "--latency_threads=1"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "RESULT: PASS" in result.stdout
  report = json.loads((output.parent / "export_report.json").read_text())
  assert report["passed"] and report["failures"] == []
  # The report names the interpreter that verified and timed the model, and
  # whether its XNNPACK delegate ran each model (LiteRT 2.3's fails on the
  # int8 sparse fully connected layer; the builtin kernels then run it).
  assert report["runtime"] == compat.lite_runtime_name()
  assert (f"interpreter (verification, latency): {report['runtime']}" in
          result.stdout)
  assert report["verification"]["float32"]["xnnpack"]
  assert all(isinstance(v["xnnpack"], bool)
             for v in report["verification"].values())
  assert ("XNNPACK failed" in result.stdout) == (
      not report["verification"]["exported"]["xnnpack"])
  assert set(report["verification"]) == {"float32", "int8_without_qat",
                                         "exported"}
  assert report["verification"]["float32"]["agreement"] == 1.0
  assert report["verification"]["float32"]["relative_dlogit"] <= 1e-5
  # QAT keeps every zero weight zero and loses at most 5 points (as asked).
  assert report["qat"]["zeros_kept"] == report["qat"]["zeros_total"] > 0
  int8 = report["verification"]["exported"]
  assert int8["accuracy_exported"] >= int8["accuracy_reference"] - 0.05
  assert report["weights"]["stored_sparse"] > 0
  assert report["macs"]["after"] < report["macs"]["before"]
  assert report["params"]["after"] < report["params"]["before"]
  assert report["latency_ms"]["1"]["rounds"] == 3
  assert not report["xnnpack_sparse"]["qualifies"]
  # Per layer: what was removed, and what the zeros left in it give.
  for row in report["remaining_zeros"]:
    assert row["statement"] in result.stdout
  assert "per layer (output channels kept; zeros left in them):" in (
      result.stdout)
  content = output.read_bytes()
  assert len(content) == report["size_bytes"]["exported"]
  dense = pathlib.Path(report["files"]["dense_tflite"]).read_bytes()
  assert len(dense) == report["size_bytes"]["dense_export"] > len(content)
  assert tflite_check.TFLiteRunner(content)(mnist[2][:8]).shape == (8, 10)
  summary = pathlib.Path(report["files"]["summary"]).read_text()
  assert summary.strip() == result.stdout.strip()
  assert pathlib.Path(report["files"]["plot"]).read_bytes()[:8] == (
      b"\x89PNG\r\n\x1a\n")


def test_cli_failed_verification_writes_no_model(small, tmp_path, data_dir):
  """An export that fails its check leaves the output name as it was."""
  model, _ = small
  workdir = tmp_path / "run"
  workdir.mkdir()
  model.save(workdir / "model.keras")
  with open(workdir / "config.json", "w") as f:
    json.dump({"dataset": "mnist", "data_dir": str(data_dir / "mnist")}, f)
  out = tmp_path / "out"
  out.mkdir()
  output = out / "model.tflite"
  output.write_bytes(b"an earlier, verified export")
  # Dropping every channel with weights up to 1000 changes the outputs.
  result = subprocess.run(
      [sys.executable, "-m", "export.tflite", f"--workdir={workdir}",
       f"--output={output}", "--prune_atol=1000", "--check_samples=100",
       "--latency_rounds=0"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stdout + result.stderr
  assert f"Verification failed: {output} was not written." in result.stdout
  assert output.read_bytes() == b"an earlier, verified export"
  report = json.loads((out / "export_report.json").read_text())
  assert not report["passed"] and report["failures"]
  assert "tflite" not in report["files"]
  assert sorted(p.name for p in out.iterdir()) == [
      "export_report.json", "model.tflite", "model_channels.png",
      "model_summary.txt"]


def test_cli_exports_from_a_compressed_file(small, mnist, tmp_path, data_dir):
  """`--compressed=X.lnx`: the shipped file exports like the checkpoint."""
  model, _ = small
  run = tmp_path / "run"
  run.mkdir()
  lilnetx_tf.save_compressed(model, run / "model.lnx")
  with open(run / "config.json", "w") as f:
    json.dump({"dataset": "mnist", "data_dir": str(data_dir / "mnist")}, f)
  output = tmp_path / "model.tflite"
  result = subprocess.run(
      [sys.executable, "-m", "export.tflite",
       f"--compressed={run / 'model.lnx'}", f"--output={output}",
       "--check-samples=200", "--latency_rounds=0"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "RESULT: PASS" in result.stdout
  report = json.loads((tmp_path / "export_report.json").read_text())
  assert report["verification"]["float32"]["agreement"] == 1.0
  assert report["macs"]["after"] < report["macs"]["before"]
  x = mnist[2][:32]
  np.testing.assert_allclose(
      tflite_check.TFLiteRunner(output.read_bytes())(x),
      model(x, training=False).numpy(), atol=1e-4)
