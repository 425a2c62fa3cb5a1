"""tf.data input pipelines: shuffle, augment, normalise, batch, prefetch.

`build_dataset` yields float32 images normalised per channel and int32
labels. `normalize` is the exact same normalisation for numpy or tf inputs, so
that other code (TFLite checks, representative datasets) can feed a model
precisely what it was trained on. The pipelines are plain tf.data and work on
CPU and inside tf.distribute strategies.

Training pipelines shuffle every epoch and (with `augment`) apply the
dataset's standard augmentation: CIFAR 4-pixel pad, random 32x32 crop and
horizontal flip; ImageNet random resized crop to 224 and flip. MNIST and
digits get none. ImageNet evaluation (or `augment=False`) uses the resize
256 / centre crop 224 view. Everything random derives from `seed`.

Validation: with `validation_fraction`, the training split (its first `limit`
examples) is divided: `validation_size(n, validation_fraction,
max_validation_examples)` examples, chosen by `seed` (see `holdout`), form
the "validation" split and "train" is the rest. Streamed TFDS data holds out
its first examples instead (TFDS order is already shuffled). Build both
splits with the same arguments.

Epochs: without `epochs`, a dataset is one epoch, reshuffled each time it is
iterated (the n-th iteration's order depends on n, not on an epoch number).
With `epochs` (training only), it is epochs `initial_epoch`..`epochs - 1` in
a row, each batched on its own, for `model.fit(steps_per_epoch=
num_examples // batch_size, initial_epoch=initial_epoch)`: each epoch's order
and augmentation are a function of (seed, epoch) alone, so resuming at epoch
k replays exactly epoch k. (Streamed TFDS data, whose file order TFDS chooses
per iteration, is reshuffled per epoch without that.)
"""

import dataclasses
from typing import Callable, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from lilnetx_tf.data import augment as augment_lib
from lilnetx_tf.data import holdout
from lilnetx_tf.data import image_folder
from lilnetx_tf.data import registry
from lilnetx_tf.data import sources
from lilnetx_tf.data import tfds_source
from lilnetx_tf.data.registry import DatasetInfo, DatasetSpec

__all__ = ["build_dataset", "normalize"]

# Shuffle buffer of encoded images streamed from TFDS (about 1 GB of ImageNet
# JPEG bytes); TFDS also shuffles its shard order.
_STREAM_SHUFFLE_BUFFER = 10_000

_SPLITS = registry.SPLITS + ("validation",)

ArrayOrTensor = Union[np.ndarray, tf.Tensor]


def normalize(x: ArrayOrTensor, info: DatasetInfo) -> ArrayOrTensor:
  """Maps pixels in [0, 255] to `(x / 255 - mean) / std` per channel.

  Args:
    x: Images [..., C] of any real dtype (usually uint8), numpy or tf.
    info: Supplies the per-channel `mean` and `std`.

  Returns:
    float32 of the same shape, numpy for numpy input, else a tf.Tensor. Both
    compute in float32 in the same order, so the results are identical.
  """
  mean = np.asarray(info.mean, np.float32)
  std = np.asarray(info.std, np.float32)
  if isinstance(x, (np.ndarray, np.generic)):
    return (np.asarray(x, np.float32) / np.float32(255.0) - mean) / std
  return (tf.cast(x, tf.float32) / 255.0 - mean) / std


def _preprocess(spec: DatasetSpec, training: bool, augment: bool
                ) -> Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
  """Returns the per-image `fn(image, seed)` of a pipeline, or None."""
  size = spec.info.input_shape[0]
  if spec.augmentation == "imagenet":
    if training and augment:
      return lambda image, seed: augment_lib.random_resized_crop(
          image, seed, size=size)
    return lambda image, seed: augment_lib.center_crop(image, size=size)
  if spec.augmentation == "cifar" and training and augment:
    return augment_lib.pad_crop_flip
  return None


def _decode(encoded: tf.Tensor) -> tf.Tensor:
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


@dataclasses.dataclass(frozen=True)
class _Examples:
  """A split's examples before shuffling, augmentation and batching.

  Either `items`, arrays indexed by example (images or file names, and
  labels) that `read` turns into a uint8 image, or `stream`, a dataset of
  (encoded image, label) pairs read in order, shuffled in a `buffer`.
  """
  info: DatasetInfo
  items: Optional[Tuple[np.ndarray, np.ndarray]] = None
  read: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
  stream: Optional[tf.data.Dataset] = None
  buffer: int = 0


@dataclasses.dataclass(frozen=True)
class _Holdout:
  """What `build_dataset` holds out of the training split for validation."""
  fraction: float
  max_examples: Optional[int]
  seed: int

  def size(self, num_examples: int) -> int:
    return holdout.validation_size(num_examples, self.fraction,
                                   self.max_examples)


def _split_sizes(info: DatasetInfo, fitted: int, held_out: int
                 ) -> DatasetInfo:
  """`info` counting `fitted` train and `held_out` validation examples."""
  sizes = dict(info.num_examples, train=int(fitted))
  if held_out:
    sizes["validation"] = int(held_out)
  return dataclasses.replace(info, num_examples=sizes)


def _no_validation_error(split: str) -> ValueError:
  return ValueError(f"split={split!r} needs validation examples: a "
                    "validation_fraction > 0 (and max_validation_examples "
                    "None or > 0) large enough for this split's size.")


def _hold_out(items: Tuple[np.ndarray, np.ndarray], info: DatasetInfo,
              split: str, hold: _Holdout
              ) -> Tuple[Tuple[np.ndarray, np.ndarray], DatasetInfo]:
  """The items of `split` ("train" or "validation") out of the train items."""
  n = len(items[1])
  count = hold.size(n)
  if not count:
    if split == "validation":
      raise _no_validation_error(split)
    return items, info
  fitted, held_out = holdout.split_indices(n, count, hold.seed)
  chosen = held_out if split == "validation" else fitted
  items = tuple(np.asarray(a)[chosen] for a in items)
  return items, _split_sizes(info, len(fitted), count)


def _in_memory_examples(name: str, split: str, data_dir: Optional[str],
                        limit: Optional[int], cache_dir: Optional[str],
                        source: str, hold: _Holdout) -> _Examples:
  """The uint8 images and int64 labels of a small dataset, in memory."""
  official = "test" if split == "test" else "train"
  x, y, info = sources.load_arrays(name, official, data_dir=data_dir,
                                   limit=limit, cache_dir=cache_dir,
                                   source=source)
  if official == "train":
    (x, y), info = _hold_out((x, y), info, split, hold)
  return _Examples(info=info, items=(x, y))


def _read_file(path: tf.Tensor) -> tf.Tensor:
  return _decode(tf.io.read_file(path))


def _streamed_examples(spec: DatasetSpec, split: str, data_dir: Optional[str],
                       limit: Optional[int], source: str, training: bool,
                       seed: int, hold: _Holdout) -> _Examples:
  """The examples of a large dataset, read file by file.

  Shuffling happens before decoding, on file names (local tree) or encoded
  bytes (TFDS), so the shuffle buffer stays small.
  """
  official = "test" if split == "test" else "train"
  path = sources.resolve_local(spec, data_dir, source)
  info = spec.info
  if path is not None:
    paths, labels, class_names = image_folder.list_image_files(path, official)
    if len(class_names) != info.num_classes:
      raise ValueError(f"{path} has {len(class_names)} classes, "
                       f"{info.name} has {info.num_classes}.")
    items = (np.asarray(paths[:limit]), labels[:limit])
    info = sources.with_split_size(
        dataclasses.replace(info, class_names=class_names), official,
        len(items[1]))
    if official == "train":
      items, info = _hold_out(items, info, split, hold)
    return _Examples(info=info, items=items, read=_read_file)
  # TFDS: its examples were shuffled once when it prepared the data, so
  # slices of its order are fixed random subsets; the held-out examples are
  # the first ones, whatever the seed.
  size = info.num_examples[official]
  if limit is not None:
    size = min(limit, size)
  start, stop = None, limit
  if official == "train":
    count = hold.size(size)
    if split == "validation":
      if not count:
        raise _no_validation_error(split)
      stop = count
    else:
      start = count or None
    info = _split_sizes(info, size - count, count)
    size = count if split == "validation" else size - count
  else:
    info = sources.with_split_size(info, official, size)
  ds = tfds_source.load_tfds(spec, official, data_dir=data_dir,
                             shuffle_files=training, seed=seed,
                             skip_decoding=True, start=start, stop=stop)
  # Also `take`: TFDS's mock data (tests) ignores slices.
  return _Examples(info=info, stream=ds.take(size), read=_decode,
                   buffer=min(size, _STREAM_SHUFFLE_BUFFER))


def _one_pass(examples: _Examples, preprocess, training: bool, seed: int,
              batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
  """One epoch per iteration, reshuffled (and re-augmented) by each."""
  if examples.stream is None:
    ds = tf.data.Dataset.from_tensor_slices(examples.items)
    buffer = len(examples.items[1])
  else:
    ds, buffer = examples.stream, examples.buffer
  if training:
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  if examples.read is not None:
    read = examples.read
    ds = ds.map(lambda item, y: (read(item), y),
                num_parallel_calls=tf.data.AUTOTUNE)
  if preprocess is not None:
    # One [2] seed per example; a new sequence each epoch, fixed by `seed`.
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda example, s: (preprocess(example[0], s), example[1]),
        num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=drop_remainder)


def _keyed_epochs(examples: _Examples, preprocess, seed: int,
                  batch_size: int, drop_remainder: bool, epochs: int,
                  initial_epoch: int) -> tf.data.Dataset:
  """Epochs `initial_epoch`..`epochs - 1`, each a function of (seed, epoch).

  Every random choice is stateless: epoch e's order is a permutation keyed by
  (seed, e), and example i's augmentation in it is keyed by (seed, e, i). So
  a pipeline started at epoch k (a resumed run) yields what an uninterrupted
  one yields from its epoch k on.
  """
  images = tf.convert_to_tensor(examples.items[0])
  labels = tf.convert_to_tensor(examples.items[1])
  n = len(examples.items[1])
  read = examples.read
  run_key = tf.constant([seed, 0], tf.int64)

  def epoch(e):
    order_key, augment_key = tf.unstack(tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(run_key, e), 2))
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=order_key)

    def example(i):
      image = tf.gather(images, i)
      if read is not None:
        image = read(image)
      if preprocess is not None:
        image = preprocess(
            image, tf.random.experimental.stateless_fold_in(augment_key, i))
      return image, tf.gather(labels, i)

    return tf.data.Dataset.from_tensor_slices(order).map(
        example, num_parallel_calls=tf.data.AUTOTUNE).batch(
            batch_size, drop_remainder=drop_remainder)

  return tf.data.Dataset.range(initial_epoch, epochs).flat_map(epoch)


def _check_arguments(split, limit, batch_size, training, validation_fraction,
                     max_validation_examples, epochs, initial_epoch):
  """Refuses bad arguments before any data is read."""
  if split not in _SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid splits: "
                     f"{', '.join(_SPLITS)}.")
  sources.check_limit(limit)
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
  holdout.validation_size(0, validation_fraction, max_validation_examples)
  if epochs is not None:
    if not training:
      raise ValueError("epochs is for training pipelines (training=True).")
    if not (isinstance(epochs, (int, np.integer))
            and isinstance(initial_epoch, (int, np.integer))
            and 0 <= initial_epoch <= epochs):
      raise ValueError(f"Need ints 0 <= initial_epoch <= epochs, got "
                       f"{initial_epoch!r} and {epochs!r}.")


def _batched(examples: _Examples, preprocess, training: bool, seed: int,
             batch_size: int, drop_remainder: bool, epochs: Optional[int],
             initial_epoch: int) -> tf.data.Dataset:
  """One epoch, or the keyed epochs of a run (see the module docstring)."""
  if epochs is None:
    return _one_pass(examples, preprocess, training, seed, batch_size,
                     drop_remainder)
  if examples.stream is None:
    return _keyed_epochs(examples, preprocess, seed, batch_size,
                         drop_remainder, int(epochs), int(initial_epoch))
  return _one_pass(examples, preprocess, training, seed, batch_size,
                   drop_remainder).repeat(int(epochs) - int(initial_epoch))


def _normalized(ds: tf.data.Dataset, info: DatasetInfo) -> tf.data.Dataset:
  ds = ds.map(lambda images, y: (normalize(images, info), tf.cast(y, tf.int32)),
              num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  # In-memory and file-list datasets cannot be sharded by file.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def build_dataset(name: str, split: str, *, batch_size: int, training: bool,
                  data_dir: Optional[str] = None, limit: Optional[int] = None,
                  cache_dir: Optional[str] = None, seed: int = 0,
                  augment: bool = True, drop_remainder: Optional[bool] = None,
                  source: str = "auto", validation_fraction: float = 0.0,
                  max_validation_examples: Optional[int] = None,
                  epochs: Optional[int] = None, initial_epoch: int = 0
                  ) -> Tuple[tf.data.Dataset, DatasetInfo]:
  """Builds the input pipeline of one split of a registered dataset.

  Args:
    name: A name from `dataset_names()`.
    split: "train", "validation" (needs `validation_fraction`) or "test".
    batch_size: Examples per batch.
    training: Shuffle and augment (evaluation pipelines keep the fixed order).
    data_dir, cache_dir, source: Where the data comes from, as in
      `load_arrays`.
    limit: Use only the first `limit` examples of the official split.
    seed: Seed of the shuffle order, augmentation and validation examples.
    augment: Apply training augmentation (only when `training`).
    drop_remainder: Drop each epoch's last partial batch; default `training`.
    validation_fraction, max_validation_examples: The held-out share of the
      training examples, in [0, 1), and a bound on their number (None: none).
    epochs, initial_epoch: The epochs of a training run the dataset yields
      (module docstring); None: one epoch.

  Returns:
    `(dataset, info)`: (float32 [B, H, W, C] images normalised by
    `normalize`, int32 [B] labels) batches, and the `DatasetInfo` whose
    `num_examples` counts the examples of each split read per epoch.

  Raises:
    ValueError: For an unknown name, split, source, limit, batch size,
      validation size or epochs, or local data not matching the dataset.
    FileNotFoundError: If `source` is "local" and no files are found.
    DataUnavailableError: If TFDS is needed but cannot provide the data.

  Usage:

    ds, info = build_dataset("mnist", "train", batch_size=128, training=True,
                             data_dir="../shared/data/mnist")
  """
  spec = registry.get_spec(name)
  _check_arguments(split, limit, batch_size, training, validation_fraction,
                   max_validation_examples, epochs, initial_epoch)
  hold = _Holdout(validation_fraction, max_validation_examples, seed)
  if spec.streamed:
    examples = _streamed_examples(spec, split, data_dir, limit, source,
                                  training, seed, hold)
  else:
    examples = _in_memory_examples(name, split, data_dir, limit, cache_dir,
                                   source, hold)
  ds = _batched(examples, _preprocess(spec, training, augment), training,
                seed, batch_size,
                training if drop_remainder is None else drop_remainder,
                epochs, initial_epoch)
  return _normalized(ds, examples.info), examples.info
