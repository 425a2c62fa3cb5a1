"""Reader for IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values in C
order. Files may be gzip-compressed. The reader checks the header against the
file's length, so a truncated or corrupted download fails loudly with the file
name instead of producing silently wrong arrays.
"""

import gzip
import os
import struct
import zlib
from typing import Optional, Tuple

import numpy as np

__all__ = ["IDX_FILES", "find_idx_file", "has_idx_files", "load_idx_split",
           "read_idx"]

# Base names (without ".gz") of the images and labels file of each split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str) -> bytes:
  """Returns the file's bytes, gunzipped when it is gzip-compressed."""
  with open(path, "rb") as f:
    data = f.read()
  if data[:2] != b"\x1f\x8b":  # gzip magic; IDX files start with two zeros.
    return data
  try:
    return gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f"{path}: corrupted or truncated gzip data ({e}).") from e


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file, plain or gzip-compressed.

  Args:
    path: The file.

  Returns:
    The array with the file's shape, in native byte order.

  Raises:
    ValueError: If the header is invalid or the data size does not match it.
  """
  data = _read_bytes(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path}: not an IDX file (bad magic number "
                     f"{data[:4].hex() or 'empty'}).")
  code, ndim = data[2], data[3]
  if code not in _DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; valid "
                     f"codes: {', '.join(f'0x{c:02x}' for c in _DTYPES)}.")
  header = 4 + 4 * ndim
  if ndim == 0 or len(data) < header:
    raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions, "
                     f"{len(data)} bytes).")
  shape = struct.unpack(f">{ndim}I", data[4:header])
  dtype = _DTYPES[code]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) - header != expected:
    raise ValueError(
        f"{path}: truncated or corrupted IDX file: header shape {shape} needs "
        f"{expected} bytes of data, the file holds {len(data) - header}.")
  array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
  # A native-order copy: writable, and frees the decompressed buffer.
  return array.astype(dtype.newbyteorder("="))


def find_idx_file(directory: str, base: str) -> Optional[str]:
  """Returns `directory/base` or `directory/base.gz`, whichever exists."""
  for candidate in (base, base + ".gz"):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def has_idx_files(directory: str) -> bool:
  """True if `directory` holds any of the `IDX_FILES`.

  Any one suffices: a directory that is meant to be an IDX source should fail
  on its missing file, not be passed over for another source.
  """
  return os.path.isdir(directory) and any(
      find_idx_file(directory, base)
      for files in IDX_FILES.values() for base in files)


def load_idx_split(directory: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
  """Loads one split of an MNIST-style directory.

  Args:
    directory: Holds the `IDX_FILES` of `split`, plain or ".gz".
    split: "train" or "test".

  Returns:
    `(images, labels)`: uint8 [N, H, W, 1] and int64 [N].

  Raises:
    FileNotFoundError: If a file of the split is missing.
    ValueError: If a file is invalid or images and labels disagree.
  """
  paths = []
  for base in IDX_FILES[split]:
    path = find_idx_file(directory, base)
    if path is None:
      names = ", ".join(b for files in IDX_FILES.values() for b in files)
      raise FileNotFoundError(
          f"{os.path.join(directory, base)}(.gz) not found; an MNIST-style "
          f"directory holds {names} (each optionally .gz).")
    paths.append(path)
  images, labels = (read_idx(p) for p in paths)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(f"{paths[0]}: expected uint8 images [N, H, W], got "
                     f"{images.dtype} {images.shape}.")
  if labels.ndim != 1:
    raise ValueError(f"{paths[1]}: expected labels [N], got {labels.shape}.")
  if len(images) != len(labels):
    raise ValueError(f"{paths[0]} holds {len(images)} images but {paths[1]} "
                     f"holds {len(labels)} labels.")
  return images[..., np.newaxis], labels.astype(np.int64)
