"""Benchmark: the LilNetX training step on the two supported stacks.

Starts one worker process per stack's Python (the pinned venv and the
current one), each building the same LilNetX model (`--model`, the MNIST
configs' settings: lambda_I, lambda_rho, compression_interval) and tracing its
train function; then asks them in turn, the order swapped every round, for a
run of timed steps, so that both see the same machine conditions. Only one
worker computes at a time. Each timing covers one compression cycle
(`compression_interval` steps; the step time is their mean). Prints a table
of median step times per stack and their ratio (current / pinned), and
writes it as JSON with each stack's versions.

  python bench/stacks.py [--model=lenet5] [--rounds=10] [--steps=10]
      [--pinned_python=.venv/bin/python]
      [--current_python=.venv-current/bin/python]
      [--json=docs/results/stacks_step_time.json]
"""

import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

from bench import provenance

# At import, not inside main: Keras 2.14 imported inside absl's app.run
# builds functional models on graph tensors and fails.
import lilnetx_tf
from lilnetx_tf.compat import keras
from lilnetx_tf.compat import tfc
from lilnetx_tf.models import build_model
import tensorflow as tf

_MODEL = flags.DEFINE_enum("model", "lenet5", ["lenet5", "lenet_300_100"],
                           "Network, from the model zoo.")
_ROUNDS = flags.DEFINE_integer("rounds", 10, "Alternating rounds.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed cycles per worker a round.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_PINNED = flags.DEFINE_string("pinned_python", ".venv/bin/python",
                              "The pinned stack's Python.")
_CURRENT = flags.DEFINE_string("current_python", ".venv-current/bin/python",
                               "The current stack's Python.")
_JSON = flags.DEFINE_string("json", None, "Where to write the results.")
_WORKER = flags.DEFINE_bool("worker", False, "Internal: run as a worker.")


def _config():
  """The shipped MNIST config of `--model` (its LilNetX settings)."""
  # pylint: disable=g-import-not-at-top
  if _MODEL.value == "lenet5":
    from train.configs import mnist_lenet5 as module
  else:
    from train.configs import mnist_lenet300 as module
  return module.get_config()


def _worker():
  """Builds the model, then times `run N` requests read from stdin."""
  config = _config()
  keras.utils.set_random_seed(0)
  model = lilnetx_tf.compressible(
      build_model(_MODEL.value, (28, 28, 1), 10),
      lambda_rate=config.lambda_rate, lambda_sparsity=config.lambda_sparsity,
      weight_decay=config.weight_decay, seed=0,
      compression_interval=config.compression_interval)
  model.compile(keras.optimizers.Adam(config.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(_BATCH.value, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, 10, _BATCH.value)
  data = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
  step = model.make_train_function()
  cycle = config.compression_interval
  for _ in range(3 * cycle):  # Trace and warm up.
    step(data)
  print(json.dumps({"ready": True, "tensorflow": tf.__version__,
                    "keras": keras.__name__ + " " + getattr(
                        keras, "__version__", tf.__version__),
                    "tensorflow_compression": getattr(tfc, "__version__",
                                                      None),
                    "python": platform.python_version()}), flush=True)
  for line in sys.stdin:
    count = int(line.split()[1])
    wall, cpu = [], []
    for _ in range(count):
      cpu_start, start = time.process_time(), time.perf_counter()
      for _ in range(cycle):
        step(data)
      wall.append((time.perf_counter() - start) / cycle)
      cpu.append((time.process_time() - cpu_start) / cycle)
    print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


def _start(python):
  process = subprocess.Popen(
      [python, __file__, "--worker", f"--model={_MODEL.value}",
       f"--batch_size={_BATCH.value}"],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  info = json.loads(process.stdout.readline())
  return process, info


def _ask(process, count):
  process.stdin.write(f"run {count}\n")
  process.stdin.flush()
  return json.loads(process.stdout.readline())


def main(argv):
  del argv
  if _WORKER.value:
    _worker()
    return
  if _ROUNDS.value < 1 or _STEPS.value < 1:
    raise app.UsageError("--rounds and --steps must be >= 1.")
  workers = {}
  for name, python in (("pinned", _PINNED.value),
                       ("current", _CURRENT.value)):
    print(f"starting the {name} stack's worker ({python})", flush=True)
    workers[name] = _start(python)
  wall = {name: [] for name in workers}
  cpu = {name: [] for name in workers}
  for r in range(_ROUNDS.value):
    order = list(workers) if r % 2 == 0 else list(reversed(workers))
    for name in order:
      times = _ask(workers[name][0], _STEPS.value)
      wall[name] += times["wall"]
      cpu[name] += times["cpu"]
    print(f"round {r + 1}/{_ROUNDS.value}: " + ", ".join(
        f"{n} {statistics.median(wall[n]) * 1e3:.1f} ms" for n in workers),
          flush=True)
  for process, _ in workers.values():
    process.stdin.close()
    process.wait()

  rows = {n: {"step_ms": statistics.median(wall[n]) * 1e3,
              "cpu_ms": statistics.median(cpu[n]) * 1e3,
              "timings": len(wall[n]), **workers[n][1]} for n in workers}
  for row in rows.values():
    row.pop("ready")
  ratio = rows["current"]["step_ms"] / rows["pinned"]["step_ms"]
  cpu_ratio = rows["current"]["cpu_ms"] / rows["pinned"]["cpu_ms"]
  print()
  print(f"{_MODEL.value}, batch {_BATCH.value}, CPU, medians of "
        f"{_ROUNDS.value} alternating rounds of {_STEPS.value} cycles")
  print(f"{'stack':<9}{'TensorFlow':>11}{'step (ms)':>11}{'CPU (ms)':>10}")
  for name, row in rows.items():
    print(f"{name:<9}{row['tensorflow']:>11}{row['step_ms']:>11.2f}"
          f"{row['cpu_ms']:>10.2f}")
  print(f"{'ratio':<9}{'':>11}{ratio:>11.3f}{cpu_ratio:>10.3f}   "
        "(current / pinned; target <= 1.10)")
  if _JSON.value:
    # The driver's own stack is not what was measured: each row has its own.
    provenance.write_results(_JSON.value, {
        "model": _MODEL.value, "batch_size": _BATCH.value,
        "rounds": _ROUNDS.value, "steps": _STEPS.value, "stacks": rows,
        "ratio_step": ratio, "ratio_cpu": cpu_ratio})


if __name__ == "__main__":
  app.run(main)
