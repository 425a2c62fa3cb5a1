"""tf.data input pipelines: shuffle, augment, normalise, batch, prefetch.

`build_dataset` yields float32 images normalised per channel and int32
labels. `normalize` is the exact same normalisation for numpy or tf inputs, so
that other code (TFLite checks, representative datasets) can feed a model
precisely what it was trained on. The pipelines are plain tf.data and work on
CPU and inside tf.distribute strategies.
"""

import dataclasses
from typing import Callable, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from lilnetx_tf.data import augment as augment_lib
from lilnetx_tf.data import image_folder
from lilnetx_tf.data import registry
from lilnetx_tf.data import sources
from lilnetx_tf.data import tfds_source
from lilnetx_tf.data.registry import DatasetInfo, DatasetSpec

__all__ = ["build_dataset", "normalize"]

# Shuffle buffer of encoded images streamed from TFDS (about 1 GB of ImageNet
# JPEG bytes); TFDS also shuffles its shard order.
_STREAM_SHUFFLE_BUFFER = 10_000

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


def _in_memory_examples(name: str, split: str, data_dir: Optional[str],
                        limit: Optional[int], cache_dir: Optional[str],
                        source: str, training: bool, seed: int
                        ) -> Tuple[tf.data.Dataset, DatasetInfo]:
  """(uint8 image, int64 label) of a small dataset, shuffled if training."""
  x, y, info = sources.load_arrays(name, split, data_dir=data_dir, limit=limit,
                                   cache_dir=cache_dir, source=source)
  ds = tf.data.Dataset.from_tensor_slices((x, y))
  if training:
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
  return ds, info


def _streamed_examples(spec: DatasetSpec, split: str, data_dir: Optional[str],
                       limit: Optional[int], source: str, training: bool,
                       seed: int) -> Tuple[tf.data.Dataset, DatasetInfo]:
  """(uint8 image, int64 label) of a large dataset, read file by file.

  Shuffling happens before decoding, on file names (local tree) or encoded
  bytes (TFDS), so the shuffle buffer stays small.
  """
  path = sources.resolve_local(spec, data_dir, source)
  info = spec.info
  if path is None:
    ds = tfds_source.load_tfds(spec, split, data_dir=data_dir,
                               shuffle_files=training, seed=seed,
                               skip_decoding=True)
    size = info.num_examples[split]
    if limit is not None:
      ds, size = ds.take(limit), min(limit, size)
    read, buffer = _decode, min(size, _STREAM_SHUFFLE_BUFFER)
  else:
    paths, labels, class_names = image_folder.list_image_files(path, split)
    if len(class_names) != info.num_classes:
      raise ValueError(f"{path} has {len(class_names)} classes, "
                       f"{info.name} has {info.num_classes}.")
    paths, labels = paths[:limit], labels[:limit]
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    read, size = (lambda file: _decode(tf.io.read_file(file))), len(paths)
    buffer = size
    info = dataclasses.replace(info, class_names=class_names)
  if training:
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.map(lambda item, y: (read(item), y),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds, sources.with_split_size(info, split, size)


def build_dataset(name: str, split: str, *, batch_size: int, training: bool,
                  data_dir: Optional[str] = None, limit: Optional[int] = None,
                  cache_dir: Optional[str] = None, seed: int = 0,
                  augment: bool = True, drop_remainder: Optional[bool] = None,
                  source: str = "auto"
                  ) -> Tuple[tf.data.Dataset, DatasetInfo]:
  """Builds the input pipeline of one split of a registered dataset.

  Training pipelines reshuffle every epoch and (with `augment`) apply the
  dataset's standard augmentation: CIFAR 4-pixel pad, random 32x32 crop and
  horizontal flip; ImageNet random resized crop to 224 and flip. MNIST and
  digits get none. ImageNet evaluation (or `augment=False`) uses the resize
  256 / centre crop 224 view. Everything random derives from `seed`.

  Args:
    name: A name from `dataset_names()`.
    split: "train" or "test".
    batch_size: Examples per batch.
    training: Shuffle and augment (evaluation pipelines keep the fixed order).
    data_dir: Local files or TFDS directory, as in `load_arrays`.
    limit: Use only the first `limit` examples of the split.
    cache_dir: Where decoded image trees are cached, as in `load_arrays`.
    seed: Seed of the shuffle order and augmentation.
    augment: Apply training augmentation (only when `training`).
    drop_remainder: Drop the last partial batch; default: `training`.
    source: "auto", "local" or "tfds", as in `load_arrays`.

  Returns:
    `(dataset, info)`: a dataset of (float32 [B, H, W, C] images normalised
    by `normalize`, int32 [B] labels), and the `DatasetInfo` whose
    `num_examples[split]` counts the examples the pipeline reads per epoch.

  Raises:
    ValueError: For an unknown name, split, source, limit or batch size, or
      local data not matching the dataset.
    FileNotFoundError: If `source` is "local" and no files are found.
    DataUnavailableError: If TFDS is needed but cannot provide the data.
  """
  spec = registry.get_spec(name)
  registry.check_split(split)
  sources.check_limit(limit)
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
  if drop_remainder is None:
    drop_remainder = training
  if spec.streamed:
    ds, info = _streamed_examples(spec, split, data_dir, limit, source,
                                  training, seed)
  else:
    ds, info = _in_memory_examples(name, split, data_dir, limit, cache_dir,
                                   source, training, seed)
  preprocess = _preprocess(spec, training, augment)
  if preprocess is not None:
    # One [2] seed per example; a new sequence each epoch, fixed by `seed`.
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda example, s: (preprocess(example[0], s), example[1]),
        num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(lambda images, y: (normalize(images, info), tf.cast(y, tf.int32)),
              num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  # In-memory and file-list datasets cannot be sharded by file.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE), info
