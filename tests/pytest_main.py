"""Runs pytest on the test files it is given: Bazel's `py_test` entry point.

Bazel runs a `py_test` target's `main` as a script. The test files are pytest
modules, so every target runs this script with its own file as argument;
pytest's exit status becomes the target's, so a failing test fails the target
and a target whose file collects no test fails too (pytest exits with 5).
"""

import sys

import pytest


def main(argv):
  """Runs pytest on `argv` (test files) and returns its exit status."""
  if not argv:
    print("usage: pytest_main.py TEST_FILE [TEST_FILE ...]", file=sys.stderr)
    return 2
  return int(pytest.main(["-q", *argv]))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
