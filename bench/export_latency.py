"""Benchmark: TFLite latency of a channel-pruned LilNetX ResNet-20 vs dense.

Trains a LilNetX ResNet-20 (width 1) on a slice of CIFAR-10 with a
channel-level sparsity prior until at least `--target_removed` of its MACs are
removable by the exact zero-channel removal (`PruneReport.macs_after /
macs_before`), then exports the dense (batch norm folded, all channels) and the
pruned model to float32 TFLite and prints a table: MACs, parameters and
batch-1 latency (median of interleaved TFLite interpreter runs, 1 and 2
threads; LiteRT's where installed, else `tf.lite`'s, named in the output) of
both, the speedup, and the speedup divided by the MAC reduction
(the issue's target: >= 0.8). The pruned model's parity with the trained one
is checked on test images.

  python bench/export_latency.py [--train_samples=10000] [--max_epochs=12] \
      [--lambda_sparsity=2e-3] [--sparsity_structure=in_channel] \
      [--data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz] [--json=OUT] \
      [--checkpoint=resnet20.keras]

Accuracy is secondary here (a few epochs on a slice) but reported.
"""

import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf import data
from lilnetx_tf import models as zoo
from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.compat import keras

_DATA_DIR = flags.DEFINE_string(
    "data_dir", str(pathlib.Path(__file__).resolve().parents[2] / "shared" /
                    "data" / "cifar10" / "cifar10-jpeg.tar.gz"),
    "CIFAR-10 files (image tree or its .tar.gz).")
_TRAIN_SAMPLES = flags.DEFINE_integer("train_samples", 10000,
                                      "Training examples (class balanced).")
_TEST_SAMPLES = flags.DEFINE_integer("test_samples", 1000,
                                     "Test examples for accuracy and parity.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Training batch size.")
_LR = flags.DEFINE_float("learning_rate", 1e-2, "Adam learning rate.")
_MIN_EPOCHS = flags.DEFINE_integer("min_epochs", 3, "Train at least this.")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 12, "Train at most this.")
_LAMBDA_SPARSITY = flags.DEFINE_float("lambda_sparsity", 2e-3,
                                      "lambda_rho of the channel prior.")
_LAMBDA_RATE = flags.DEFINE_float("lambda_rate", 1e-4, "lambda_I.")
_STRUCTURE = flags.DEFINE_enum("sparsity_structure", "in_channel",
                               ["in_channel", "out_channel"],
                               "Channel-level group structure of the prior.")
_INIT_BOUND = flags.DEFINE_float(
    "latent_init_bound", 2.0, "Initial latent range; smaller latents reach "
    "zero in fewer steps.")
_TARGET = flags.DEFINE_float("target_removed", 0.4,
                             "Stop once this fraction of MACs is removable.")
_FINETUNE = flags.DEFINE_integer(
    "finetune_epochs", 2, "Then train this many epochs at a tenth of the "
    "learning rate (prior still on) to let the accuracy settle; the removable "
    "MACs are measured again after them.")
_ROUNDS = flags.DEFINE_integer("rounds", 200, "Interleaved latency rounds.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Interpreter threads.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Load the trained model from this .keras file if it "
    "exists (timing again without training; give the same training flags, "
    "which the printout repeats), else save it there.")


def _train(x_test, y_test):
  """Trains until the target is removable; returns (model, history rows)."""
  keras.utils.set_random_seed(0)
  train_ds, _ = data.build_dataset(
      "cifar10", "train", batch_size=_BATCH.value, training=True,
      data_dir=_DATA_DIR.value, limit=_TRAIN_SAMPLES.value)
  model = lilnetx_tf.compressible(
      zoo.build_model("resnet20", (32, 32, 3), 10, width=1),
      lambda_rate=_LAMBDA_RATE.value,
      lambda_sparsity=_LAMBDA_SPARSITY.value,
      sparsity_structure=_STRUCTURE.value,
      latent_init_bound=_INIT_BOUND.value, seed=0)
  model.compile(
      optimizer=keras.optimizers.Adam(_LR.value),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"])
  history = []

  def epoch(phase):
    tic = time.time()
    model.fit(train_ds, epochs=1, verbose=0)
    report = tflite.prepare_for_export(model).prune_report
    removed = 1 - report.macs_after / report.macs_before
    accuracy = float(np.mean(
        tflite_check.keras_logits(model, x_test).argmax(1) == y_test))
    history.append(dict(epoch=len(history) + 1, phase=phase,
                        seconds=time.time() - tic, removable_macs=removed,
                        test_accuracy=accuracy))
    print(f"epoch {len(history)} ({phase}): {time.time() - tic:.0f} s, "
          f"removable MACs {100 * removed:.1f}%, test accuracy "
          f"{100 * accuracy:.1f}%", flush=True)
    return removed

  for i in range(1, _MAX_EPOCHS.value + 1):
    if epoch("sparsify") >= _TARGET.value and i >= _MIN_EPOCHS.value:
      break
  model.optimizer.learning_rate.assign(_LR.value / 10)
  for _ in range(_FINETUNE.value):
    epoch("settle")
  return model, history


def main(argv):
  del argv
  x_test, y_test, info = data.load_arrays(
      "cifar10", "test", data_dir=_DATA_DIR.value, limit=_TEST_SAMPLES.value)
  x_test = data.normalize(x_test, info)
  if _CHECKPOINT.value and os.path.exists(_CHECKPOINT.value):
    model = keras.models.load_model(_CHECKPOINT.value, compile=False)
    with open(_CHECKPOINT.value + ".json") as f:
      history = json.load(f)
  else:
    model, history = _train(x_test, y_test)
    if _CHECKPOINT.value:
      model.save(_CHECKPOINT.value)
      atomic_write(_CHECKPOINT.value + ".json", json.dumps(history))
  exported = tflite.prepare_for_export(model)
  report = exported.prune_report
  dense = tflite.convert(exported.dense)
  pruned = tflite.convert(exported.pruned)
  reference = tflite_check.keras_logits(model, x_test)
  parity = tflite_check.verify(
      reference, tflite_check.TFLiteRunner(pruned)(x_test), y_test,
      float_parity=True)
  threads = [int(t) for t in _THREADS.value]
  timing = tflite_check.measure_latency(
      {"dense": dense, "pruned": pruned}, x_test[:1], threads=threads,
      rounds=_ROUNDS.value, max_seconds=120)
  reduction = report.macs_before / report.macs_after

  rows = [("MACs", f"{report.macs_before:,}", f"{report.macs_after:,}",
           f"{reduction:.2f}x fewer"),
          ("parameters", f"{report.params_before:,}",
           f"{report.params_after:,}",
           f"{report.params_before / report.params_after:.2f}x fewer"),
          ("TFLite bytes", f"{len(dense):,}", f"{len(pruned):,}",
           f"{len(dense) / len(pruned):.2f}x smaller")]
  results = dict(
      config={k: flags.FLAGS[k].value for k in (
          "train_samples", "batch_size", "learning_rate", "lambda_sparsity",
          "lambda_rate", "sparsity_structure", "latent_init_bound",
          "target_removed", "finetune_epochs", "rounds")},
      history=history, macs_before=report.macs_before,
      macs_after=report.macs_after, mac_reduction=reduction,
      params_before=report.params_before, params_after=report.params_after,
      parity=parity.to_dict(), runtime=compat.lite_runtime_name(),
      latency_ms={})
  for n in threads:
    row = timing[n]
    speedup = row["dense"] / row["pruned"]
    rows.append((f"latency {n} thread(s), ms", f"{row['dense']:.3f}",
                 f"{row['pruned']:.3f}",
                 f"{speedup:.2f}x faster, {speedup / reduction:.2f} of the "
                 f"MAC reduction (median of {row['rounds']})"))
    results["latency_ms"][n] = dict(row, speedup=speedup,
                                    speedup_per_mac_reduction=speedup /
                                    reduction)
  print(f"\nLilNetX ResNet-20 on {_TRAIN_SAMPLES.value} CIFAR-10 images, "
        f"{len(history)} epochs, {_STRUCTURE.value} prior lambda_rho="
        f"{_LAMBDA_SPARSITY.value:g}: test accuracy "
        f"{100 * history[-1]['test_accuracy']:.1f}% "
        f"({len(x_test)} images); removable MACs "
        f"{100 * (1 - 1 / reduction):.1f}%")
  if 1 - 1 / reduction < _TARGET.value:
    print(f"TARGET NOT REACHED: only {100 * (1 - 1 / reduction):.1f}% of the "
          f"MACs are removable (< {100 * _TARGET.value:g}%); raise "
          "--lambda_sparsity or --max_epochs.")
  print(f"Pruned TFLite parity with the trained model: "
        f"{'PASS' if parity.passed else 'FAIL ' + parity.failure} "
        f"(agreement {100 * parity.agreement:.2f}%, max |dlogit| "
        f"{parity.max_abs_dlogit:.2g}); interpreter: "
        f"{compat.lite_runtime_name()}\n")
  widths = [max(len(r[i]) for r in rows + [("", "dense", "pruned", "")])
            for i in range(4)]
  header = ("", "dense", "pruned", "ratio")
  for row in [header] + rows:
    print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
  if _JSON.value:
    atomic_write(_JSON.value, json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
