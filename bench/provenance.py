"""What every benchmark's JSON records beside its figures.

The commit, the stack (Python, TensorFlow, Keras, coder and NumPy versions;
None for a package that is not installed), the machine and the command, so
that a result can be traced and rerun: `write_results(path, result)`.
"""

import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys

__all__ = ["PACKAGES", "provenance", "stack_versions", "write_results"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("tensorflow", "tf-keras", "tensorflow-compression",
            "constriction", "ai-edge-litert", "numpy")


def stack_versions():
  """This interpreter's Python and package versions."""
  versions = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def provenance():
  """Commit, stack, machine and command of the running benchmark."""
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True,
                            check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = None
  script = pathlib.Path(sys.argv[0]).resolve()
  try:
    script = script.relative_to(ROOT)
  except ValueError:
    pass
  return {"commit": commit, "stack": stack_versions(),
          "machine": {"cpus": os.cpu_count(), "processor": platform.machine(),
                      "system": platform.platform()},
          "command": " ".join(["python", str(script)] + sys.argv[1:])}


def write_results(path, result):
  """Writes `result` with `provenance()` as indented JSON."""
  pathlib.Path(path).write_text(
      json.dumps({**result, **provenance()}, indent=2) + "\n")
  print(f"wrote {path}")
