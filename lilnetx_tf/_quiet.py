"""Imports TensorFlow without its start-up noise.

TensorFlow 2.14 prints cuDNN/cuFFT/cuBLAS factory registration errors, TensorRT
and oneDNN notices from C++ at import time, straight to file descriptor 2. They
say nothing about the user's program, so we capture that descriptor during the
import only and replay every line that is not known start-up noise: real import
errors still reach the user, and nothing is hidden after the import.
"""

import os
import sys
import tempfile

__all__ = ["import_tensorflow_quietly"]

_NOISE = (
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "Could not find cuda drivers on your machine",
    "Unable to register cuDNN",
)


def import_tensorflow_quietly():
  """Imports `tensorflow` once, filtering its known start-up messages."""
  if "tensorflow" in sys.modules:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  try:
    saved = os.dup(2)
  except OSError:  # No usable descriptor 2 (embedded interpreters).
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return
  with tempfile.TemporaryFile() as captured:
    sys.stderr.flush()
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import,redefined-outer-name
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode("utf-8", errors="replace")
      for line in text.splitlines():
        if line.strip() and not any(n in line for n in _NOISE):
          sys.stderr.write(line + "\n")
