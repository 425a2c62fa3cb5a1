"""Exports a trained model to TensorFlow Lite, pruned, verified and timed.

  python -m export.tflite --workdir=RUN --output=model.tflite \
      [--quantize=none|float16|dynamic|int8] [--sparse] [--int8_io] \
      [--check-data=DIR] [--check-samples=1000] [--qat-epochs=0] \
      [--custom_objects=MODULE,...]

`--workdir=RUN` exports RUN/model.keras and reads the run's dataset from
RUN/config.json; `--checkpoint=PATH.keras` or `--compressed=model.lnx` export
a file (with the config.json beside it, if any, or `--dataset`). A model
made of the user's own registered layers or functions needs the modules that
define them: `--custom_objects=myapp.layers` (`export/custom_objects.py`).

Steps: decode the latents, fold batch norm, remove zero channels physically
(exactly: outputs unchanged), convert with TFLiteConverter. Quantization:
"float16" stores float16 weights; "dynamic" int8 weights; "int8" is full
integer, calibrated on training examples, with float32 input and output by
default (the model takes the same normalised images as the float one;
`--int8_io` makes them int8 too). `--qat-epochs=N` adds N epochs of
quantization-aware fine-tuning that keep zero weights zero.

Verification, on `--check-samples` examples of the run's test split (or of
`--check-data`, a directory or archive the dataset loaders accept): top-1
agreement, accuracy of the trained and the exported model, max |delta logit|.
The float32 pruned model is always checked for parity (100 percent agreement and max
|delta logit| <= `--tolerance` times the largest |logit|); a quantized export
may lose at most `--max_accuracy_drop` (default 1) accuracy points. Either
failure makes the command exit with status 1, after writing every output.

Outputs: the .tflite, `export_report.json` beside it, and a summary printed
and written as OUTPUT_STEM_summary.txt with a plot OUTPUT_STEM_channels.png of
the channels kept per layer. Latency: the exported model against the dense
export (unpruned, same quantization; written as OUTPUT_STEM_dense.tflite for
on-device comparisons), batch 1, 1 and 2 threads, in interleaved runs.
Verification and latency run in LiteRT's interpreter (`ai-edge-litert`) where
it is installed, else in `tf.lite`'s; the report's `runtime` names which, and
says where its XNNPACK delegate failed and the builtin kernels ran instead.
"""

import json
import os
import sys

from absl import app
from absl import flags

import lilnetx_tf  # Before tensorflow: quiets TF; registers LilNetX layers.
from lilnetx_tf import compat
from lilnetx_tf.atomic import atomic_path
from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.deploy import remaining_zeros
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.deploy import tflite_sparse
from . import custom_objects
import matplotlib  # pylint: disable=g-bad-import-order
matplotlib.use("Agg")  # Files only.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from lilnetx_tf.compat import keras

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training run directory; exports RUN/model.keras.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A model saved in Keras format (*.keras).")
_COMPRESSED = flags.DEFINE_string(
    "compressed", None, "A compressed model file (*.lnx, export.bitstream).")
_OUTPUT = flags.DEFINE_string("output", None, "The .tflite file to write.")
_QUANTIZE = flags.DEFINE_enum("quantize", "none", tflite.QUANTIZATIONS,
                              "Weight / activation quantization.")
_SPARSE = flags.DEFINE_bool(
    "sparse", False, "Store weight tensors with >= ~30% zeros sparse "
    "(tf.lite.Optimize.EXPERIMENTAL_SPARSITY).")
_INT8_IO = flags.DEFINE_bool(
    "int8_io", False, "With --quantize=int8: int8 input and output instead "
    "of float32.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset name; default: the run's config.json.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Data for calibration and fine-tuning; default: the "
    "run's config.json.")
_CHECK_DATA = flags.DEFINE_string(
    "check_data", None, "Verification data: a directory or file the dataset "
    "loaders accept; default: the run's data.")
_CHECK_SPLIT = flags.DEFINE_enum("check_split", "test", ["train", "test"],
                                 "Split verified on.")
_CHECK_SAMPLES = flags.DEFINE_integer(
    "check_samples", 1000, "Examples verified on; 0 skips verification.",
    lower_bound=0)
_TOLERANCE = flags.DEFINE_float(
    "tolerance", 1e-4, "Float32 parity: max |delta logit| relative to the "
    "largest |logit|.")
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop", 1.0, "Accuracy points a quantized export may lose.")
_REPRESENTATIVE = flags.DEFINE_integer(
    "representative_samples", 500, "Training examples calibrating int8.",
    lower_bound=1)
_QAT_EPOCHS = flags.DEFINE_integer(
    "qat_epochs", 0, "Quantization-aware fine-tuning epochs (int8 only).",
    lower_bound=0)
_QAT_SAMPLES = flags.DEFINE_integer(
    "qat_samples", 10000, "Training examples for the fine-tuning.",
    lower_bound=1)
_QAT_LR = flags.DEFINE_float("qat_learning_rate", 1e-4,
                             "Adam learning rate of the fine-tuning.")
_PRUNE_ATOL = flags.DEFINE_float(
    "prune_atol", 0.0, "Opt-in approximation: also remove channels whose "
    "folded weights and biases are at most this large (verification measures "
    "the effect; float32 parity may then fail). Default 0: exact.",
    lower_bound=0.0)
_LATENCY_ROUNDS = flags.DEFINE_integer(
    "latency_rounds", 50, "Interleaved latency rounds; 0 skips latency.",
    lower_bound=0)
_LATENCY_THREADS = flags.DEFINE_list(
    "latency_threads", ["1", "2"], "Interpreter thread counts to time.")
for _name in ("check_data", "check_samples", "qat_epochs"):
  flags.DEFINE_alias(_name.replace("_", "-"), _name)


def _load():
  """(model, config dict, source path) from the flags."""
  given = [f for f in (_WORKDIR, _CHECKPOINT, _COMPRESSED) if f.value]
  if len(given) != 1:
    raise app.UsageError("Give exactly one of --workdir, --checkpoint and "
                         "--compressed.")
  if _WORKDIR.value:
    path = os.path.join(_WORKDIR.value, "model.keras")
  else:
    path = given[0].value
  if not os.path.isfile(path):
    sys.exit(f"No model file at {path}.")
  config_path = os.path.join(os.path.dirname(os.path.abspath(path)),
                             "config.json")
  config = {}
  if os.path.isfile(config_path):
    with open(config_path) as f:
      config = json.load(f)
  objects = custom_objects.custom_objects()
  try:
    if _COMPRESSED.value:
      model = lilnetx_tf.load_compressed(path, objects)
    else:
      model = keras.models.load_model(path, compile=False,
                                      custom_objects=objects)
  except lilnetx_tf.MissingCustomObjectError as e:
    sys.exit(f"error: {e} Here: --custom_objects=MODULE, the module that "
             "registers it.")
  return model, config, path


def _arrays(dataset, split, data_dir, limit, config, input_shape):
  """Normalised (x, y) of a dataset split, checked against the model."""
  from lilnetx_tf import data  # pylint: disable=g-import-not-at-top
  x, y, info = data.load_arrays(dataset, split, data_dir=data_dir, limit=limit,
                                cache_dir=config.get("cache_dir"))
  if tuple(x.shape[1:]) != tuple(input_shape):
    sys.exit(f"{dataset} images are {x.shape[1:]}, the model takes "
             f"{tuple(input_shape)}.")
  return data.normalize(x, info), y


def _conversions(models, reference, check, representative, train, report):
  """Converts and verifies; returns (exported, dense export, failures)."""
  quantize, sparse = _QUANTIZE.value, _SPARSE.value
  options = dict(representative_data=representative, int8_io=_INT8_IO.value)
  failures = []
  verification = report["verification"]

  def check_model(key, content, float_parity, required=True):
    if check is None:
      return
    runner = tflite_check.TFLiteRunner(content)
    result = tflite_check.verify(
        reference, runner(check[0]), check[1],
        float_parity=float_parity, tolerance=_TOLERANCE.value,
        max_accuracy_drop=_MAX_DROP.value)
    verification[key] = dict(result.to_dict(), xnnpack=runner.xnnpack)
    if required and not result.passed:
      failures.append(f"{key}: {result.failure}")

  float32 = tflite.convert(models.pruned, sparse=sparse and quantize == "none")
  check_model("float32", float32, float_parity=True)
  exported = float32
  if quantize != "none":
    exported = tflite.convert(models.pruned, quantize, sparse=sparse, **options)
    if _QAT_EPOCHS.value and quantize == "int8":
      # Reported for comparison; only the shipped (fine-tuned) model must pass.
      check_model("int8_without_qat", exported, float_parity=False,
                  required=False)
      x, y = (a[:_QAT_SAMPLES.value] for a in train)
      qat_model = tflite.quantization_aware_finetune(
          models.pruned, x, y, epochs=_QAT_EPOCHS.value,
          learning_rate=_QAT_LR.value)
      kept, total = tflite.zero_weights_kept(models.pruned, qat_model)
      report["qat"] = dict(epochs=_QAT_EPOCHS.value, samples=len(x),
                           learning_rate=_QAT_LR.value, zeros_kept=kept,
                           zeros_total=total)
      if kept != total:
        failures.append(f"QAT changed {total - kept} of {total} zero weights")
      exported = tflite.convert(qat_model, quantize, sparse=sparse, **options)
    check_model("exported", exported, float_parity=False)
  dense = tflite.convert(models.dense, quantize, sparse=sparse, **options)
  return exported, dense, failures


def _kernel_layers(layers):
  """The conv / dense entries of the prune report's layers."""
  return [l for l in layers
          if l["class_name"] in ("Conv2D", "DepthwiseConv2D", "Dense")]


def _plot(layers, path, title):
  """Bar chart of the output channels kept per conv / dense layer."""
  names = [l["name"] for l in layers]
  height = max(3.0, 0.22 * len(names) + 1.2)
  fig, ax = plt.subplots(figsize=(7.5, height))
  rows = np.arange(len(names))
  ax.barh(rows, [l["out_total"] for l in layers], color="#d0d7e2",
          label="before")
  ax.barh(rows, [l["out_kept"] for l in layers], color="#2b6cb0",
          label="kept")
  for row, l in zip(rows, layers):
    ax.text(l["out_total"], row, f" {l['out_kept']}/{l['out_total']}",
            va="center", fontsize=6)
  ax.set_yticks(rows, names, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("output channels")
  ax.set_title(title, fontsize=10)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  try:
    with atomic_path(path, suffix=".png") as tmp:
      fig.savefig(tmp, dpi=110)
  finally:
    plt.close(fig)


def _layer_lines(report):
  """Per kernel layer: the output channels removed, and the zeros left."""
  kept = {l["name"]: l for l in _kernel_layers(report["prune"]["layers"])}
  lines = ["  per layer (output channels kept; zeros left in them):"]
  for row in report["remaining_zeros"]:
    layer = kept.get(row["layer"])
    channels = (f"{layer['out_kept']}/{layer['out_total']} kept"
                if layer and row["kernel"] != "depthwise" else "")
    label = row["layer"] + ("" if row["kernel"] == "kernel" else
                            f" ({row['kernel']})")
    lines.append(f"    {label}: {channels}{'; ' if channels else ''}"
                 f"{row['statement']}")
  return lines


def _summary(report):
  """The human-readable lines of the report."""
  macs, params = report["macs"], report["params"]
  size = report["size_bytes"]
  lines = [
      f"TFLite export of {report['source']} -> {report['output']}",
      f"  quantize={report['quantize']} sparse={report['sparse']}; "
      f"{size['exported'] / 1e6:.3f} MB (dense export "
      f"{size['dense_export'] / 1e6:.3f} MB)",
      f"  interpreter (verification, latency): {report['runtime']}",
      f"  output channels kept: {report['channels']['kept']} of "
      f"{report['channels']['total']} (conv / dense layers)",
      f"  params {params['before']:,} -> {params['after']:,}; MACs "
      f"{macs['before']:,} -> {macs['after']:,} ({macs['reduction']:.2f}x "
      "fewer)"]
  lines += _layer_lines(report)
  for key, result in report["verification"].items():
    lines.append(
        f"  verify {key} on {result['samples']} samples: "
        f"{'PASS' if result['passed'] else 'FAIL'} ({result['criterion']}); "
        f"agreement {100 * result['agreement']:.2f}%, accuracy "
        f"{100 * result['accuracy_reference']:.2f}% trained / "
        f"{100 * result['accuracy_exported']:.2f}% exported, max |dlogit| "
        f"{result['max_abs_dlogit']:.3g} ({result['relative_dlogit']:.3g} "
        "relative)" + ("" if result["xnnpack"] else
                       "; XNNPACK failed: builtin kernels"))
  if not report["verification"]:
    lines.append("  verification skipped (--check_samples=0)")
  if "qat" in report:
    qat = report["qat"]
    lines.append(f"  QAT {qat['epochs']} epochs on {qat['samples']} examples: "
                 f"{qat['zeros_kept']:,} of {qat['zeros_total']:,} zero "
                 "weights still zero")
  for threads, row in report.get("latency_ms", {}).items():
    lines.append(
        f"  latency, {threads} thread(s), batch 1, median of {row['rounds']} "
        f"interleaved runs: dense {row['dense']:.3f} ms, exported "
        f"{row['exported']:.3f} ms, speedup x{row['speedup']:.2f} "
        f"({row['speedup_per_mac_reduction']:.2f} of the MAC reduction)" +
        ("; XNNPACK failed, builtin kernels: " +
         ", ".join(row["without_xnnpack"]) if "without_xnnpack" in row else ""))
  xnn = report["xnnpack_sparse"]
  verdict = ("qualifies (on ARM)" if xnn["qualifies"] else
             "does not qualify: " + "; ".join(xnn["reasons"]))
  lines.append(f"  XNNPACK sparse inference: {verdict}. {xnn['platform']}")
  if not report["passed"]:
    result = "FAIL: " + "; ".join(report["failures"])
  elif not report["verification"]:  # Nothing was checked: no PASS.
    result = "exported, not verified (--check_samples=0)"
  else:
    result = "PASS"
  lines.append("  RESULT: " + result)
  return lines


def _data(config, input_shape):
  """(check, representative, train) arrays the flags ask for, or None."""
  dataset = _DATASET.value or config.get("dataset")
  data_dir = _DATA_DIR.value or config.get("data_dir")
  needs_train = _QUANTIZE.value == "int8"
  if (needs_train or _CHECK_SAMPLES.value) and not dataset:
    sys.exit("No dataset: no config.json beside the model; pass --dataset "
             "(or --check_samples=0 for a float export without checks).")
  check = representative = train = None
  if _CHECK_SAMPLES.value:
    check = _arrays(dataset, _CHECK_SPLIT.value, _CHECK_DATA.value or data_dir,
                    _CHECK_SAMPLES.value, config, input_shape)
  if needs_train:
    limit = max(_REPRESENTATIVE.value,
                _QAT_SAMPLES.value if _QAT_EPOCHS.value else 0)
    train = _arrays(dataset, "train", data_dir, limit, config, input_shape)
    # Calibrate on a spread of the examples, not the first few classes.
    step = max(1, len(train[0]) // _REPRESENTATIVE.value)
    representative = train[0][::step][:_REPRESENTATIVE.value]
  return dataset, check, representative, train


def _figures(models, exported, dense, sample):
  """Report entries: sizes, params, MACs, channels, storage, latency."""
  prune = models.prune_report
  kernel_layers = _kernel_layers(prune.to_dict()["layers"])
  reduction = prune.macs_before / max(prune.macs_after, 1)
  figures = dict(
      size_bytes=dict(exported=len(exported), dense_export=len(dense)),
      params=dict(before=prune.params_before, after=prune.params_after),
      macs=dict(before=prune.macs_before, after=prune.macs_after,
                reduction=reduction),
      channels=dict(kept=sum(l["out_kept"] for l in kernel_layers),
                    total=sum(l["out_total"] for l in kernel_layers)),
      silenced_channels=models.silenced,
      prune=prune.to_dict(),
      weights=tflite_sparse.weight_summary(exported),
      remaining_zeros=remaining_zeros.remaining_zeros(models.pruned),
      xnnpack_sparse=tflite_sparse.xnnpack_sparse_eligibility(exported))
  if _LATENCY_ROUNDS.value:
    timing = tflite_check.measure_latency(
        {"dense": dense, "exported": exported}, sample,
        threads=[int(t) for t in _LATENCY_THREADS.value],
        rounds=_LATENCY_ROUNDS.value)
    figures["latency_ms"] = {
        str(n): dict(row, speedup=row["dense"] / row["exported"],
                     speedup_per_mac_reduction=(
                         row["dense"] / row["exported"] / reduction))
        for n, row in timing.items()}
  return figures


def _write(report, exported, dense, title):
  """Writes the report, the summary, the plot and, if verified, the models.

  Each file is written atomically. When verification failed, neither
  `.tflite` file is written: an existing output stays as it was, so that a
  model under the output name has always passed its check.
  """
  output = _OUTPUT.value
  directory = os.path.dirname(os.path.abspath(output))
  os.makedirs(directory, exist_ok=True)
  stem = os.path.splitext(output)[0]
  files = dict(tflite=output, dense_tflite=stem + "_dense.tflite",
               report=os.path.join(directory, "export_report.json"),
               summary=stem + "_summary.txt", plot=stem + "_channels.png")
  if report["failures"]:
    del files["tflite"], files["dense_tflite"]
  report["files"] = files
  for key, content in (("tflite", exported), ("dense_tflite", dense)):
    if key in files:
      atomic_write(files[key], content)
  _plot(_kernel_layers(report["prune"]["layers"]), files["plot"], title)
  lines = _summary(report)
  if report["failures"]:
    lines.append(f"Verification failed: {output} was not written.")
  atomic_write(files["summary"], "\n".join(lines) + "\n")
  atomic_write(files["report"], json.dumps(report, indent=2))
  print("\n".join(lines))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  if not _OUTPUT.value:
    raise app.UsageError("--output is required.")
  if (_INT8_IO.value or _QAT_EPOCHS.value) and _QUANTIZE.value != "int8":
    raise app.UsageError("--int8_io and --qat-epochs need --quantize=int8.")
  model, config, source = _load()
  models = tflite.prepare_for_export(model, atol=_PRUNE_ATOL.value)
  input_shape = tuple(models.dense.input_shape[1:])
  dataset, check, representative, train = _data(config, input_shape)

  report = dict(source=source, output=_OUTPUT.value, dataset=dataset,
                quantize=_QUANTIZE.value, sparse=_SPARSE.value,
                int8_io=_INT8_IO.value, prune_atol=_PRUNE_ATOL.value,
                runtime=compat.lite_runtime_name(), verification={})
  reference = None
  if check is not None:
    reference = tflite_check.keras_logits(model, check[0])
    report["keras_pruned_max_abs_dlogit"] = float(np.max(np.abs(
        tflite_check.keras_logits(models.pruned, check[0]) - reference)))
  exported, dense, failures = _conversions(models, reference, check,
                                           representative, train, report)
  sample = (check[0][:1] if check is not None else
            np.zeros((1,) + input_shape, np.float32))
  report.update(_figures(models, exported, dense, sample))
  report.update(failures=failures, passed=not failures)
  _write(report, exported, dense, f"{models.dense.name}: output channels kept; MACs "
         f"{report['macs']['reduction']:.2f}x fewer")
  if failures:
    sys.exit(1)


def run():
  """The `lilnetx-export-tflite` console script (`python -m export.tflite`)."""
  app.run(main)


if __name__ == "__main__":
  run()
