"""Keeps TensorFlow's known C++ noise away from the user, and nothing else.

TensorFlow 2.14 prints cuDNN/cuFFT/cuBLAS factory registration errors,
TensorRT and oneDNN notices from C++ at import time, and the TFLite converter
prints MLIR progress, straight to file descriptor 2. They say nothing about
the user's program, so we capture that descriptor around those calls only and
replay every line that is not known noise: real errors still reach the user.
"""

import contextlib
import os
import sys
import tempfile

__all__ = ["filtered_stderr", "import_tensorflow_quietly"]

_IMPORT_NOISE = (
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "Could not find cuda drivers on your machine",
)


@contextlib.contextmanager
def filtered_stderr(noise):
  """Captures descriptor 2 in the block, then replays lines without `noise`.

  Args:
    noise: Substrings; a captured line containing one of them is dropped.
  """
  try:
    saved = os.dup(2)
  except OSError:  # No usable descriptor 2 (embedded interpreters).
    yield
    return
  with tempfile.TemporaryFile() as captured:
    sys.stderr.flush()
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode("utf-8", errors="replace")
      for line in text.splitlines():
        if line.strip() and not any(n in line for n in noise):
          sys.stderr.write(line + "\n")


def import_tensorflow_quietly():
  """Imports `tensorflow` once, filtering its known start-up messages."""
  if "tensorflow" in sys.modules:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  with filtered_stderr(_IMPORT_NOISE):
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
