"""Shared test set-up: quiet TensorFlow, repo root on sys.path, real data."""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# The tests build models with `tf.keras`: on TensorFlow 2.16+ that must be
# tf-keras, the Keras the library uses (lilnetx_tf.compat). The library itself
# does not depend on this variable (tests/test_compat.py checks it without).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import lilnetx_tf  # pylint: disable=g-import-not-at-top,unused-import  # Quiet TF import first.
from lilnetx_tf import compat  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# Real data shipped beside the repository (see ../shared/data/README.md).
DATA_DIR = pathlib.Path(os.environ.get("LILNETX_DATA_DIR",
                                       ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
  if not DATA_DIR.is_dir():
    pytest.fail(f"Real test data not found at {DATA_DIR} (set LILNETX_DATA_DIR).")
  return DATA_DIR


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "needs_tfc: needs tensorflow-compression (the pinned stack); "
      "skipped where it is not installed")


def pytest_collection_modifyitems(config, items):
  if compat.tfc is not None:
    return
  skip = pytest.mark.skip(reason="needs tensorflow-compression")
  for item in items:
    if "needs_tfc" in item.keywords:
      item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
  skipped = [r for r in terminalreporter.stats.get("skipped", [])
             if "needs tensorflow-compression" in str(r.longrepr)]
  terminalreporter.write_line(
      f"needs_tfc: {len(skipped)} tests skipped without tensorflow-compression"
      if compat.tfc is None else
      "needs_tfc: tensorflow-compression installed, none skipped")
