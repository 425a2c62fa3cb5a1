"""Benchmark: encode/decode throughput and sizes of the compressed model file.

Model: LilNetX ResNet-50 (224x224x3, 1000 classes, 25.5 M latents), not
trained: its latents are set to what a trained model's look like -- integers
from a discretised Laplace distribution (scale `--scale`) with whole slices at
zero (`--conv3x3_zero` of the 3x3 slices, `--other_zero` of the others) -- and
each group's prior is then fitted to them (`LilNetXModel.fit_priors`), as
training would; the prior's estimate is printed beside the coded size. Coding
speed depends on these figures, not on whether the model classifies well.

Times are the median and the best of `--runs` runs after one warm-up run
(its time is printed too), and the median in latents per second:

- encode: `codec.compress_latents` (coding tables from the latents'
  histograms + range coding), also split into its two parts;
- decode: `codec.decompress_latents` (range decoding);
- the whole file: `fileformat.save_compressed` (also the decompressed model,
  float weights, checks, atomic write) and `fileformat.load_compressed`
  (checks, range decoding, kernel decoding, building the Keras model).

`--coder` picks the range coder (`lilnetx_tf.compressed.coders`; default:
the stack's default coder); run it once per coder to compare them. The
table is printed, and with `--json` also written with the sizes.

  python bench/codec.py [--runs=5] [--coder=constriction]
      [--output=/tmp/resnet50.lnx] [--json=/tmp/codec.json]
"""

import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from bench import provenance
from absl import flags
import numpy as np

import lilnetx_tf
from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.method import groups
from lilnetx_tf.models import build_model
from lilnetx_tf.compat import keras

_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs per measurement.")
_SCALE = flags.DEFINE_float("scale", 1.5, "Laplace scale of nonzero latents.")
_CONV3X3_ZERO = flags.DEFINE_float(
    "conv3x3_zero", 0.8, "Fraction of 3x3 slices that are zero.")
_OTHER_ZERO = flags.DEFINE_float(
    "other_zero", 0.6, "Fraction of zero slices in the other groups.")
_FIT_STEPS = flags.DEFINE_integer("fit_steps", 300, "Prior fitting steps.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the file "
                              "(default: a temporary directory).")
_CODER = flags.DEFINE_enum("coder", None, list(coders.CODERS),
                           "Range coder; default: the stack's default.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")


def _set_sparse_latents(model, rng):
  """Sets every latent to a sparse integer tensor like a trained model's."""
  for layer in model.latent_layers:
    shape = tuple(layer.latent.shape)
    positions = groups.num_positions(shape)
    rows = int(np.prod(shape)) // positions
    slices = np.round(rng.laplace(0.0, _SCALE.value, (rows, positions)))
    zero = _CONV3X3_ZERO.value if positions > 1 else _OTHER_ZERO.value
    slices[rng.random(rows) < zero] = 0
    layer.latent.assign(groups.from_slices(slices.astype(np.float32), shape))


def _timed(function, runs):
  """(warm-up, median, best seconds, last result) of `function()`."""
  start = time.perf_counter()
  result = function()
  warmup = time.perf_counter() - start
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    result = function()
    times.append(time.perf_counter() - start)
  return warmup, statistics.median(times), min(times), result


def main(argv):
  del argv
  coder = _CODER.value or coders.default_coder()
  coders.require(coder)  # Before the minutes of set-up.
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  print("Building LilNetX ResNet-50 ...", flush=True)
  model = lilnetx_tf.compressible(
      build_model("resnet50", (224, 224, 3), 1000), seed=0)
  n = model.num_latents
  _set_sparse_latents(model, rng)
  print(f"Fitting the priors of {len(model.group_layers)} groups to "
        f"{n:,} sparse latents ...", flush=True)
  model.compile(prior_optimizer=keras.optimizers.Adam(1e-2))
  model.fit_priors(_FIT_STEPS.value)
  estimate = float(model.total_bits(training=False)) / 8

  runs = _RUNS.value
  latents = codec.rounded_latents(model)
  symbols = {g: np.concatenate([groups.to_slices(latents[l.name])
                                for l in ls])
             for g, ls in model.group_layers.items()}
  tables = _timed(lambda: {g: codec.histogram_tables(s)[:2]
                           for g, s in symbols.items()}, runs)
  coding = _timed(lambda: [codec.encode_symbols(symbols[g], *tables[-1][g],
                                                coder) for g in symbols], runs)
  encode = _timed(lambda: codec.compress_latents(model, coder), runs)
  decode = _timed(lambda: codec.decompress_latents(encode[-1]), runs)
  assert all(np.array_equal(decode[-1][k], v) for k, v in latents.items())

  with tempfile.TemporaryDirectory() as tmp:
    path = _OUTPUT.value or os.path.join(tmp, "resnet50.lnx")
    save = _timed(lambda: fileformat.save_compressed(model, path,
                                                     coder=coder), runs)
    load = _timed(lambda: fileformat.load_compressed(path), runs)
  sizes = save[-1]

  print(f"\nResNet-50, {n:,} latents, range coder {coder}; {runs} runs "
        "after a warm-up run\n")
  print(f"{'step':<42}{'warm-up s':>10}{'median s':>10}{'best s':>8}"
        f"{'latents/s':>13}")
  steps = {}
  for name, (warmup, median, best, _) in (
      ("encode: coding tables (histograms)", tables),
      ("encode: range coding", coding),
      ("encode: codec.compress_latents (both)", encode),
      ("decode: codec.decompress_latents", decode),
      ("file: save_compressed", save),
      ("file: load_compressed", load)):
    print(f"{name:<42}{warmup:>10.2f}{median:>10.2f}{best:>8.2f}"
          f"{n / median:>13,.0f}")
    steps[name] = dict(warmup_s=warmup, median_s=median, best_s=best,
                       latents_per_s=n / median)
  print(f"\n{'size':<44}{'bytes':>14}{'vs float32':>12}")
  size_rows = {
      "latents (model size)": sizes["latent_bytes"],
      "  prior estimate": round(estimate),
      "  empirical entropy": round(sum(
          codec.empirical_entropy_bits(s) for s in symbols.values()) / 8),
      "whole file": sizes["file_bytes"],
      "float32 weights": sizes["float32_bytes"]}
  for name, value in size_rows.items():
    print(f"{name:<44}{value:>14,}"
          f"{sizes['float32_bytes'] / value:>11.2f}x")
  print(f"\nbits per latent: {sizes['bits_per_latent']:.3f}")
  if _JSON.value:
    provenance.write_results(_JSON.value, dict(
        model="resnet50", num_latents=n, coder=coder, runs=runs,
        steps=steps, sizes={k.strip(): v for k, v in size_rows.items()},
        bits_per_latent=sizes["bits_per_latent"]))


if __name__ == "__main__":
  app.run(main)
