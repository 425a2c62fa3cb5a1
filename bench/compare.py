"""Benchmark: LilNetX against a float baseline and TF Model Optimization.

Trains one task's network on the same data, with the same architecture and the
same epoch budget, as

1. the float32 Keras baseline (the plain zoo model, trained by the same
   training loop as LilNetX, `train.loop.run` with the config's `float`
   recipe: `config.vanilla`, Adam with the LilNetX config's learning-rate
   schedule, batch size and epochs, the same tf.data training pipeline,
   augmentation included, and the same callbacks, without weight decay);
2. the tensorflow-model-optimization (tfmot) pipelines, written as its guides
   show a user (each starts from a copy of the trained baseline):
   * int8 post-training quantization of the baseline (`TFLiteConverter` with
     `Optimize.DEFAULT`, a representative dataset of 100 training images and
     `TFLITE_BUILTINS_INT8`, int8 input and output), then gzip;
   * magnitude pruning to 90 and, separately, 95 percent sparsity
     (`tfmot.sparsity.keras.prune_low_magnitude` with `PolynomialDecay` from
     0.5, `UpdatePruningStep`), `strip_pruning`, int8 PTQ, gzip;
   * weight clustering (`tfmot.clustering.keras.cluster_weights`, 16 clusters,
     linear centroid initialisation, Adam at 1e-5 as in the clustering guide),
     `strip_clustering`, float TFLite, gzip;
   * pruning-preserving clustering, the collaborative-optimization pipeline
     (`cluster_weights(..., preserve_sparsity=True)`, 16 clusters, k-means++
     initialisation, Adam, on each stripped pruned model),
     `strip_clustering`, int8 PTQ, gzip;
3. LilNetX at three rate weights (lambda_I, the config's among them),
   through the training CLI's own `train.loop.run` with the task's config
   (`bench/run_configs.py`'s `TASKS`: `train/configs/mnist_lenet5.py`,
   `mnist_lenet300.py`, `cifar10_resnet20_15ep.py`). Warm-ups are capped to
   the budget: the learning-rate one at the budget, the rate one at one
   epoch less (a rate warm-up over every epoch would leave a one-epoch run
   at lambda_I = 0 whatever the rate weight).
4. On request (`--pipelines=...,lilnetx_finetune`): LilNetX fine-tuned from
   the trained baseline (`config.init_weights`: the latents start as its
   kernels), as the tfmot pipelines start from it, with the config's
   `finetune` recipe.
5. On request (`--pipelines=...,lilnetx_distill`): the same for the whole
   budget, distilled from the trained baseline (`config.teacher`), with the
   config's `distill` recipe.

Every LilNetX and baseline hyper-parameter comes from the task's config
(`get_config(recipe)`, recipes `scratch`, `float`, `finetune`, `distill`);
this script sets only the budget, the data and the seed, and holds the rate
weights each table shows.

Epoch budget, with E the task config's epochs (or --epochs):
* baseline and LilNetX: E epochs from scratch;
* pruning: E epochs of pruning fine-tuning of the trained baseline (the guides
  prune a trained model) with Adam at its default rate as in the pruning
  guide; the masks are updated every 100 steps (more often in short runs) and
  reach the target sparsity four fifths of the way through, the last fifth
  recovering at fixed sparsity;
* clustering and pruning-preserving clustering: ceil(E / 10) epochs of
  fine-tuning (the guides use one to three epochs);
* LilNetX fine-tuning: ceil(E / 3) epochs of the trained baseline, the
  learning rate warming up over the first; distilled, E epochs.
The pruned, clustered and fine-tuned LilNetX models have therefore seen
more than E epochs in all; their training time column is cumulative
(baseline plus fine-tuning), that is what it costs a user to obtain them.

Tfmot wraps only the Conv2D and Dense layers, by `keras.models.clone_model`
with a `clone_function`, as the guides show for partial pruning or clustering:
those are the layers LilNetX compresses, and whole-model wrapping refuses the
CIFAR ResNets' parameter-free `ChannelPad` layer.

Measurements. Accuracy of tfmot pipelines and the baseline is measured by
running their .tflite file with the TFLite interpreter on the test set; that
of LilNetX by the trained model (the .lnx decodes to the same weights). Bytes
on disk: gzip (level 9) of the .tflite; for LilNetX the whole .lnx file and,
in a separate column, the range-coded latents alone. The ratio divides 4
bytes per parameter of the Keras model (all parameters) by the bytes on disk.
Weight and slice sparsity (for conv kernels, the fraction of k x k slices all
zero; dense-only models count single weights) come from the stripped Keras
kernels of tfmot models. MACs: "dense" counts every multiply of the Conv2D and
Dense layers (what the exported dense TFLite computes); "nonzero" skips the
zero slices (for LilNetX its `macs_effective`, for tfmot the same count on
the stripped kernels). Training wall time: for the baseline and LilNetX, the
training loop's epochs (`train_wall_seconds`, the same loop, callbacks and
data pipeline for both); for tfmot, the baseline's plus the time spent in
its fine-tuning `fit`.

Published figures of EPR (Oktay et al., ICLR 2020) and Deep Compression (Han
et al., ICLR 2016) for the task's network are printed beside the measured
rows, marked as quoted, not measured (KB taken as 1000 bytes).

Usage:

  python -m bench.compare --task=mnist_lenet5
  python -m bench.compare --task=mnist_lenet300 --epochs=10
  python -m bench.compare --task=cifar10_resnet20 \
      --data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz
  python -m bench.compare --task=mnist_lenet5 --quick   # smoke run, minutes

`--quick` trains every pipeline end to end on 512 training and 256 test
examples for one epoch: a check that everything runs, not a result. Outputs
in --output_dir: `compare_<task>.json` (the table, with the commit, stack
and machine: `bench/provenance.py`), `compare_<task>.png`
(accuracy against bytes, log x), the .tflite and .tflite.gz files, and one
run directory for the baseline and for each LilNetX rate weight. The table
and plot are rewritten after each pipeline (`"complete": false` until the
last one), so that a long run shows its rows as they come.

Long runs (CIFAR-10 on a CPU takes many hours) can stop and go on:
`--resume` keeps what the output directory holds. The baseline and LilNetX
runs continue from their last epoch checkpoint (`train.loop`), and finished
pipelines are not run again: their rows come from `rows/<pipeline>.json`.
Each pipeline trains on a fresh copy of the data pipeline, so that its data
order does not depend on which pipelines ran before it in the same process;
a resumed benchmark therefore gives the rows an uninterrupted one gives.
`--pipelines` and `--rates` select what runs (e.g. the baseline and one
LilNetX rate first).
"""

import functools
import gzip
import importlib.metadata
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import matplotlib
matplotlib.use("Agg")  # Files only; benchmarks run on servers.
import matplotlib.pyplot as plt
import numpy as np

import lilnetx_tf  # pylint: disable=unused-import  # Quiets TF first.
from lilnetx_tf import data as data_lib
from lilnetx_tf import models as models_lib
from lilnetx_tf.atomic import atomic_path
from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.method.stats import plain_stats
import tensorflow as tf
from lilnetx_tf.compat import keras
import tensorflow_model_optimization as tfmot

from bench import provenance
from bench import run_configs
from train import loop
from train import report

_DATA_ROOT = ROOT.parent / "shared" / "data"

# Published rows: (source, network, bytes, test error). Bytes are the papers'
# KB times 1000 (Deep Compression's 1070 KB for LeNet-300-100's 266K float
# weights shows its KB is about 1000 bytes).
_EPR = "EPR (Oktay et al., ICLR 2020)"
_DC = "Deep Compression (Han et al., 2016)"
# Each task of `run_configs.TASKS`: its data and the published rows.
TASKS = {
    "mnist_lenet5": dict(
        data_dir=_DATA_ROOT / "mnist",
        quoted=((_EPR, "LeNet-5-Caffe", 2840, 0.010),
                (_DC, "LeNet-5", 44000, 0.0074))),
    "mnist_lenet300": dict(
        data_dir=_DATA_ROOT / "mnist",
        quoted=((_EPR, "LeNet-300-100", 8560, 0.019),
                (_DC, "LeNet-300-100", 27000, 0.0158))),
    "cifar10_resnet20": dict(
        data_dir=_DATA_ROOT / "cifar10" / "cifar10-jpeg.tar.gz",
        # EPR's network is 4x wider than the width-1 ResNet-20 measured here.
        quoted=((_EPR, "ResNet-20-4 (4x wider)", 128000, 0.088),)),
}

_TASK = flags.DEFINE_enum("task", None, list(TASKS), "Task to benchmark.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Epoch budget; default: the task config's (1 with "
    "--quick).")
_QUICK = flags.DEFINE_bool(
    "quick", False, "Smoke run: 512 train / 256 test examples, one epoch, "
    "every pipeline end to end.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "The task's data (MNIST IDX directory or the CIFAR-10 "
    "JPEG archive); default: ../shared/data beside the repository.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the table, plot and models go; default: a "
    "lilnetx_compare/<task> directory under the system temp directory.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of every pipeline.")
_DEFAULT_PIPELINES = ("baseline", "tfmot", "lilnetx")
_PIPELINES = _DEFAULT_PIPELINES + ("lilnetx_finetune", "lilnetx_distill")
_SELECTED = flags.DEFINE_list(
    "pipelines", list(_DEFAULT_PIPELINES), "Which pipelines run, of "
    f"{', '.join(_PIPELINES)} (tfmot and the LilNetX fine-tunes start from "
    "the baseline's model, which they train if needed).")
_RATES = flags.DEFINE_list(
    "rates", None, "LilNetX rate weights (lambda_I); default the task's.")
_RESUME = flags.DEFINE_bool(
    "resume", False, "Go on with the run in --output_dir: keep its finished "
    "pipelines and continue its interrupted training runs. Refused if that "
    "run used another task, budget, seed, data or recipe.")

_QUICK_TRAIN, _QUICK_TEST = 512, 256
_REPRESENTATIVE = 100  # Calibration images of int8 PTQ, as the guides use.
_CLUSTERS = 16
_PRUNE_FROM = 0.5  # PolynomialDecay's initial sparsity in the pruning guide.
_PRUNE_END = 0.8  # Fraction of the fine-tuning steps that reach the target.


def _kernel_layer(layer):
  """Whether tfmot should wrap `layer`: the layers LilNetX compresses too."""
  return isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))


class _Bench:
  """The task's data, the trained baseline and the rows measured so far.

  Args:
    recipe: Function of a recipe's name (`run_configs.RECIPES`) giving its
      config, set up for this benchmark; the `scratch` one sets the data,
      batch size and epoch budget of every pipeline.
    out: Output directory.
    seed: Random seed.
    resume: Reuse the rows and models of an earlier run in `out`.
  """

  def __init__(self, recipe, out, seed, resume=False):
    self.recipe = recipe
    self.config = config = recipe("scratch")
    self.out = out
    self.seed = seed
    self.resume = resume
    self.rows = []
    self._load = dict(data_dir=config.data_dir, cache_dir=config.cache_dir,
                      source=config.data_source)
    x_train, _, info = data_lib.load_arrays(
        config.dataset, "train", limit=config.train_limit, **self._load)
    x_test, self.y_test, _ = data_lib.load_arrays(
        config.dataset, "test", limit=config.test_limit, **self._load)
    self.info = info
    self.x_test = np.asarray(data_lib.normalize(x_test, info))
    self.x_representative = np.asarray(
        data_lib.normalize(x_train[:_REPRESENTATIVE], info))
    self.train_examples = int(len(x_train))
    self.steps_per_epoch = self.train_examples // config.batch_size
    if not self.steps_per_epoch:
      raise app.UsageError(
          f"Fewer training examples ({self.train_examples}) than one batch "
          f"({config.batch_size}).")
    self.baseline_weights = None
    self.baseline_seconds = None
    self.baseline_path = None  # The trained baseline's model.keras.
    self.params = self.new_model().count_params()

  def train_dataset(self):
    """A fresh copy of `train.loop`'s training pipeline.

    Shuffled, augmented and batched as LilNetX sees it; a new one for each
    pipeline, so that its data order does not depend on the ones before.
    """
    return data_lib.build_dataset(
        self.config.dataset, "train", batch_size=self.config.batch_size,
        training=True, limit=self.config.train_limit,
        augment=self.config.augment, seed=self.seed, **self._load)[0]

  def run_pipeline(self, name, function):
    """Runs `function` (which adds rows), or loads its rows on `resume`.

    The rows a pipeline added are saved in `rows/<name>.json` once it ends.
    """
    path = self.out / "rows" / f"{name}.json"
    if self.resume and path.exists():
      with open(path) as f:
        rows = json.load(f)["rows"]
      self.rows += rows
      print(f"[{name}] kept from the earlier run: "
            f"{', '.join(row['name'] for row in rows)}", flush=True)
      return
    first = len(self.rows)
    function()
    path.parent.mkdir(exist_ok=True)
    report.write_json(str(path), dict(pipeline=name, rows=self.rows[first:]))

  def _run_loop(self, config, name):
    """`train.loop.run` in `out/name`: resumed on `resume`, else afresh."""
    workdir = self.out / name
    if not self.resume:
      # A finished run in the workdir would be reported, not retrained.
      shutil.rmtree(workdir, ignore_errors=True)
    return loop.run(config, str(workdir)), workdir

  def new_model(self):
    """A fresh zoo model, with the baseline's weights once it is trained."""
    model = models_lib.build_model(self.config.model, self.info.input_shape,
                                   self.info.num_classes,
                                   **self.config.model_options.to_dict())
    if self.baseline_weights is not None:
      model.set_weights(self.baseline_weights)
    return model

  def fit(self, model, epochs, optimizer, callbacks=()):
    """Compiles and trains `model`; returns the wall seconds of `fit`."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    data = self.train_dataset()
    start = time.time()
    model.fit(data, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return time.time() - start

  def convert(self, model, int8):
    """The .tflite flatbuffer of `model`: float32, or int8 PTQ."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
      images = self.x_representative

      def representative_dataset():
        for i in range(len(images)):
          yield [images[i:i + 1]]

      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.representative_dataset = representative_dataset
      converter.target_spec.supported_ops = [
          tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
      converter.inference_input_type = tf.int8
      converter.inference_output_type = tf.int8
    return converter.convert()

  def add_tflite_row(self, name, label, model, int8, train_seconds):
    """Converts, gzips, evaluates and measures a stripped Keras model.

    Args:
      name: Row key (file names too).
      label: Human-readable pipeline name.
      model: The stripped Keras model whose kernels are measured.
      int8: Convert with int8 PTQ (else float32).
      train_seconds: Cumulative training wall time of the pipeline.
    """
    start = time.time()
    content = self.convert(model, int8)
    compressed = gzip.compress(content, compresslevel=9)
    atomic_write(self.out / f"{name}.tflite", content)
    atomic_write(self.out / f"{name}.tflite.gz", compressed)
    convert_seconds = time.time() - start
    logits = tflite_check.TFLiteRunner(content)(self.x_test)
    stats = plain_stats(model)["total"]
    self._add(dict(
        name=name, label=label, family="baseline" if name.startswith(
            "baseline") else "tfmot",
        test_accuracy=float(np.mean(np.argmax(logits, -1) == self.y_test)),
        bytes=len(compressed), coded_latent_bytes=None,
        tflite_bytes=len(content), weight_sparsity=stats["weight_sparsity"],
        slice_sparsity=stats["slice_sparsity"],
        macs_dense=stats["macs_dense"], macs_nonzero=stats["macs_effective"],
        train_wall_seconds=train_seconds, convert_seconds=convert_seconds,
        file=f"{name}.tflite.gz"))

  def _add(self, row):
    row["ratio"] = 4 * self.params / row["bytes"]
    self.rows.append(row)
    print(f"[{row['name']}] accuracy {row['test_accuracy']:.4f}, "
          f"{row['bytes']:,} bytes, {row['train_wall_seconds']:.1f} s of "
          f"training", flush=True)

  def train_baseline(self):
    """Trains the float32 baseline (once); sets its weights and seconds.

    With `train.loop.run` and `config.vanilla`, as LilNetX trains: the same
    schedule, data pipeline and callbacks, so that their training times
    compare the methods, not two harnesses.
    """
    if self.baseline_weights is not None:
      return
    metrics, workdir = self._run_loop(self.recipe("float"),
                                      "baseline_float32")
    self.baseline_path = workdir / "model.keras"
    trained = keras.models.load_model(self.baseline_path, compile=False)
    self.baseline_weights = trained.get_weights()
    self.baseline_seconds = metrics["train_wall_seconds"]

  def baseline(self):
    """Adds the float32 baseline's float and int8 PTQ rows."""
    self.train_baseline()
    model = self.new_model()
    seconds = self.baseline_seconds
    self.add_tflite_row("baseline_float32", "float32 baseline", model, False,
                        seconds)
    self.add_tflite_row("ptq_int8", "int8 PTQ", model, True, seconds)

  def prune(self, sparsity):
    """Prunes a copy of the baseline; returns (stripped model, seconds)."""
    keras.utils.set_random_seed(self.seed)
    epochs = self.config.epochs
    steps = epochs * self.steps_per_epoch
    # A mask update every 100 steps as in the guide, more often for short
    # runs; the end step is a multiple of it, so the target is reached.
    frequency = min(100, max(1, steps // 10))
    end_step = max(frequency, int(_PRUNE_END * steps) // frequency * frequency)
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=_PRUNE_FROM, final_sparsity=sparsity,
            begin_step=0, end_step=end_step, frequency=frequency)}

    def apply_pruning(layer):
      if _kernel_layer(layer):
        return tfmot.sparsity.keras.prune_low_magnitude(layer,
                                                        **pruning_params)
      return layer

    model_for_pruning = keras.models.clone_model(
        self.new_model(), clone_function=apply_pruning)
    seconds = self.fit(model_for_pruning, epochs, "adam",
                       [tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(model_for_pruning), seconds

  def cluster(self, model, preserve_sparsity):
    """Clusters `model`'s kernels; returns (stripped model, seconds)."""
    keras.utils.set_random_seed(self.seed)
    init = tfmot.clustering.keras.CentroidInitialization
    clustering_params = {
        "number_of_clusters": _CLUSTERS,
        # Each guide's choice: linear for clustering, k-means++ with
        # preserve_sparsity in the collaborative-optimization example.
        "cluster_centroids_init": (init.KMEANS_PLUS_PLUS if preserve_sparsity
                                   else init.LINEAR)}
    if preserve_sparsity:
      clustering_params["preserve_sparsity"] = True

    def apply_clustering(layer):
      if _kernel_layer(layer):
        return tfmot.clustering.keras.cluster_weights(layer,
                                                      **clustering_params)
      return layer

    clustered_model = keras.models.clone_model(
        model, clone_function=apply_clustering)
    optimizer = ("adam" if preserve_sparsity
                 else keras.optimizers.Adam(learning_rate=1e-5))
    seconds = self.fit(clustered_model, cluster_epochs(self.config.epochs),
                       optimizer)
    return tfmot.clustering.keras.strip_clustering(clustered_model), seconds

  def tfmot_pipelines(self):
    """The tfmot pipelines, as `(name, function adding its rows)` pairs.

    Clustering, and pruning followed by pruning-preserving clustering; each
    trains the baseline first if it is not trained yet.
    """

    def clustering():
      self.train_baseline()
      clustered, seconds = self.cluster(self.new_model(),
                                        preserve_sparsity=False)
      self.add_tflite_row(f"cluster{_CLUSTERS}_float",
                          f"cluster {_CLUSTERS} (float)", clustered, False,
                          self.baseline_seconds + seconds)

    def pruning(sparsity):
      percent = round(100 * sparsity)
      self.train_baseline()
      base = self.baseline_seconds
      pruned, prune_seconds = self.prune(sparsity)
      self.add_tflite_row(f"prune{percent}_int8",
                          f"prune {percent}% + int8 PTQ", pruned, True,
                          base + prune_seconds)
      clustered, seconds = self.cluster(pruned, preserve_sparsity=True)
      self.add_tflite_row(
          f"prune{percent}_cluster{_CLUSTERS}_int8",
          f"prune {percent}% + sparse cluster {_CLUSTERS} + int8 PTQ",
          clustered, True, base + prune_seconds + seconds)

    return [(f"cluster{_CLUSTERS}", clustering)] + [
        (f"prune{round(100 * s)}", functools.partial(pruning, s))
        for s in (0.90, 0.95)]

  def lilnetx(self, rate):
    """Trains LilNetX at rate weight `rate` with `train.loop.run`."""
    config = self.recipe("scratch")
    config.lambda_rate = float(rate)
    self._add_lilnetx_row(config, f"lilnetx_lambda{rate:g}",
                          f"LilNetX lambda_I={rate:g}", 0.0)

  def lilnetx_finetune(self, rate, distill=False):
    """Fine-tunes the trained baseline with LilNetX at rate weight `rate`.

    The config's `finetune` recipe; with `distill`, its `distill` one, with
    the baseline as teacher.
    """
    self.train_baseline()
    kind = "distill" if distill else "finetune"
    config = self.recipe(kind)
    config.lambda_rate = float(rate)
    config.init_weights = str(self.baseline_path)
    if distill:
      config.teacher = config.init_weights
    self._add_lilnetx_row(
        config, f"lilnetx_{kind}_lambda{rate:g}",
        f"baseline + LilNetX {'distilled ' if distill else ''}fine-tune "
        f"lambda_I={rate:g}", self.baseline_seconds)

  def _add_lilnetx_row(self, config, name, label, earlier_seconds):
    """Trains `config` in `out/name` and adds its row."""
    metrics, _ = self._run_loop(config, name)
    final = metrics["final"]
    self._add(dict(
        name=name, label=label, family="lilnetx",
        test_accuracy=final["test_accuracy"], bytes=final["file_bytes"],
        coded_latent_bytes=final["coded_bytes"], tflite_bytes=None,
        weight_sparsity=final["weight_sparsity"],
        slice_sparsity=final["slice_sparsity"],
        macs_dense=final["macs_dense"], macs_nonzero=final["macs_effective"],
        train_wall_seconds=earlier_seconds + metrics["train_wall_seconds"],
        convert_seconds=None, file=f"{name}/model.lnx"))


def cluster_epochs(epochs):
  """Fine-tuning epochs of the clustering steps: a tenth of the budget."""
  return max(1, math.ceil(epochs / 10))


def recipe_config(task, recipe, data_dir, epochs, quick, seed):
  """A recipe of the task's config, set up for this benchmark.

  Args:
    task: A key of `TASKS`.
    recipe: One of `run_configs.RECIPES`.
    data_dir: The task's data.
    epochs: Epoch budget, or None for the config's (1 when `quick`).
    quick: Use a few hundred examples.
    seed: Random seed.

  Returns:
    The `ml_collections.ConfigDict`.
  """
  if quick and epochs is None:
    epochs = 1
  config = run_configs.recipe_config(task, recipe, epochs)
  config.data_dir = str(data_dir)
  if quick:
    config.train_limit, config.test_limit = _QUICK_TRAIN, _QUICK_TEST
  config.seed = seed
  # Every pipeline fits every training example and reports its final model:
  # no validation split for best-epoch selection.
  config.validation_fraction = 0.0
  return config


def _fmt_fraction(value):
  return "-" if value is None else f"{100 * value:.1f}"


def _fmt_int(value):
  return "-" if value is None else f"{value:,}"


def table_text(result):
  """The comparison table (measured rows, then quoted ones) as text."""
  head = (f"{'pipeline':<46}{'acc %':>7}{'bytes':>11}{'latents':>10}"
          f"{'x f32':>8}{'w.sp %':>8}{'sl.sp %':>8}{'MACs dense':>12}"
          f"{'MACs nz':>12}{'train s':>9}")
  lines = [head, "-" * len(head)]
  for row in result["rows"]:
    lines.append(
        f"{row['label']:<46}{100 * row['test_accuracy']:>7.2f}"
        f"{row['bytes']:>11,}{_fmt_int(row['coded_latent_bytes']):>10}"
        f"{row['ratio']:>8.1f}{_fmt_fraction(row['weight_sparsity']):>8}"
        f"{_fmt_fraction(row['slice_sparsity']):>8}"
        f"{row['macs_dense']:>12,}{row['macs_nonzero']:>12,}"
        f"{row['train_wall_seconds']:>9.1f}")
  for row in result["quoted"]:
    lines.append(
        f"{row['label'][:46]:<46}{100 * row['test_accuracy']:>7.2f}"
        f"{row['bytes']:>11,}{'-':>10}{row['ratio']:>8.1f}"
        f"   quoted, not measured: {row['source']}")
  return "\n".join(lines)


def plot(result, path):
  """Accuracy against bytes on disk (log x), one marker per pipeline."""
  fig, ax = plt.subplots(figsize=(11, 5.5))
  markers = "osD^v<>phd8H"
  lilnetx = [r for r in result["rows"] if r["family"] == "lilnetx"]
  if lilnetx:  # The LilNetX frontier as a line through its rate weights.
    lilnetx = sorted(lilnetx, key=lambda r: r["bytes"])
    ax.plot([r["bytes"] for r in lilnetx],
            [100 * r["test_accuracy"] for r in lilnetx], "-", color="0.6",
            zorder=1)
  for i, row in enumerate(result["rows"]):
    ax.scatter(row["bytes"], 100 * row["test_accuracy"],
               marker=markers[i % len(markers)], s=60, zorder=2,
               label=row["label"])
  for row, marker in zip(result["quoted"], "*PX"):
    ax.scatter(row["bytes"], 100 * row["test_accuracy"], marker=marker,
               s=110, facecolors="none", edgecolors="k", zorder=2,
               label=f"{row['label']} (quoted, not measured)")
  ax.set_xscale("log")
  ax.set_xlabel("bytes on disk (gzip of .tflite; LilNetX: .lnx file)")
  ax.set_ylabel("test accuracy (percent)")
  ax.set_title(f"{result['task']}: {result['epochs']} epoch budget"
               f"{' (--quick smoke run)' if result['quick'] else ''}")
  ax.grid(True, which="both", alpha=0.3)
  # Outside the axes: inside, it would hide points of the frontier.
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.tight_layout()
  try:
    with atomic_path(path, suffix=".png") as tmp:
      fig.savefig(tmp, dpi=120)
  finally:
    plt.close(fig)


def _rates(task):
  if _RATES.value is None:
    return run_configs.rates_of(task, "scratch")
  try:
    rates = [float(r) for r in _RATES.value]
  except ValueError as e:
    raise app.UsageError(f"--rates must be numbers: {e}") from None
  if not rates or not all(r > 0 and math.isfinite(r) for r in rates):
    raise app.UsageError(f"--rates must be finite and > 0, got {rates}.")
  return rates


def _differences(saved, now, prefix=""):
  """`key there, now` of each field (nested ones dotted) that differs."""
  for k in sorted(set(saved) | set(now)):
    old, new = saved.get(k), now.get(k)
    if isinstance(old, dict) and isinstance(new, dict):
      yield from _differences(old, new, f"{prefix}{k}.")
    elif old != new:
      old, new = ("{...}" if isinstance(v, dict) else repr(v)
                  for v in (old, new))
      yield f"{prefix}{k} {old} there, {new} now"


def _check_resumable(out, settings):
  """Records the run's settings; on --resume, refuses other settings."""
  path = out / "rows" / "settings.json"
  if _RESUME.value and path.exists():
    with open(path) as f:
      saved = json.load(f)
    if saved != settings:
      changed = "; ".join(_differences(saved, settings))
      raise app.UsageError(f"--resume: {out} holds a run with other "
                           f"settings ({changed}); use another --output_dir.")
  elif not _RESUME.value:
    shutil.rmtree(out / "rows", ignore_errors=True)
  path.parent.mkdir(exist_ok=True)
  report.write_json(str(path), settings)


def _provenance():
  """`bench/provenance.py`'s record, with tfmot's version and the GPUs."""
  record = provenance.provenance()
  tfmot_name = "tensorflow-model-optimization"
  record["stack"][tfmot_name] = importlib.metadata.version(tfmot_name)
  record["machine"]["gpus"] = len(tf.config.list_physical_devices("GPU"))
  return record


def _write_result(bench, spec, config, task, out, start, complete):
  """Writes the table (JSON) and the plot; returns the table."""
  float32_bytes = 4 * bench.params
  quoted = [dict(label=f"{source.split(' (')[0]}: {network}", source=source,
                 network=network, bytes=size, test_accuracy=1 - error,
                 ratio=float32_bytes / size)
            for source, network, size, error in spec["quoted"]]
  result = dict(
      task=task, config=run_configs.config_path(task), model=config.model,
      dataset=config.dataset,
      model_options=config.model_options.to_dict(), epochs=config.epochs,
      batch_size=config.batch_size, quick=_QUICK.value, seed=_SEED.value,
      train_examples=bench.train_examples,
      test_examples=int(len(bench.y_test)), parameters=bench.params,
      float32_bytes=float32_bytes,
      cluster_epochs=cluster_epochs(config.epochs),
      rows=bench.rows, quoted=quoted, complete=complete,
      total_wall_seconds=time.time() - start, **_provenance())
  report.write_json(str(out / f"compare_{task}.json"), result)
  plot(result, out / f"compare_{task}.png")
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  task = _TASK.value
  spec = TASKS[task]
  if _EPOCHS.value is not None and _EPOCHS.value < 1:
    raise app.UsageError("--epochs must be >= 1.")
  unknown = sorted(set(_SELECTED.value) - set(_PIPELINES))
  if unknown or not _SELECTED.value:
    raise app.UsageError(f"--pipelines: {unknown or 'none given'}; choose "
                         f"from {', '.join(_PIPELINES)}.")
  rates = _rates(task)
  data_dir = _DATA_DIR.value or spec["data_dir"]
  out = pathlib.Path(_OUTPUT_DIR.value or os.path.join(
      tempfile.gettempdir(), "lilnetx_compare", task))
  out.mkdir(parents=True, exist_ok=True)
  recipe = functools.partial(recipe_config, task, data_dir=data_dir,
                             epochs=_EPOCHS.value, quick=_QUICK.value,
                             seed=_SEED.value)
  config = recipe("scratch")
  # A row trained with another recipe must not be reused: the recipes are
  # part of the settings a resumed run must share.
  settings = dict(task=task, epochs=config.epochs, quick=_QUICK.value,
                  seed=_SEED.value, data_dir=str(data_dir),
                  config=run_configs.config_path(task),
                  recipes={name: run_configs.TASKS[task]["config"].get_config(
                      name).to_dict() for name in run_configs.RECIPES})
  _check_resumable(out, settings)
  start = time.time()
  print(f"{task}: {config.model} on {config.dataset}, {config.epochs} epochs, "
        f"batch {config.batch_size}"
        f"{', --quick' if _QUICK.value else ''}; outputs in {out}",
        flush=True)

  bench = _Bench(recipe, out, _SEED.value, resume=_RESUME.value)
  pipelines = []
  if "baseline" in _SELECTED.value:
    pipelines.append(("baseline", bench.baseline))
  if "tfmot" in _SELECTED.value:
    pipelines += bench.tfmot_pipelines()
  if "lilnetx" in _SELECTED.value:
    pipelines += [(f"lilnetx_lambda{rate:g}",
                   functools.partial(bench.lilnetx, rate)) for rate in rates]
  for kind in ("finetune", "distill"):
    if f"lilnetx_{kind}" in _SELECTED.value:
      pipelines += [(f"lilnetx_{kind}_lambda{rate:g}",
                     functools.partial(bench.lilnetx_finetune, rate,
                                       kind == "distill"))
                    for rate in run_configs.rates_of(task, kind)]
  for i, (name, function) in enumerate(pipelines):
    bench.run_pipeline(name, function)
    result = _write_result(bench, spec, config, task, out, start,
                           complete=i + 1 == len(pipelines))

  json_path = out / f"compare_{task}.json"
  print()
  print(f"{task}: {config.model} ({bench.params:,} parameters, float32 "
        f"{result['float32_bytes']:,} bytes), {config.epochs} epochs, "
        f"{result['test_examples']} test examples"
        f"{'  [--quick smoke run, not a result]' if _QUICK.value else ''}")
  print(table_text(result))
  print(f"\nTable: {json_path}; plot: {out / f'compare_{task}.png'}; "
        f"{result['total_wall_seconds']:.0f} s in all.")


if __name__ == "__main__":
  flags.mark_flag_as_required("task")
  app.run(main)
