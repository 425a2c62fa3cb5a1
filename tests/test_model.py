"""LilNetXModel end to end: conversion, callbacks, saving, distribution."""

import collections
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import models
from lilnetx_tf.method import prior_fit

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _loss():
  return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _one_step(model, input_shape, classes=10):
  model.compile(tf.keras.optimizers.Adam(1e-3), loss=_loss())
  x = np.random.default_rng(0).random((2,) + input_shape, dtype=np.float32)
  y = np.arange(2) % classes
  before = [l.latent.numpy() for l in model.latent_layers]
  history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  after = [l.latent.numpy() for l in model.latent_layers]
  assert any(np.any(a != b) for a, b in zip(before, after))


@pytest.mark.parametrize("application,groups", [
    ("MobileNetV2", {"conv1x1", "conv3x3", "depthwise3x3", "dense"}),
    ("ResNet50", {"conv1x1", "conv3x3", "conv7x7", "dense"}),
])
def test_compressible_on_stock_applications(application, groups):
  base = getattr(tf.keras.applications, application)(
      input_shape=(32, 32, 3), weights=None, classes=10)
  # No prior fitting before and after the step: on ResNet-50's 25M latents
  # that alone took minutes of the test suite.
  model = lilnetx_tf.compressible(base, initial_prior_steps=0)
  kernels = [l for l in base.layers if isinstance(
      l, (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D,
          tf.keras.layers.Dense))]
  assert sorted(model.conversion.converted) == sorted(l.name for l in kernels)
  assert model.conversion.skipped == {}
  assert set(model.decoders) == groups
  # Everything else is untouched: same layer names and classes.
  assert [l.name for l in model.network.layers] == [l.name for l in base.layers]
  _one_step(model, (32, 32, 3))


def test_unconvertible_layers_are_kept_and_reported():
  inputs = tf.keras.Input((16, 16, 3))
  h = tf.keras.layers.Conv2DTranspose(4, 3, name="up")(inputs)
  h = tf.keras.layers.Conv2D(4, 3, name="conv",
                             kernel_regularizer="l2")(h)
  h = tf.keras.layers.GlobalAveragePooling2D()(h)
  outputs = tf.keras.layers.Dense(3, name="head")(h)
  model = lilnetx_tf.compressible(tf.keras.Model(inputs, outputs),
                                  skip=["head"])
  assert model.conversion.converted == ["conv"]
  assert set(model.conversion.skipped) == {"up", "head"}
  assert "Conv2DTranspose" in model.conversion.skipped["up"]
  assert model.conversion.dropped == {"conv": ["kernel_regularizer"]}
  assert isinstance(model.network.get_layer("up"),
                    tf.keras.layers.Conv2DTranspose)
  _one_step(model, (16, 16, 3), classes=3)
  with pytest.raises(ValueError, match="not in the model"):
    lilnetx_tf.compressible(tf.keras.Model(inputs, outputs), skip=["nope"])


def test_shared_layers_and_multiple_inputs_outputs_are_preserved():
  a = tf.keras.Input((6,), name="a")
  b = tf.keras.Input((6,), name="b")
  shared = tf.keras.layers.Dense(5, activation="relu", name="shared")
  ha, hb = shared(a), shared(b)
  out1 = tf.keras.layers.Dense(2, name="out1")(tf.keras.layers.Add()([ha, hb]))
  out2 = tf.keras.layers.Dense(3, name="out2")(hb)
  base = tf.keras.Model([a, b], [out1, out2])
  model = lilnetx_tf.compressible(base, init_from_weights=True,
                                  latent_init_bound=2000.0)
  layer = model.network.get_layer("shared")
  assert isinstance(layer, lilnetx_tf.LatentDense)
  assert len(layer.inbound_nodes) == 2  # Still shared.
  x = [np.ones((4, 6), np.float32), np.full((4, 6), 0.5, np.float32)]
  outputs = model(x)
  assert [o.shape for o in outputs] == [(4, 2), (4, 3)]
  # Fine bound: decoded weights reproduce the pretrained ones closely.
  for got, want in zip(outputs, base(x)):
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_pretrained_init_decodes_to_the_pretrained_weights():
  base = models.build_model("lenet5", (28, 28, 1), 10)
  model = lilnetx_tf.compressible(base, init_from_weights=True)
  for layer in model.latent_layers:
    original = base.get_layer(layer.name).kernel.numpy()
    step = float(model.decoders[layer.group].scale.numpy())
    error = np.abs(layer.decoded_kernel().numpy() - original).max()
    assert error <= 0.5 * step * (1 + 1e-5), layer.name
    np.testing.assert_array_equal(layer.bias.numpy(),
                                  base.get_layer(layer.name).bias.numpy())


def test_subclassed_model_inside_a_functional_one_is_refused_clearly():
  """Converted alone (in place, tests/test_subclassed.py), not inside."""
  class Net(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.dense = tf.keras.layers.Dense(2)

    def call(self, x):
      return self.dense(x)

  net = Net()
  net(np.ones((1, 3), np.float32))
  inputs = tf.keras.Input((3,))
  outer = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(net(inputs)))
  with pytest.raises(ValueError, match="subclassed Keras model inside a "
                     "functional or Sequential one.*convert the subclassed "
                     "model itself"):
    lilnetx_tf.compressible(outer)


def test_rate_warmup_ramps_lambda_and_logger_adds_figures():
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10),
      lambda_rate=0.5)
  model.compile(tf.keras.optimizers.Adam(1e-3), loss=_loss())
  x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
  y = np.arange(16) % 10
  history = model.fit(
      x, y, epochs=3, batch_size=8, verbose=0,
      callbacks=[lilnetx_tf.RateWarmup(2), lilnetx_tf.CompressionLogger()])
  np.testing.assert_allclose(history.history["lambda_rate"], [0, 0.25, 0.5])
  for key in lilnetx_tf.method.callbacks.LOGGED_FIGURES:
    assert len(history.history[key]) == 3
  stats = lilnetx_tf.compression_stats(model)["total"]
  # `fit` refits the priors after the last epoch; the latents stay.
  assert history.history["entropy_bytes"][-1] == pytest.approx(
      stats["entropy_bytes"], rel=1e-9)
  # No convolutions here: a "slice" of a dense kernel is one weight.
  kernels = [l.decoded_kernel().numpy() for l in model.latent_layers]
  zero = sum(int((k == 0).sum()) for k in kernels)
  assert history.history["slice_sparsity"][-1] == pytest.approx(
      zero / sum(k.size for k in kernels), abs=1e-12)


@pytest.mark.parametrize("save_format", ["keras", "tf"])
def test_save_and_load_round_trip(tmp_path, save_format):
  # ResNet-8: residual adds, batch norm and two decoder groups, traced and
  # saved in a third of ResNet-20's time.
  model = lilnetx_tf.compressible(
      models.cifar_resnet.cifar_resnet(8, (16, 16, 3), 10),
      lambda_rate=1e-2, lambda_sparsity=1e-4)
  model.compile(tf.keras.optimizers.Adam(1e-3), loss=_loss(),
                metrics=["accuracy"])
  x = np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32)
  y = np.arange(8) % 10
  model.fit(x, y, epochs=1, batch_size=4, verbose=0)
  model.lambda_rate.assign(0.25)
  path = str(tmp_path / ("m.keras" if save_format == "keras" else "m"))
  model.save(path, save_format=save_format)
  loaded = tf.keras.models.load_model(path)
  assert isinstance(loaded, lilnetx_tf.LilNetXModel)
  np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                model.predict(x, verbose=0))
  assert float(loaded.lambda_rate.numpy()) == 0.25
  assert float(loaded.total_bits().numpy()) == float(
      model.total_bits().numpy())
  for g in model.decoders:
    np.testing.assert_array_equal(loaded.decoders[g].matrix.numpy(),
                                  model.decoders[g].matrix.numpy())
  # Training resumes: the optimizers came back (or are rebuilt) and step.
  if save_format == "keras":
    assert loaded.prior_optimizer is not None
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0)


def test_two_replicas_train_like_one(tmp_path):
  """MirroredStrategy over two CPUs takes the steps one replica takes.

  Keras averages the task loss over the global batch; the LilNetX terms are
  global too and must not be counted once per replica. SGD, no rate noise
  (lambda_rate 0) and large sparsity and decay weights make a double count
  show at once. The terms come every second step (`compression_interval`),
  so both of the model's train functions run under each strategy.
  """
  script = textwrap.dedent("""
      import numpy as np
      import lilnetx_tf
      from lilnetx_tf import models
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      rng = np.random.default_rng(0)
      x = rng.random((32, 28, 28, 1), dtype=np.float32)
      y = rng.integers(0, 10, 32)

      def train(strategy):
        tf.keras.utils.set_random_seed(0)
        with strategy.scope():
          model = lilnetx_tf.compressible(
              models.build_model("lenet5", (28, 28, 1), 10), seed=0,
              lambda_rate=0.0, lambda_sparsity=1e-2, weight_decay=1e-2,
              initial_prior_steps=0, compression_interval=2)
          model.compile(tf.keras.optimizers.SGD(0.1),
                        loss=tf.keras.losses.SparseCategoricalCrossentropy(
                            from_logits=True))
        before = [v.numpy() for v in model.network_variables()]
        history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False,
                            verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        after = [v.numpy() for v in model.network_variables()]
        # 4 steps, of which 2 with 2 prior updates each.
        assert int(model.prior_optimizer.iterations.numpy()) == 4
        return before, after

      mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
      assert mirrored.num_replicas_in_sync == 2
      one_before, one = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
      two_before, two = train(mirrored)
      moved = max(float(np.abs(a - b).max()) for a, b in zip(one, one_before))
      gap = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
      assert all(np.array_equal(a, b) for a, b in zip(one_before, two_before))
      assert moved > 1e-2, moved
      assert gap <= 1e-4 * moved, (gap, moved)
      print("REPLICAS_OK", moved, gap)
  """)
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run([sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "REPLICAS_OK" in result.stdout


def test_compression_interval_adds_the_terms_every_kth_step_scaled():
  """Steps 0 and 3 of 4 with interval 3: task + 3 x terms; else task alone.

  Each step against plain SGD by hand on the task loss's gradient, plus, on
  the compression steps, 3 times the decay term's gradient 2 * decay * latent
  (no rate or sparsity term, so the step is deterministic).
  """
  lr, decay, interval = 0.1, 0.05, 3
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10), seed=0,
      lambda_rate=0.0, lambda_sparsity=0.0, weight_decay=decay,
      initial_prior_steps=0, prior_steps=2, compression_interval=interval)
  model.compile(tf.keras.optimizers.SGD(lr), loss=_loss())
  rng = np.random.default_rng(0)
  x = rng.random((16, 8, 8, 1), dtype=np.float32)
  y = rng.integers(0, 10, 16)
  variables = model.network_variables()
  latents = {id(l.latent) for l in model.latent_layers}
  for step in range(4):
    with tf.GradientTape() as tape:
      task = tf.reduce_mean(_loss()(y, model(x, training=True)))
    grads = tape.gradient(task, variables)
    terms = step % interval == 0
    expected = [
        v.numpy() - lr * (g.numpy() + (interval * 2 * decay * v.numpy()
                                       if terms and id(v) in latents else 0))
        for v, g in zip(variables, grads)]
    model.train_on_batch(x, y)
    for v, e in zip(variables, expected):
      np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-7,
                                 err_msg=f"step {step}, {v.name}")
    assert int(model.prior_optimizer.iterations) == 2 * (step // interval + 1)
  model.compile("sgd", loss=_loss(), steps_per_execution=2)
  with pytest.raises(ValueError, match="steps_per_execution 1"):
    model.train_on_batch(x, y)
  with pytest.raises(ValueError, match="compression_interval.*>= 1, got 0"):
    lilnetx_tf.compressible(models.build_model("lenet_300_100", (8, 8, 1), 10),
                            compression_interval=0)


def test_the_compression_step_is_traced_once():
  """Its trace takes seconds: the plain step's first trace builds the metrics.

  tf.function traces a function that creates variables (Keras's compiled
  metrics, on their first update) twice.
  """
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10), seed=0,
      initial_prior_steps=0, compression_interval=2)
  model.compile(tf.keras.optimizers.Adam(1e-3), _loss(), ["accuracy"])
  traces = collections.Counter()
  compression_loss = model.compression_loss
  def counted(*args, **kwargs):
    traces["compression"] += 1
    return compression_loss(*args, **kwargs)
  model.compression_loss = counted
  x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
  model.fit(x, np.arange(16) % 10, epochs=2, batch_size=4, verbose=0)
  assert int(model.optimizer.iterations) == 8
  assert int(model.prior_optimizer.iterations) == 2 * 4  # 4 terms steps.
  assert traces["compression"] == 1
  # The prior steps (2 per compression step) run one traced function.
  _, step, _ = prior_fit._PRIOR_FITS[model]  # pylint: disable=protected-access
  assert step.experimental_get_tracing_count() == 1
  # The step count follows the optimizer's, read afresh by each `fit`: from
  # step 1, steps 1-3 hold one compression step (2); counting on from 8
  # would give two (8, 10).
  model.optimizer.iterations.assign(1)
  model.fit(x[:12], np.arange(12) % 10, epochs=1, batch_size=4, verbose=0)
  assert int(model.prior_optimizer.iterations) == 2 * 5
  assert traces["compression"] == 1


def test_compile_takes_keras_positional_arguments():
  """`compile(optimizer, loss, metrics)` as for any Keras model."""
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10), seed=0)
  model.compile(tf.keras.optimizers.Adam(1e-3), _loss(), ["accuracy"])
  assert isinstance(model.optimizer, tf.keras.optimizers.Adam)
  assert isinstance(model.prior_optimizer, tf.keras.optimizers.Adam)
  x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
  history = model.fit(x, np.arange(8) % 10, epochs=1, verbose=0)
  assert "accuracy" in history.history
  with pytest.raises(TypeError):
    model.compile("adam", _loss(), None, None, None, None, None, None, 0, 1)


def test_resumed_fit_keeps_the_restored_priors():
  """`fit(initial_epoch=k > 0)` does not refit the priors before training."""
  model = lilnetx_tf.compressible(
      models.build_model("lenet_300_100", (8, 8, 1), 10), seed=0,
      initial_prior_steps=7, prior_steps=2)
  model.compile(tf.keras.optimizers.Adam(1e-3), loss=_loss())
  x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
  y = np.arange(16) % 10
  model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # 2 steps.
  assert int(model.prior_optimizer.iterations) == 7 + 2 * 2 + 7
  model.fit(x, y, epochs=2, initial_epoch=1, batch_size=8, verbose=0)
  assert int(model.prior_optimizer.iterations) == 18 + 2 * 2 + 7
