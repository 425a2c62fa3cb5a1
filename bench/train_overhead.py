"""Benchmark: training step time of a LilNetX model against plain Keras.

Prints a table of median step times (batch 128, CPU) of the same network
(ResNet-20 by default; LeNet-5 or LeNet-300-100 with `--model`) trained as a
plain float Keras model and as a LilNetX model (latents, shared decoders,
priors on their own optimizer, rate + sparsity terms), and their ratio.
Both run in one process, one step each in turn (the order swapped every
pair), so that both see the same machine conditions; inputs are random
tensors of the task's shape (step time does not depend on pixel values).
Steps run as `fit` runs them, through the model's train function.

Each step is timed on its own and the table reports medians, so occasional
stalls do not decide the result: on shared virtual machines a step sometimes
takes twice its usual wall time while the process's CPU time stays the same
(the machine, not the process, was paused). The table counts those stalled
steps and also reports the process CPU time per step, which such stalls do
not touch.

With `--compression_interval=k`, the LilNetX model computes its compression
terms on one step in k, and each timing covers k consecutive steps of a
model (its mean is the step time), so that every timing holds one whole
cycle.

  python bench/train_overhead.py [--model=resnet20] [--steps=40]
      [--batch_size=128] [--width=1] [--compression_interval=1]
"""

import functools
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
from lilnetx_tf.compat import keras

_STEPS = flags.DEFINE_integer(
    "steps", 40, "Timed runs per model, each of `compression_interval` "
    "training steps (the step time is their mean).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps per model first.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_WIDTH = flags.DEFINE_float("width", 1, "ResNet-20 width multiplier.")
# Model name -> input shape (CIFAR-10 or MNIST images).
_INPUTS = {"resnet20": (32, 32, 3), "lenet5": (28, 28, 1),
           "lenet_300_100": (28, 28, 1)}
_MODEL = flags.DEFINE_enum("model", "resnet20", list(_INPUTS),
                           "Network, from the model zoo.")
_INTERVAL = flags.DEFINE_integer(
    "compression_interval", 1,
    "LilNetX's compression_interval: compression terms and prior steps on "
    "one step in this many.")

# A step this many times the model's median wall time counts as stalled.
_STALL = 1.6


def _loss():
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _network():
  options = {"width": _WIDTH.value} if _MODEL.value == "resnet20" else {}
  return build_model(_MODEL.value, _INPUTS[_MODEL.value], 10, **options)


def _models():
  plain = _network()
  plain.compile(keras.optimizers.Adam(1e-2), loss=_loss())
  lilnetx = lilnetx_tf.compressible(
      _network(), lambda_sparsity=1e-6, weight_decay=1e-6, seed=0,
      compression_interval=_INTERVAL.value)
  # The library's defaults otherwise: lambda_I 1, 2 prior steps per step.
  lilnetx.compile(keras.optimizers.Adam(1e-2), loss=_loss())
  return {"plain Keras": plain, "LilNetX": lilnetx}


def main(argv):
  del argv
  if _STEPS.value < 1:
    raise app.UsageError("--steps must be >= 1.")
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(_BATCH.value,) + _INPUTS[_MODEL.value]).astype(
      np.float32)
  y = rng.integers(0, 10, _BATCH.value)
  models = _models()
  # Each model's step as `fit` takes it: its train function on an iterator
  # (`train_on_batch` also resets and fetches every metric each call, a
  # cost `fit` pays once an epoch that is large next to a 10 ms step).
  data = tf.data.Dataset.from_tensors((x, y)).repeat()
  steps = {}
  for name, model in models.items():
    steps[name] = functools.partial(model.make_train_function(), iter(data))
    for _ in range(max(_WARMUP.value, 1) * _INTERVAL.value):  # Trace.
      steps[name]()

  # Timed in runs of `compression_interval` steps (one with the compression
  # terms), so that each timing covers the LilNetX model's whole cycle.
  run = _INTERVAL.value
  wall = {name: [] for name in models}
  cpu = {name: [] for name in models}
  for step in range(_STEPS.value):
    order = list(models) if step % 2 == 0 else list(reversed(models))
    for name in order:
      cpu_start, start = time.process_time(), time.perf_counter()
      for _ in range(run):
        steps[name]()
      wall[name].append((time.perf_counter() - start) / run)
      cpu[name].append((time.process_time() - cpu_start) / run)
    if (step + 1) % 10 == 0 or step + 1 == _STEPS.value:
      print(f"step {step + 1}/{_STEPS.value}: " + ", ".join(
          f"{n} {wall[n][-1] * 1e3:.0f} ms" for n in models), flush=True)

  rows = {}
  for name in models:
    median = statistics.median(wall[name])
    rows[name] = (median, statistics.median(cpu[name]),
                  sum(t > _STALL * median for t in wall[name]))
  plain, lilnetx = rows["plain Keras"], rows["LilNetX"]
  print()
  network = (f"resnet20 (width {_WIDTH.value:g})"
             if _MODEL.value == "resnet20" else _MODEL.value)
  cycle = f", compression_interval {run}" if run > 1 else ""
  print(f"{network}, batch {_BATCH.value}, CPU{cycle}, medians of "
        f"{_STEPS.value} alternating runs of {run} step(s) per model")
  print(f"{'model':<14}{'step (ms)':>11}{'images/s':>10}{'CPU (ms)':>10}"
        f"{'stalled':>9}")
  for name, (median, cpu_median, stalled) in rows.items():
    print(f"{name:<14}{median * 1e3:>11.1f}{_BATCH.value / median:>10.1f}"
          f"{cpu_median * 1e3:>10.1f}{stalled:>9d}")
  print(f"{'ratio':<14}{lilnetx[0] / plain[0]:>11.3f}{'':>10}"
        f"{lilnetx[1] / plain[1]:>10.3f}   (step time; target for resnet20: "
        "<= 1.15)")


if __name__ == "__main__":
  app.run(main)
