"""Shared test set-up: quiet TensorFlow, repo root on sys.path, real data."""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import lilnetx_tf  # pylint: disable=g-import-not-at-top,unused-import  # Quiet TF import first.
import pytest  # pylint: disable=g-import-not-at-top

# Real data shipped beside the repository (see ../shared/data/README.md).
DATA_DIR = pathlib.Path(os.environ.get("LILNETX_DATA_DIR",
                                       ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
  if not DATA_DIR.is_dir():
    pytest.fail(f"Real test data not found at {DATA_DIR} (set LILNETX_DATA_DIR).")
  return DATA_DIR
