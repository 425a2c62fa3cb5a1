"""Benchmark: training step time of LilNetX ResNet-20 against plain Keras.

Prints a table of median step times (batch 128, CPU) of the same ResNet-20
trained as a plain float Keras model and as a LilNetX model (latents, shared
decoders, priors on their own optimizer, rate + sparsity terms), measured in
interleaved rounds in one process, and their ratio. Inputs are random tensors
of CIFAR-10 shape: step time does not depend on pixel values.

  python bench/train_overhead.py [--rounds=7] [--steps=5] [--batch_size=128]
"""

import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

import lilnetx_tf
from lilnetx_tf.models import build_model
import tensorflow as tf

_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved measurement rounds.")
_STEPS = flags.DEFINE_integer("steps", 5, "Training steps per round and model.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_WIDTH = flags.DEFINE_float("width", 1, "ResNet-20 width multiplier.")


def _loss():
  return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def main(argv):
  del argv
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(_BATCH.value, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, _BATCH.value)

  plain = build_model("resnet20", (32, 32, 3), 10, width=_WIDTH.value)
  plain.compile(tf.keras.optimizers.Adam(1e-2), loss=_loss())
  lilnetx = lilnetx_tf.compressible(
      build_model("resnet20", (32, 32, 3), 10, width=_WIDTH.value),
      lambda_rate=1e-4, lambda_sparsity=1e-6, weight_decay=1e-6, seed=0)
  lilnetx.compile(tf.keras.optimizers.Adam(1e-2),
                  prior_optimizer=tf.keras.optimizers.Adam(1e-4),
                  loss=_loss())
  models = {"plain Keras": plain, "LilNetX": lilnetx}
  for model in models.values():  # Trace and warm up.
    for _ in range(2):
      model.train_on_batch(x, y)

  times = {name: [] for name in models}
  for r in range(_ROUNDS.value):
    order = list(models) if r % 2 == 0 else list(reversed(models))
    for name in order:
      start = time.perf_counter()
      for _ in range(_STEPS.value):
        models[name].train_on_batch(x, y)
      times[name].append((time.perf_counter() - start) / _STEPS.value)
    print(f"round {r + 1}/{_ROUNDS.value}: " + ", ".join(
        f"{n} {times[n][-1] * 1e3:.0f} ms" for n in models), flush=True)

  medians = {n: statistics.median(t) for n, t in times.items()}
  ratio = medians["LilNetX"] / medians["plain Keras"]
  print()
  print(f"ResNet-20 (width {_WIDTH.value:g}), batch {_BATCH.value}, CPU, "
        f"median of {_ROUNDS.value} interleaved rounds x {_STEPS.value} steps")
  print(f"{'model':<14}{'step (ms)':>12}{'images/s':>12}")
  for name, median in medians.items():
    print(f"{name:<14}{median * 1e3:>12.1f}{_BATCH.value / median:>12.1f}")
  print(f"{'ratio':<14}{ratio:>12.3f}   (target <= 1.15)")


if __name__ == "__main__":
  app.run(main)
