"""Benchmark: every `keras.applications` model through LilNetX, end to end.

Enumerates the model constructors of `keras.applications` (its functions
that take `weights` and `input_shape`, one per function object), lists and
counts them, then runs each (or those of `--models`), in a process of its own
so that a crash or running out of memory is that model's row, through:

1. build: `weights=None`, 10 classes, logits (`classifier_activation=None`),
   at the smallest square input of `--sizes` the constructor accepts;
2. `lilnetx_tf.compressible`, compile, one training step on random data;
3. `save_compressed` / `load_compressed`: the loaded model's outputs must
   equal `decompressed_model`'s bit for bit;
4. a random `--zero_fraction` of every latent convolution's output channels
   set to zero in the latents (the classifier's Dense kept);
5. `tflite.prepare_for_export` (decode, fold, remove zero channels) and
   `tflite.convert`: the TFLite outputs must pass the export's own rule,
   `tflite_check.verify(float_parity=True)` (100% top-1 agreement, max
   |delta logit| <= 1e-4 of the largest logit) against the LilNetX model.

Steps 3 and 5 run when step 2's conversion did, whatever the others gave.
Prints one row per model: input size, latent layers, seconds (steps 1-5),
parameters before and after the channel removal, the largest |TFLite -
LilNetX| output, and the status: `ok`, `unsupported` (the library or Keras
refused, with the step and reason), `mismatch` (a check above failed),
`error` (anything else, a crash or a timeout included) or `skipped` (over
`--max_params`).

  python bench/applications.py [--models=MobileNetV2,ResNet50]
      [--json=docs/results/applications.json [--resume]]
      [--max_params=100000000] [--eager=false]

The JSON is written after each model; `--resume` runs the models it lacks.
"""

import inspect
import json
import os
import pathlib
import subprocess
import sys
import tempfile
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
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.method.layers import LatentDense
from lilnetx_tf.method.layers import LatentDepthwiseConv2D

_MODELS = flags.DEFINE_list("models", None, "Constructor names to run "
                            "(default: all of keras.applications).")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_SIZES = flags.DEFINE_list(
    "sizes", ["32", "48", "64", "75", "96", "128", "160", "224", "299", "331"],
    "Square input sizes to try, smallest first.")
_ZERO = flags.DEFINE_float("zero_fraction", 0.4, "Fraction of each latent "
                           "convolution's output channels set to zero.")
_SAMPLES = flags.DEFINE_integer("samples", 8, "Random inputs: the training "
                                "batch and the outputs compared.")
_MAX_PARAMS = flags.DEFINE_integer(
    "max_params", 100_000_000, "Skip models with more parameters (the steps "
    "hold about ten copies of the weights at once).")
_EAGER = flags.DEFINE_bool(
    "eager", True, "Run the training step eagerly: tracing it as a graph "
    "takes most of a model's time, for one step.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds per model.")
_RESUME = flags.DEFINE_bool(
    "resume", False, "Keep the rows of the --json file and run only the "
    "models it lacks: the whole run in parts.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: run this model and "
                              "write its row to --row.")
_ROW = flags.DEFINE_string("row", None, "Internal: the worker's row file.")

_CLASSES = 10
# Refusals: how the library and the Keras constructors say "not supported".
_REFUSALS = (ValueError, TypeError, NotImplementedError)


def constructors():
  """Name -> model constructor of `keras.applications`, one per function."""
  found, seen = {}, set()
  for name, function in inspect.getmembers(keras.applications,
                                           inspect.isfunction):
    parameters = inspect.signature(function).parameters
    if {"weights", "input_shape"} <= set(parameters) and (
        id(function) not in seen):
      seen.add(id(function))
      found[name] = function
  return found


class _Failed(Exception):
  """A check of the benchmark failed (status `mismatch`)."""


def _build(constructor):
  """The model at the smallest size of `--sizes` that builds, and the size."""
  kwargs = dict(weights=None, classes=_CLASSES)
  parameters = inspect.signature(constructor).parameters.values()
  # ResNet50, 101 and 152 take it through **kwargs.
  if any(p.name == "classifier_activation" or p.kind == p.VAR_KEYWORD
         for p in parameters):
    kwargs["classifier_activation"] = None
  reasons = []
  for size in map(int, _SIZES.value):
    try:
      return constructor(input_shape=(size, size, 3), **kwargs), size
    except Exception as e:  # pylint: disable=broad-except
      reasons.append(f"{size}: {_reason(e)}")
      keras.backend.clear_session()
  raise ValueError("builds at no size: " + "; ".join(reasons[-2:]))


def _zero_output_channels(model, rng):
  """Zeroes a random `--zero_fraction` of each latent convolution's channels.

  Its output channels; a depthwise convolution's input channels, each with
  all its multipliers (its output channels, at multiplier 1).
  """
  for layer in model.latent_layers:
    if isinstance(layer, LatentDense):
      continue
    latent = layer.latent.numpy()
    axis = latent.ndim - (2 if isinstance(layer, LatentDepthwiseConv2D)
                          else 1)
    count = latent.shape[axis]
    index = [slice(None)] * latent.ndim
    index[axis] = rng.choice(count, int(round(_ZERO.value * count)),
                             replace=False)
    latent[tuple(index)] = 0
    layer.latent.assign(latent)


def _reason(error):
  """An exception's type and first line, shortened."""
  lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
  # TensorFlow's errors from traced code start with "in user code:" and end
  # with the error itself.
  text = " ... ".join(dict.fromkeys(lines[:1] + lines[-1:]))
  return f"{type(error).__name__}: {text[:300]}"


def run_model(name, constructor, rng):
  """Steps 1 to 5 of the module docstring for one model; its row."""
  row = dict(model=name, status="ok", reason="", stages={}, stage_seconds={})

  def stage(step, function):
    """Runs a step, recording its outcome; returns False if it failed."""
    start = time.perf_counter()
    try:
      function()
      row["stages"][step] = "ok"
      return True
    except Exception as e:  # pylint: disable=broad-except
      reason = _reason(e)
      row["stages"][step] = reason
      if row["status"] == "ok":
        row["status"] = ("mismatch" if isinstance(e, _Failed) else
                         "unsupported" if isinstance(e, _REFUSALS) else
                         "error")
        row["reason"] = f"{step}: {reason}"
      return False
    finally:
      row["stage_seconds"][step] = time.perf_counter() - start

  start = time.perf_counter()
  state = {}

  def build():
    state["plain"], row["input"] = _build(constructor)
    row["params"] = state["plain"].count_params()
    if row["params"] > _MAX_PARAMS.value:
      row["status"] = "skipped"
      row["reason"] = (f"{row['params']:,} parameters > --max_params "
                       f"{_MAX_PARAMS.value:,}")

  def convert():
    state["model"] = model = lilnetx_tf.compressible(
        state["plain"], seed=0, initial_prior_steps=0)
    row["latent_layers"] = len(model.latent_layers)
    size = row["input"]
    state["x"] = rng.uniform(-1, 1, (_SAMPLES.value, size, size, 3)).astype(
        np.float32)
    state["y"] = rng.integers(0, _CLASSES, _SAMPLES.value)

  def train():
    model = state["model"]
    model.compile(keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), run_eagerly=_EAGER.value)
    model.fit(state["x"], state["y"], batch_size=_SAMPLES.value, epochs=1,
              verbose=0)

  def round_trip():
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / f"{name}.lnx"
      row["lnx_bytes"] = lilnetx_tf.save_compressed(
          state["model"], path)["file_bytes"]
      loaded = lilnetx_tf.load_compressed(path)
    got = tflite_check.keras_logits(loaded, state["x"])
    want = tflite_check.keras_logits(
        lilnetx_tf.decompressed_model(state["model"]), state["x"])
    if not np.array_equal(got, want):
      raise _Failed(f"loaded outputs differ from the decompressed model's "
                    f"by up to {np.abs(got - want).max():.3g}")

  def export():
    model = state["model"]
    _zero_output_channels(model, rng)
    exported = tflite.prepare_for_export(model)
    report = exported.prune_report
    row["params_before"] = report.params_before
    row["params_after"] = report.params_after
    outputs = tflite_check.TFLiteRunner(tflite.convert(exported.pruned))(
        state["x"])
    result = tflite_check.verify(
        tflite_check.keras_logits(model, state["x"]), outputs, state["y"],
        float_parity=True)
    row["max_abs_diff"] = result.max_abs_dlogit
    row["relative_diff"] = result.relative_dlogit
    if not result.passed:
      raise _Failed(result.failure)

  if stage("build", build) and row["status"] != "skipped" and stage(
      "compressible", convert):
    stage("train step", train)
    stage("lnx round trip", round_trip)
    stage("export", export)
  row["seconds"] = time.perf_counter() - start
  return row


def _run_worker(name):
  """The row of one model, from a process of its own."""
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "row.json"
    command = [sys.executable, __file__, f"--worker={name}", f"--row={path}",
               f"--sizes={','.join(_SIZES.value)}",
               f"--zero_fraction={_ZERO.value}", f"--samples={_SAMPLES.value}",
               f"--max_params={_MAX_PARAMS.value}",
               f"--eager={_EAGER.value}"]
    start = time.perf_counter()
    try:
      done = subprocess.run(command, capture_output=True, text=True,
                            timeout=_TIMEOUT.value, check=False)
    except subprocess.TimeoutExpired:
      reason = f"timed out after {_TIMEOUT.value} s"
    else:
      if path.exists():
        return json.loads(path.read_text())
      tail = done.stderr.strip().splitlines()[-1:] or [""]
      reason = f"the process exited with code {done.returncode}: {tail[0]}"
    return dict(model=name, status="error", reason=reason, stages={},
                seconds=time.perf_counter() - start)


def _cell(row, key, spec):
  value = row.get(key)
  return "-" if value is None else format(value, spec)


def _print_row(row):
  before, after = row.get("params_before"), row.get("params_after")
  removed = f"{100 * (1 - after / before):.1f}" if before else "-"
  status = row["status"] + (f" ({row['reason']})" if row["reason"] else "")
  print(f"{row['model']:<18}{_cell(row, 'input', 'd'):>6}"
        f"{_cell(row, 'latent_layers', 'd'):>7}{row['seconds']:>8.1f}"
        f"{_cell(row, 'params_before', ',d'):>14}"
        f"{_cell(row, 'params_after', ',d'):>14}{removed:>7}"
        f"{_cell(row, 'max_abs_diff', '.2e'):>10}  {status}", flush=True)


def _statuses(rows):
  counts = {}
  for row in rows:
    counts[row["status"]] = counts.get(row["status"], 0) + 1
  return counts


def main(argv):
  del argv
  found = constructors()
  if _WORKER.value:
    row = run_model(_WORKER.value, found[_WORKER.value],
                    np.random.default_rng(0))
    pathlib.Path(_ROW.value).write_text(json.dumps(row))
    return
  names = _MODELS.value or sorted(found)
  unknown = sorted(set(names) - set(found))
  if unknown:
    raise app.UsageError(f"--models: {unknown} are not model constructors "
                         f"of keras.applications: {sorted(found)}.")
  print(f"{len(found)} model constructors in keras.applications: "
        f"{', '.join(sorted(found))}\n")
  print(f"{'model':<18}{'input':>6}{'latent':>7}{'seconds':>8}"
        f"{'params':>14}{'after':>14}{'% rm':>7}{'max|d|':>10}  status")
  settings = dict(sizes=[int(s) for s in _SIZES.value],
                  zero_fraction=_ZERO.value, samples=_SAMPLES.value,
                  max_params=_MAX_PARAMS.value, classes=_CLASSES,
                  eager=_EAGER.value)
  rows, total = [], 0.0
  if _RESUME.value and _JSON.value and os.path.exists(_JSON.value):
    previous = json.loads(pathlib.Path(_JSON.value).read_text())
    if previous["settings"] != settings:
      raise app.UsageError(f"--resume: {_JSON.value} was run with "
                           f"{previous['settings']}, not {settings}.")
    rows, total = previous["rows"], previous["total_seconds"]
    for row in rows:
      _print_row(row)
  commit = provenance.provenance()["commit"]  # Per row: --resume mixes runs.
  for name in names:
    if any(row["model"] == name for row in rows):
      continue
    start = time.perf_counter()
    rows.append(dict(_run_worker(name), commit=commit))
    total += time.perf_counter() - start
    _print_row(rows[-1])
    counts = _statuses(rows)
    if _JSON.value:  # After each model: an interrupted run keeps its rows.
      provenance.write_results(_JSON.value, dict(
          constructors=sorted(found), num_constructors=len(found),
          settings=settings, statuses=counts, total_seconds=total,
          rows=sorted(rows, key=lambda row: row["model"])))
  print(f"\n{len(rows)} models in {total / 60:.1f} minutes: " +
        ", ".join(f"{n} {s}" for s, n in sorted(_statuses(rows).items())))


if __name__ == "__main__":
  app.run(main)
