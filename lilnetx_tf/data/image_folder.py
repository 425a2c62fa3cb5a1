"""Image classification data stored as a folder tree or an archive of one.

The layout is `train/<class>/<image>` and `test/<class>/<image>` (`val/` or
`validation/` also name the test split), either as a directory or inside a
.tar/.tar.gz archive, possibly below a common top folder. Classes are the
sorted folder names of the train split and labels their indices.

Examples are ordered round-robin over classes (the first file of every class,
then the second, ...), files within a class sorted by name. The order is fixed,
and taking the first N examples gives a class-balanced subset.

Small images are decoded once into arrays and cached (see `cache`); large
datasets are listed by `list_image_files` and decoded on the fly by tf.data.
"""

import io
import logging
import os
import tarfile
import time
import zlib
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import PIL.Image
import tqdm

from lilnetx_tf.data import cache

__all__ = ["ARCHIVE_SUFFIXES", "IMAGE_EXTENSIONS", "SPLIT_DIRS", "is_archive",
           "list_image_files", "load_image_folder"]

_LOG = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Folder names accepted for each split, in order of preference.
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "validation")}
_SPLIT_OF_DIR = {d: s for s, dirs in SPLIT_DIRS.items() for d in dirs}

# (split, class name, file name, where) of an image; `where` names it in errors.
_Entry = Tuple[str, str, str, str]


def is_archive(path: str) -> bool:
  """True if `path` is a file with an archive suffix."""
  return os.path.isfile(path) and path.lower().endswith(ARCHIVE_SUFFIXES)


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _decode_image(data: bytes, channels: int, where: str) -> np.ndarray:
  """Decodes PNG/JPEG/... bytes to uint8 [H, W, channels]."""
  try:
    with PIL.Image.open(io.BytesIO(data)) as image:
      mode = "L" if channels == 1 else "RGB"
      array = np.asarray(image if image.mode == mode else image.convert(mode))
  except (OSError, ValueError, PIL.Image.DecompressionBombError) as e:
    raise ValueError(f"Cannot decode image {where}: {e}") from e
  return array.reshape(array.shape[:2] + (channels,))


def _tree_files(root: str) -> List[Tuple[_Entry, str]]:
  """Lists the images of a directory tree as (entry, path) pairs."""
  files = []
  for split, dirs in SPLIT_DIRS.items():
    split_dir = next((os.path.join(root, d) for d in dirs
                      if os.path.isdir(os.path.join(root, d))), None)
    if split_dir is None:
      continue
    for class_name in sorted(os.listdir(split_dir)):
      class_dir = os.path.join(split_dir, class_name)
      if class_name.startswith(".") or not os.path.isdir(class_dir):
        continue
      for name in sorted(os.listdir(class_dir)):
        if _is_image(name):
          path = os.path.join(class_dir, name)
          files.append(((split, class_name, name, path), path))
  return files


def _archive_images(path: str) -> Iterator[Tuple[_Entry, bytes]]:
  """Streams (entry, bytes) of the images in a tar archive, in archive order."""
  split_dirs = {}
  try:
    # Stream mode reads the compressed archive once, front to back.
    with tarfile.open(path, "r|*") as archive:
      for member in archive:
        parts = member.name.replace("\\", "/").strip("/").split("/")
        if (not member.isfile() or len(parts) < 3 or not _is_image(parts[-1])
            or parts[-3] not in _SPLIT_OF_DIR or parts[-2].startswith(".")):
          continue
        split = _SPLIT_OF_DIR[parts[-3]]
        top = "/".join(parts[:-2])
        if split_dirs.setdefault(split, top) != top:
          raise ValueError(f"{path}: both {split_dirs[split]}/ and {top}/ hold "
                           f"{split} images; keep one.")
        data = archive.extractfile(member).read()
        yield (split, parts[-2], parts[-1], f"{path}:{member.name}"), data
  except (tarfile.TarError, EOFError, zlib.error) as e:
    raise ValueError(f"{path}: unreadable or truncated archive ({e}).") from e


def _class_names(entries: Sequence[_Entry], source: str) -> Tuple[str, ...]:
  """Sorted train class folders; other splits may only use those classes."""
  by_split = {}
  for split, class_name, _, _ in entries:
    by_split.setdefault(split, set()).add(class_name)
  if not by_split:
    raise ValueError(f"{source}: no images found; expected train/<class>/* and "
                     f"test/<class>/* with extensions {IMAGE_EXTENSIONS}.")
  names = by_split.get("train") or set().union(*by_split.values())
  for split, classes in by_split.items():
    unknown = sorted(classes - names)
    if unknown:
      raise ValueError(f"{source}: {split} classes {unknown} have no train "
                       f"folder; train classes: {sorted(names)}.")
  return tuple(sorted(names))


def _round_robin(entries: Sequence[_Entry], class_names: Sequence[str]
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """Returns (order, labels) that interleave classes, files sorted in class."""
  index = {name: i for i, name in enumerate(class_names)}
  labels = np.array([index[e[1]] for e in entries], np.int64)
  by_file = sorted(range(len(entries)),
                   key=lambda i: (labels[i], entries[i][2]))
  rank = np.empty(len(entries), np.int64)
  seen = {}
  for i in by_file:
    rank[i] = seen.get(labels[i], 0)
    seen[labels[i]] = rank[i] + 1
  order = np.lexsort((labels, rank))
  return order, labels[order]


def _decode_all(images: Iterable[Tuple[_Entry, bytes]], total: Optional[int],
                source: str, channels: int
                ) -> Dict[str, np.ndarray]:
  """Decodes (entry, bytes) pairs into the arrays stored in the cache."""
  _LOG.info("Decoding images of %s (done once, then cached).", source)
  start = time.time()
  entries, pixels = [], []
  progress = tqdm.tqdm(images, total=total, unit=" images", disable=None,
                       desc=f"Decoding {os.path.basename(source)}")
  for entry, data in progress:
    entries.append(entry)
    pixels.append(_decode_image(data, channels, entry[3]))
  class_names = _class_names(entries, source)
  arrays = {"class_names": np.array(class_names)}
  for split in SPLIT_DIRS:
    rows = [i for i, e in enumerate(entries) if e[0] == split]
    if not rows:
      continue
    order, labels = _round_robin([entries[i] for i in rows], class_names)
    rows = [rows[i] for i in order]
    shape = pixels[rows[0]].shape
    for i in rows:
      if pixels[i].shape != shape:
        raise ValueError(f"Image {entries[i][3]} has shape {pixels[i].shape}, "
                         f"{entries[rows[0]][3]} has {shape}; all images of a "
                         "cached dataset must have one size.")
    arrays[f"{split}_x"] = np.stack([pixels[i] for i in rows])
    arrays[f"{split}_y"] = labels
  _LOG.info("Decoded %d images of %s in %.1f s.", len(pixels), source,
            time.time() - start)
  return arrays


def load_image_folder(source: str, split: str, *, channels: int = 3,
                      cache_dir: Optional[str] = None
                      ) -> Tuple[np.ndarray, np.ndarray, Tuple[str, ...]]:
  """Loads one split of an image tree or archive, decoding at most once.

  All splits are decoded together on first use (an archive is read in one
  pass) and cached; later calls read the cache.

  Args:
    source: A directory with `train/` and/or `test/` class folders, or a
      .tar/.tar.gz/.tgz archive of such a tree.
    split: "train" or "test".
    channels: 1 (greyscale) or 3 (RGB); images are converted to it.
    cache_dir: Where to keep the decoded arrays; default
      `cache.default_cache_dir(source)`.

  Returns:
    `(images, labels, class_names)`: uint8 [N, H, W, channels], int64 [N] in
    round-robin class order, and the sorted class folder names.

  Raises:
    FileNotFoundError: If `source` does not exist.
    ValueError: If the split is missing, an image cannot be decoded, sizes
      differ, or the archive is damaged.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
  if not os.path.exists(source):
    raise FileNotFoundError(f"Image folder or archive {source} not found.")
  if is_archive(source):
    files, total = [source], None
    images = _archive_images(source)  # Generators: nothing is read yet.
  else:
    listed = _tree_files(source)
    files, total = [path for _, path in listed], len(listed)
    images = ((entry, _read(path)) for entry, path in listed)
  path = cache.cache_file(source, cache_dir)
  stamp = f"{cache.fingerprint(files)}-channels{channels}"
  keys = ("class_names", f"{split}_x", f"{split}_y")
  arrays = cache.read_cache(path, stamp, keys)
  if arrays is None:
    arrays = _decode_all(images, total, source, channels)
    cache.write_cache(path, arrays, stamp)
  if f"{split}_x" not in arrays:
    raise ValueError(f"{source} has no {split!r} images; expected "
                     f"{'/ or '.join(SPLIT_DIRS[split])}/<class>/*.")
  class_names = tuple(str(c) for c in arrays["class_names"])
  return arrays[f"{split}_x"], arrays[f"{split}_y"], class_names


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def list_image_files(root: str, split: str
                     ) -> Tuple[List[str], np.ndarray, Tuple[str, ...]]:
  """Lists the image files of one split of a directory tree, for streaming.

  Args:
    root: A directory with `train/<class>/*` and `test/<class>/*` (or `val/`).
    split: "train" or "test".

  Returns:
    `(paths, labels, class_names)` in round-robin class order; labels int64.

  Raises:
    ValueError: If `root` is an archive (too slow to stream: extract it) or
      holds no images of `split`.
  """
  if is_archive(root):
    raise ValueError(f"{root} is an archive; extract it and pass the "
                     "directory, large datasets are read file by file.")
  listed = [e for e, _ in _tree_files(root)]
  class_names = _class_names(listed, root)
  entries = [e for e in listed if e[0] == split]
  if not entries:
    raise ValueError(f"{root} has no {split!r} images; expected "
                     f"{'/ or '.join(SPLIT_DIRS[split])}/<class>/*.")
  order, labels = _round_robin(entries, class_names)
  return [entries[i][3] for i in order], labels, class_names
