"""Finds where a registered dataset comes from and loads small ones into memory.

Sources, chosen by `source`:
  * "local": files under `data_dir` (MNIST-style IDX files, or an image tree
    or archive of one; see `DatasetSpec.local_layout`).
  * "tfds": TensorFlow Datasets, with `data_dir` as its data directory.
  * "auto": local files when `data_dir` holds them, else TFDS.
`digits` is embedded in scikit-learn and ignores both.
"""

import dataclasses
import os
from typing import Optional, Tuple

import numpy as np

from lilnetx_tf.data import idx
from lilnetx_tf.data import image_folder
from lilnetx_tf.data import registry
from lilnetx_tf.data import tfds_source
from lilnetx_tf.data.registry import DatasetInfo, DatasetSpec

__all__ = ["check_limit", "find_local", "load_arrays", "resolve_local",
           "with_split_size"]

def check_limit(limit: Optional[int]) -> None:
  """Raises ValueError unless `limit` is None or a positive int."""
  if limit is not None and (isinstance(limit, bool)
                            or not isinstance(limit, (int, np.integer))
                            or limit < 1):
    raise ValueError(f"limit must be None or a positive int, got {limit!r}.")


def with_split_size(info: DatasetInfo, split: str, size: int) -> DatasetInfo:
  """Returns `info` whose `num_examples[split]` is `size`."""
  return dataclasses.replace(info, num_examples={**info.num_examples,
                                                 split: int(size)})


def _named_archive(directory: str, name: str, any_name: bool) -> Optional[str]:
  """The archive in `directory` named after `name` (any one if `any_name`)."""
  if not os.path.isdir(directory):
    return None
  found = []
  for entry in sorted(os.listdir(directory)):
    path = os.path.join(directory, entry)
    stem = entry.lower()
    for suffix in image_folder.ARCHIVE_SUFFIXES:
      stem = stem[:-len(suffix)] if stem.endswith(suffix) else stem
    # "cifar10-jpeg.tar.gz" is cifar10's; "cifar100.tar.gz" is not.
    if image_folder.is_archive(path) and (
        any_name or stem == name or stem.startswith((name + "-", name + "_"))):
      found.append(path)
  if len(found) > 1:
    raise ValueError(f"Several archives for {name!r} in {directory}: "
                     f"{', '.join(found)}; pass the one to use as data_dir.")
  return found[0] if found else None


def find_local(spec: DatasetSpec, data_dir: Optional[str]) -> Optional[str]:
  """Returns the local files of `spec` under `data_dir`, or None.

  Looks at `data_dir` itself, then at `data_dir/<name>`.

  Args:
    spec: The dataset.
    data_dir: A directory or archive, or None.

  Returns:
    An IDX directory, an image tree root or an archive path; None if none.
  """
  if data_dir is None or spec.local_format == "embedded":
    return None
  data_dir = os.path.expanduser(os.fspath(data_dir))
  name = spec.info.name
  for candidate in (data_dir, os.path.join(data_dir, name)):
    if spec.local_format == "idx":
      if idx.has_idx_files(candidate):
        return candidate
      continue
    if image_folder.is_archive(candidate):
      return candidate
    if any(os.path.isdir(os.path.join(candidate, d))
           for dirs in image_folder.SPLIT_DIRS.values() for d in dirs):
      return candidate
    if not spec.streamed:
      archive = _named_archive(candidate, name, any_name=candidate != data_dir)
      if archive:
        return archive
  return None


def resolve_local(spec: DatasetSpec, data_dir: Optional[str],
                  source: str) -> Optional[str]:
  """Applies the `source` policy: local path to read, or None for TFDS.

  Raises:
    ValueError: If `source` is unknown, or "local" without `data_dir`.
    FileNotFoundError: If `source` is "local" and no files are found.
  """
  registry.check_source(source)
  if source == "tfds":
    return None
  path = find_local(spec, data_dir)
  if path is None and source == "local":
    if data_dir is None:
      raise ValueError(f"source='local' needs data_dir: {spec.local_layout}.")
    raise FileNotFoundError(f"No local files for {spec.info.name!r} in "
                            f"{data_dir!r}; expected {spec.local_layout}.")
  return path


def _load_digits(split: str, num_train: int) -> Tuple[np.ndarray, np.ndarray]:
  """Splits scikit-learn's digits (no official split): first `num_train`."""
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  digits = sklearn.datasets.load_digits()
  # Pixels are integers 0..16; 16 maps exactly to 255.
  x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = digits.target.astype(np.int64)
  part = slice(None, num_train) if split == "train" else slice(num_train, None)
  return x[part], y[part]


def load_arrays(name: str, split: str, *, data_dir: Optional[str] = None,
                limit: Optional[int] = None, cache_dir: Optional[str] = None,
                source: str = "auto"
                ) -> Tuple[np.ndarray, np.ndarray, DatasetInfo]:
  """Loads one split of a small dataset into memory.

  Args:
    name: "digits", "mnist", "fashion_mnist", "cifar10" or "cifar100".
    split: "train" or "test".
    data_dir: Local files (see `DatasetSpec.local_layout`) or TFDS directory.
    limit: Keep only the first `limit` examples (a fixed subset; for image
      trees it is class-balanced, see `image_folder`).
    cache_dir: Where decoded image trees are cached (default: next to the
      data when writable, else ~/.cache/lilnetx_tf).
    source: "auto", "local" or "tfds".

  Returns:
    `(x, y, info)`: uint8 [N, H, W, C] images, int64 [N] labels, and the
    `DatasetInfo` whose `num_examples[split]` is N.

  Raises:
    ValueError: For an unknown name, split, source or limit, for ImageNet
      (use `build_dataset`), or for local data of the wrong shape or classes.
    FileNotFoundError: If `source` is "local" and no files are found.
    DataUnavailableError: If TFDS is needed but cannot provide the data.
  """
  spec = registry.get_spec(name)
  registry.check_split(split)
  check_limit(limit)
  info = spec.info
  if spec.streamed:
    raise ValueError(f"{name!r} is too large to load into memory; use "
                     "build_dataset, which streams it from files.")
  if spec.local_format == "embedded":
    x, y = _load_digits(split, info.num_examples["train"])
  else:
    path = resolve_local(spec, data_dir, source)
    if path is None:
      x, y = tfds_source.load_tfds_arrays(spec, split, data_dir)
    elif spec.local_format == "idx":
      x, y = idx.load_idx_split(path, split)
    else:
      x, y, class_names = image_folder.load_image_folder(
          path, split, channels=info.input_shape[-1], cache_dir=cache_dir)
      if len(class_names) != info.num_classes:
        raise ValueError(f"{path} has {len(class_names)} classes "
                         f"{list(class_names)[:12]}, {name} has "
                         f"{info.num_classes}.")
      info = dataclasses.replace(info, class_names=class_names)
    where = path or "TFDS"
    if x.shape[1:] != info.input_shape:
      raise ValueError(f"{where}: {name} images must be {info.input_shape}, "
                       f"got {x.shape[1:]}.")
    if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
      raise ValueError(f"{where}: labels must lie in [0, {info.num_classes}), "
                       f"got [{y.min()}, {y.max()}].")
  if limit is not None and limit < len(x):
    # Copies, so the full split is not kept alive by a view.
    x, y = x[:limit].copy(), y[:limit].copy()
  return x, y, with_split_size(info, split, len(x))
