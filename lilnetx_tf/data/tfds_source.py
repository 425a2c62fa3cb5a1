"""TensorFlow Datasets as a source, failing fast and clearly when offline.

TFDS downloads and prepares a dataset on first use. Without network access its
downloader retries for minutes and then fails with a bare connection error
that does not say what to do. So when the dataset is not yet prepared under
`data_dir` we first probe the download host (a fraction of a second offline)
and fail at once with `DataUnavailableError`, which names the local files the
user can pass instead; any other TFDS failure is wrapped the same way.
ImageNet needs no probe: TFDS prepares it from manually downloaded archives.
"""

import socket
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from lilnetx_tf.data.registry import DatasetSpec

__all__ = ["DataUnavailableError", "load_tfds", "load_tfds_arrays",
           "network_reachable"]

_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
# Examples per step when reading a whole split into memory.
_ARRAY_BATCH = 4096


class DataUnavailableError(RuntimeError):
  """TFDS cannot provide a dataset: offline, manual files missing, ..."""


def network_reachable(timeout: float = 3.0) -> bool:
  """True if the TFDS download host accepts a TCP connection."""
  try:
    with socket.create_connection(_DOWNLOAD_HOST, timeout=timeout):
      return True
  except OSError:  # Includes name resolution failures and timeouts.
    return False


def _unavailable(spec: DatasetSpec, split: str, data_dir: Optional[str],
                 reason: str) -> DataUnavailableError:
  return DataUnavailableError(
      f"TensorFlow Datasets cannot load {spec.info.name!r} split {split!r} "
      f"(data_dir={data_dir!r}): {reason}. Without network access, pass "
      f"data_dir= pointing at local files: {spec.local_layout}.")


def load_tfds(spec: DatasetSpec, split: str, *, data_dir: Optional[str] = None,
              shuffle_files: bool = False, seed: Optional[int] = None,
              skip_decoding: bool = False, start: Optional[int] = None,
              stop: Optional[int] = None) -> tf.data.Dataset:
  """Loads one split through `tfds.load` as (image uint8, label int64) pairs.

  Args:
    spec: The dataset, from `registry.get_spec`.
    split: "train" or "test" (mapped to the TFDS split name).
    data_dir: TFDS data directory; for ImageNet also the manual directory
      holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar.
    shuffle_files: Read the TFDS shards in a shuffled order.
    seed: Seed of that file order.
    skip_decoding: Yield the encoded image bytes instead, so that a shuffle
      buffer holds small strings and decoding runs after it.
    start: Read the split from this example on (TFDS order, which TFDS
      shuffled once when preparing the data), or from the first if None.
    stop: Read it up to this example (excluded), or to the end if None. A
      slice is a fixed set of examples whatever `shuffle_files`.

  Returns:
    The `tf.data.Dataset`.

  Raises:
    DataUnavailableError: If the dataset is not prepared and cannot be
      downloaded or prepared, e.g. without network access.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if spec.tfds_name is None:
    raise ValueError(f"{spec.info.name!r} has no TensorFlow Datasets source.")
  kwargs = {}
  if skip_decoding:
    kwargs["decoders"] = {"image": tfds.decode.SkipDecoding()}
  if spec.augmentation == "imagenet":
    kwargs["download_and_prepare_kwargs"] = {
        "download_config": tfds.download.DownloadConfig(manual_dir=data_dir)}
  else:
    try:
      prepared = tfds.builder(spec.tfds_name, data_dir=data_dir).is_prepared()
    except Exception as e:  # pylint: disable=broad-except
      reason = f"{type(e).__name__}: {e}"
      raise _unavailable(spec, split, data_dir, reason) from e
    if not prepared and not network_reachable():
      raise _unavailable(spec, split, data_dir,
                         f"it is not prepared there and {_DOWNLOAD_HOST[0]} "
                         "is unreachable")
  tfds_split = spec.tfds_splits[split]
  if start is not None or stop is not None:
    bounds = ("" if b is None else str(b) for b in (start, stop))
    tfds_split += "[{}:{}]".format(*bounds)
  try:
    return tfds.load(
        spec.tfds_name, split=tfds_split, data_dir=data_dir,
        as_supervised=True, shuffle_files=shuffle_files,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
        **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS raises anything from ConnectionError to AssertionError here.
    reason = f"{type(e).__name__}: {e}"
    raise _unavailable(spec, split, data_dir, reason) from e


def load_tfds_arrays(spec: DatasetSpec, split: str,
                     data_dir: Optional[str] = None
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """Loads a whole small split through TFDS into memory.

  Returns:
    `(images, labels)`: uint8 [N, H, W, C] and int64 [N] in TFDS order.

  Raises:
    DataUnavailableError: As `load_tfds`.
  """
  batches = list(load_tfds(spec, split, data_dir=data_dir).batch(
      _ARRAY_BATCH).as_numpy_iterator())
  if not batches:
    raise _unavailable(spec, split, data_dir, "the split is empty")
  return (np.concatenate([x for x, _ in batches]).astype(np.uint8),
          np.concatenate([y for _, y in batches]).astype(np.int64))
