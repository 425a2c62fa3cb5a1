"""Runs pytest on the test files it is given: Bazel's `py_test` entry point.

Bazel runs a `py_test` target's `main` as a script. The test files are pytest
modules, so every target runs this script with its own file as argument;
pytest's exit status becomes the target's, so a failing test fails the target
and a target whose file collects no test fails too (pytest exits with 5).

Under `bazel test` (TEST_TMPDIR is set) pytest also writes its JUnit report
where Bazel looks for it (XML_OUTPUT_FILE), so Bazel's test.xml lists the test
functions, not only the file; HOME, which Bazel 4 leaves unset, becomes the
test's private temporary directory; pytest keeps no cache; and
LILNETX_DATA_DIR, unless set, names the data beside the source tree
(../shared/data), which paths computed from a test file's runfiles location
(a symbolic link) would miss.
"""

import os
import pathlib
import sys

import pytest

# The source tree: this file's runfiles entry is a link to it.
_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bazel_args(environ):
  """pytest's extra arguments under `bazel test`; sets HOME and the data."""
  if "TEST_TMPDIR" not in environ:
    return []
  environ.setdefault("HOME", environ["TEST_TMPDIR"])
  environ.setdefault("LILNETX_DATA_DIR", str(_ROOT.parent / "shared" / "data"))
  args = ["-p", "no:cacheprovider"]
  if environ.get("XML_OUTPUT_FILE"):
    args.append("--junitxml=" + environ["XML_OUTPUT_FILE"])
  return args


def main(argv):
  """Runs pytest on `argv` (test files) and returns its exit status."""
  if not argv:
    print("usage: pytest_main.py TEST_FILE [TEST_FILE ...]", file=sys.stderr)
    return 2
  return int(pytest.main(["-q", *_bazel_args(os.environ), *argv]))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
