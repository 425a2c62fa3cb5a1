"""Real training on MNIST (LeNet-5, two epochs each): the method's trade-offs.

Three runs from the same initialisation on two thirds of the real MNIST
training set (40,000 images; the three runs take about two minutes):
  A: rate weight 1, no sparsity prior;
  B: twice the rate weight           -> a smaller range-coded size;
  C: A plus the slice sparsity prior -> more zero slices, no larger size.
Every run must keep test accuracy above 97%, its priors must track its
latents (bits within 5% of their entropy after each epoch, 3% at the end),
and its `.lnx` file may add at most 2,000 bytes to the coded latents.
"""

import numpy as np
import pytest
import tensorflow as tf

import by_hand
import lilnetx_tf
from lilnetx_tf import data
from lilnetx_tf.models import build_model


def _train(x, y, lambda_rate, lambda_sparsity):
  tf.keras.utils.set_random_seed(0)
  model = lilnetx_tf.compressible(
      build_model("lenet5", (28, 28, 1), 10), lambda_rate=lambda_rate,
      lambda_sparsity=lambda_sparsity, seed=0)
  model.compile(tf.keras.optimizers.Adam(1e-2),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), metrics=["accuracy"])
  tracking = _Tracking()
  model.fit(x, y, epochs=2, batch_size=128, verbose=0, shuffle=True,
            callbacks=[tracking])
  tracking.record(model)  # After `fit`'s final prior fit.
  return model, tracking.ratios


class _Tracking(tf.keras.callbacks.Callback):
  """Per epoch and group: prior bits of the rounded latents / their entropy."""

  def __init__(self):
    super().__init__()
    self.ratios = []

  def record(self, model):
    ratios = {}
    for g, rows in by_hand.group_rows(model).items():
      bits = model.priors[g].bits(rows.astype(np.float32),
                                  training=False).numpy()
      ratios[g] = float(bits / by_hand.entropy_bits(rows))
    self.ratios.append(ratios)

  def on_epoch_end(self, epoch, logs=None):
    self.record(self.model)


@pytest.fixture(scope="module")
def mnist(data_dir):
  splits = {}
  for split in ("train", "test"):
    x, y, info = data.load_arrays("mnist", split, data_dir=data_dir / "mnist")
    splits[split] = (np.asarray(data.normalize(x, info)), y)
  return splits


@pytest.fixture(scope="module")
def runs(mnist, tmp_path_factory):
  x, y = (a[:40000] for a in mnist["train"])
  xt, yt = mnist["test"]
  results = {}
  for name, (lambda_rate, lambda_sparsity) in {
      "A": (1.0, 0.0), "B": (2.0, 0.0), "C": (1.0, 3e-4)}.items():
    model, tracking = _train(x, y, lambda_rate, lambda_sparsity)
    stats = lilnetx_tf.compression_stats(model)["total"]
    stats["tracking"] = tracking
    stats["accuracy"] = model.evaluate(xt, yt, verbose=0)[1]
    stats["file"] = lilnetx_tf.save_compressed(
        model, tmp_path_factory.mktemp(name) / "model.lnx")
    results[name] = stats
    print(f"\nMNIST LeNet-5 run {name} (lambda_rate={lambda_rate}, "
          f"lambda_sparsity={lambda_sparsity}): accuracy "
          f"{stats['accuracy']:.4f}, coded {stats['coded_bytes']} B, conv "
          f"slice sparsity {stats['slice_sparsity']:.3f}, weight sparsity "
          f"{stats['weight_sparsity']:.3f}")
  return results


def test_accuracy_stays_above_97_percent(runs):
  for name, stats in runs.items():
    assert stats["accuracy"] > 0.97, (name, stats["accuracy"])


def test_raising_rate_weight_lowers_coded_size(runs):
  assert runs["B"]["coded_bytes"] < 0.95 * runs["A"]["coded_bytes"], runs


def test_slice_prior_raises_slice_sparsity_without_growing_the_size(runs):
  # Slice sparsity of the convolutions (the 5x5 group under the prior).
  assert runs["C"]["slice_sparsity"] > runs["A"]["slice_sparsity"] + 0.02, runs
  # The structure costs no size: at most 10% more bytes.
  assert runs["C"]["coded_bytes"] < 1.1 * runs["A"]["coded_bytes"], runs


def test_priors_track_the_latents(runs):
  """Each group's prior bits within 5% of the entropy after every epoch, 3%
  at the end; whatever the rate weight."""
  for name, stats in runs.items():
    *epochs, end = stats["tracking"]
    for epoch, ratios in enumerate(epochs):
      for group, ratio in ratios.items():
        assert 1 - 1e-6 <= ratio <= 1.05, (name, epoch, group, ratio)
    for group, ratio in end.items():
      assert 1 - 1e-6 <= ratio <= 1.03, (name, "end", group, ratio)


def test_coded_size_matches_entropy_and_float32_ratio(runs):
  for stats in runs.values():
    assert stats["entropy_bytes"] - 16 <= stats["coded_bytes"]
    assert stats["coded_bytes"] <= 1.03 * stats["entropy_bytes"] + 2 * 16
    assert stats["compression_ratio"] > 10  # float32 kernels vs coded bits.


def test_the_file_adds_at_most_2000_bytes_to_the_latents(runs):
  """LeNet-5's header, tables, decoders, biases and framing: <= 2,000 B."""
  for stats in runs.values():
    assert stats["file"]["latent_bytes"] == stats["coded_bytes"]
    assert stats["file"]["file_bytes"] - stats["coded_bytes"] <= 2000
