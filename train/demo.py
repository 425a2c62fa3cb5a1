"""`make demo`: LilNetX end to end on the embedded digits dataset.

Trains a small LilNetX CNN on scikit-learn's 8x8 digits (shipped inside the
package, no download), prints accuracy, the range-coded size of the latents,
the compression ratio against float32 and the structured sparsity, writes the
compressed model file and a TFLite model, and checks that both give the same
predictions as the trained model.

  python -m train.demo [--out=demo_out] [--epochs=60]
"""

import os
import pathlib
import time

from absl import app
from absl import flags
import numpy as np
import tqdm

import lilnetx_tf  # Before tensorflow: quiets TF's start-up noise.
from lilnetx_tf import compat
from lilnetx_tf import data
from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.deploy import tflite
from lilnetx_tf.deploy import tflite_check
from lilnetx_tf.compat import keras

_OUT = flags.DEFINE_string("out", "demo_out", "Where the files go.")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Training epochs.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


def small_cnn(input_shape, num_classes):
  """A plain Keras CNN for 8x8 digits; `compressible` makes it LilNetX."""
  inputs = keras.Input(input_shape)
  h = inputs
  for i, filters in enumerate((32, 64)):
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                               name=f"conv{i + 1}")(h)
    # A short momentum: weights move fast on a dataset of 23 batches.
    h = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
  h = keras.layers.Conv2D(64, 1, activation="relu", name="conv3")(h)
  h = keras.layers.GlobalAveragePooling2D()(h)
  outputs = keras.layers.Dense(num_classes, name="logits")(h)
  return keras.Model(inputs, outputs, name="digits_cnn")


class EpochProgress(keras.callbacks.Callback):
  """A tqdm progress bar over epochs, showing accuracy and estimated size."""

  def __init__(self, epochs):
    super().__init__()
    self.bar = tqdm.tqdm(total=epochs, desc="training", unit="epoch")

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    self.bar.set_postfix(acc=f"{logs.get('accuracy', 0):.3f}",
                         size=f"{logs.get('estimated_bytes', 0) / 1024:.1f}KiB",
                         slices0=f"{logs.get('slice_sparsity', 0):.0%}")
    self.bar.update()

  def on_train_end(self, logs=None):
    self.bar.close()


def main(argv):
  del argv
  start = time.time()
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  keras.utils.set_random_seed(_SEED.value)

  x_train, y_train, info = data.load_arrays("digits", "train")
  x_test, y_test, _ = data.load_arrays("digits", "test")
  x_train = np.asarray(data.normalize(x_train, info))
  x_test = np.asarray(data.normalize(x_test, info))
  print(f"digits: {len(x_train)} training and {len(x_test)} test images "
        f"of {info.input_shape}, embedded in scikit-learn (no download).")

  plain = small_cnn(info.input_shape, info.num_classes)
  model = lilnetx_tf.compressible(plain, lambda_rate=2.0,
                                  lambda_sparsity=3e-4, seed=_SEED.value)
  steps = _EPOCHS.value * -(-len(x_train) // 64)
  model.compile(keras.optimizers.Adam(
                    keras.optimizers.schedules.CosineDecay(1e-2, steps)),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), metrics=["accuracy"])
  print(f"LilNetX model: {len(model.conversion.converted)} layers with "
        f"latent kernels ({model.num_latents} latents) in groups "
        f"{', '.join(sorted(model.decoders))}.")
  model.fit(x_train, y_train, epochs=_EPOCHS.value, batch_size=64, verbose=0,
            callbacks=[lilnetx_tf.RateWarmup(5),
                       lilnetx_tf.CompressionLogger(),
                       EpochProgress(_EPOCHS.value)])

  logits = model.predict(x_test, verbose=0)
  accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
  total = lilnetx_tf.compression_stats(model)["total"]
  print(f"\ntest accuracy        {accuracy:.2%}")
  print(f"latents coded size   {total['coded_bytes']:,} bytes "
        f"({8 * total['coded_bytes'] / total['weights']:.2f} bits per weight)")
  print(f"float32 kernels      {total['float32_bytes']:,} bytes -> "
        f"compression ratio {total['compression_ratio']:.1f}x")
  print(f"sparsity             weights {total['weight_sparsity']:.1%}, conv "
        f"slices {total['slice_sparsity']:.1%}, conv input channels "
        f"{total['in_channel_sparsity']:.1%}, output channels "
        f"{total['out_channel_sparsity']:.1%}")
  print(f"MACs                 {total['macs_effective']:,} of "
        f"{total['macs_dense']:,} left after skipping zero slices "
        f"({total['macs_ratio']:.1%})")

  # The compressed model file, decoded back into a plain Keras model.
  lnx = out / "model.lnx"
  sizes = fileformat.save_compressed(model, lnx)
  restored = fileformat.load_compressed(lnx)
  restored_logits = restored.predict(x_test, verbose=0)
  file_ok = np.array_equal(np.argmax(restored_logits, -1),
                           np.argmax(logits, -1))
  print(f"\n{lnx}: {sizes['file_bytes']:,} bytes in all "
        f"(latents {sizes['latent_bytes']:,}); float32 model "
        f"{sizes['float32_bytes']:,} bytes -> {sizes['file_ratio']:.1f}x; "
        f"max |logit difference| "
        f"{np.abs(restored_logits - logits).max():.2e}; same predictions: "
        f"{file_ok}")

  # TFLite: decode, fold batch norm, remove zero channels, convert.
  models = tflite.prepare_for_export(model)
  content = tflite.convert(models.pruned)
  path = out / "model.tflite"
  atomic_write(path, content)
  tflite_logits = tflite_check.TFLiteRunner(content)(x_test)
  tflite_ok = np.array_equal(np.argmax(tflite_logits, -1),
                             np.argmax(logits, -1))
  report = models.prune_report
  print(f"{path}: {len(content):,} bytes; zero channels removed: parameters "
        f"{report.params_before:,} -> {report.params_after:,}, MACs "
        f"{report.macs_before:,} -> {report.macs_after:,}; max |logit "
        f"difference| {np.abs(tflite_logits - logits).max():.2e} (run in "
        f"{compat.lite_runtime_name()}); same predictions: {tflite_ok}")
  print(f"\ndone in {time.time() - start:.0f} s")
  if not (file_ok and tflite_ok):
    raise SystemExit("The exported models do not reproduce the trained "
                     "model's predictions.")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  app.run(main)
