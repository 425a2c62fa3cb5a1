"""An on-disk .npz cache of decoded arrays, tied to the source it came from.

Decoding tens of thousands of small images takes many seconds; reading them
back from an uncompressed .npz takes a fraction of one. Each cache file stores
a fingerprint of its source (path, size and modification time), so a changed
source is decoded again rather than served stale. Files are written to a
temporary name and renamed into place, so an interrupted run never leaves a
partial cache behind, and an unreadable cache is treated as missing.
"""

import hashlib
import logging
import os
import stat
import zipfile
from typing import Dict, Iterable, Optional

import numpy as np

from lilnetx_tf.atomic import atomic_path

__all__ = ["cache_file", "default_cache_dir", "fingerprint", "read_cache",
           "write_cache"]

_LOG = logging.getLogger(__name__)

# Bump when the layout of cached arrays changes, to invalidate old caches.
_FORMAT = "lilnetx_tf-npz-1"
_FINGERPRINT_KEY = "__fingerprint__"


def fingerprint(paths: Iterable[str]) -> str:
  """Summarises files by path, size and modification time.

  Args:
    paths: The files the cached arrays were derived from.

  Returns:
    A hex digest that changes when any file is added, removed or modified.
  """
  digest = hashlib.sha256(_FORMAT.encode())
  for path in sorted(os.path.abspath(p) for p in paths):
    stat = os.stat(path)
    digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


def _writable(directory: str) -> bool:
  """True if `directory` exists writable or could be created.

  A directory with no write permission bit counts as read-only even for root,
  whom `os.access` always allows: it marks data not to be written into.
  """
  while not os.path.exists(directory):
    parent = os.path.dirname(directory)
    if parent == directory:
      return False
    directory = parent
  write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
  return (os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)
          and bool(os.stat(directory).st_mode & write_bits))


def default_cache_dir(source: str) -> str:
  """Picks where to cache arrays decoded from `source`.

  Args:
    source: A file or directory holding the raw data.

  Returns:
    `.cache` next to the source (inside it for a directory) when that is
    writable, else `$XDG_CACHE_HOME/lilnetx_tf` (default `~/.cache`).
  """
  source = os.path.abspath(source)
  parent = source if os.path.isdir(source) else os.path.dirname(source)
  local = os.path.join(parent, ".cache")
  if _writable(local):
    return local
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lilnetx_tf")


def cache_file(source: str, cache_dir: Optional[str] = None) -> str:
  """Returns the cache path for `source`: readable name plus a path hash."""
  source = os.path.abspath(source)
  stem = os.path.basename(source.rstrip(os.sep)).split(".")[0] or "data"
  tag = hashlib.sha1(source.encode()).hexdigest()[:12]
  directory = cache_dir if cache_dir is not None else default_cache_dir(source)
  return os.path.join(os.path.expanduser(directory), f"{stem}-{tag}.npz")


def read_cache(path: str, expected_fingerprint: str,
               keys: Optional[Iterable[str]] = None
               ) -> Optional[Dict[str, np.ndarray]]:
  """Reads a cache written by `write_cache`.

  Args:
    path: The .npz file.
    expected_fingerprint: `fingerprint()` of the current source.
    keys: The arrays to read (those stored, of these); default all.

  Returns:
    The arrays, or None when the file is missing, unreadable or was made from
    a different source (the caller then rebuilds it).
  """
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      stored = (str(npz[_FINGERPRINT_KEY])
                if _FINGERPRINT_KEY in npz.files else None)
      if stored != expected_fingerprint:
        _LOG.info("Cache %s is for another version of its source; "
                  "rebuilding.", path)
        return None
      wanted = npz.files if keys is None else keys
      # Reading a member checks its CRC, catching corruption now.
      return {key: npz[key] for key in wanted
              if key in npz.files and key != _FINGERPRINT_KEY}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    _LOG.warning("Ignoring unreadable cache %s (%s); rebuilding it.", path, e)
    return None


def write_cache(path: str, arrays: Dict[str, np.ndarray],
                source_fingerprint: str) -> bool:
  """Writes `arrays` to `path` atomically.

  Args:
    path: Destination .npz file; its directory is created if needed.
    arrays: Named arrays (no object arrays).
    source_fingerprint: `fingerprint()` of the source, stored alongside.

  Returns:
    True on success. A failure (read-only or full disk) is logged and returns
    False: the caller already holds the arrays, only the speed-up is lost.
  """
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
      np.savez(f, **arrays, **{_FINGERPRINT_KEY: np.array(source_fingerprint)})
    return True
  except OSError as e:
    _LOG.warning("Could not write cache %s (%s); continuing without it.",
                 path, e)
    return False
