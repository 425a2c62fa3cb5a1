"""Atomic file writes: a file is either its old self or complete and synced.

Every file the library and its tools write (compressed models, caches, Keras
models, JSON figures, plots, TFLite files) goes through `atomic_path`: the
writer fills a temporary file in the destination's directory, which is then
synced and renamed over the destination. A crash, a kill or an exception at
any point leaves the destination as it was (absent or the old file), and no
temporary file behind unless the process was killed (then a hidden
`.<name>.*.tmp` file may stay, never a half-written `<name>`).
"""

import contextlib
import os
import tempfile

__all__ = ["atomic_path", "atomic_write"]


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _fsync(path, directory=False):
  fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
  """Yields a temporary path that replaces `path` when the block succeeds.

  The temporary file is created (empty) in `path`'s directory, which must
  exist. After the block it is synced, given the permissions a new file gets
  (0666 less the umask), and renamed to `path`; the directory is then synced
  so that the rename survives a power cut. If the block raises, the temporary
  file is removed and `path` is untouched.

  Args:
    path: The destination file.
    suffix: Ending of the temporary name, for writers that choose the format
      by extension (e.g. `".keras"`, `".png"`).

  Yields:
    The temporary path, a string, for the block to write.
  """
  path = os.path.abspath(os.fspath(path))
  directory, name = os.path.split(path)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.",
                             suffix=f".tmp{suffix}")
  os.close(fd)
  try:
    yield tmp
    _fsync(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  with contextlib.suppress(OSError):  # Not every file system syncs folders.
    _fsync(directory, directory=True)


def atomic_write(path, data):
  """Writes `data` to `path` atomically (see `atomic_path`).

  Args:
    path: The destination file; its directory must exist.
    data: `bytes`, `str` (written as UTF-8) or an iterable of `bytes` chunks.
  """
  if isinstance(data, str):
    data = data.encode("utf-8")
  chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    for chunk in chunks:
      f.write(chunk)
