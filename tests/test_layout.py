"""The package's structure rules, and the Bazel test runner."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
_OWN = ("lilnetx_tf", "train", "export")


def _modules(*folders):
  for folder in folders:
    for path in sorted((ROOT / folder).rglob("*.py")):
      yield path, ast.parse(path.read_text(), str(path))


def _imports(tree):
  """(imported module, imported name or None) of every import statement."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name, None
    elif isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        yield node.module, alias.name


def _private_owner(module, name):
  """The package a private import belongs to, or None if it is public.

  A leading underscore makes a name private to the package holding it, and
  to that package's subpackages: `from lilnetx_tf.models import _common`
  belongs to `lilnetx_tf.models`, `lilnetx_tf._quiet` to `lilnetx_tf`.
  """
  parts = module.split(".")
  if parts[0] not in _OWN:
    return None
  if name and name.startswith("_") and not name.startswith("__"):
    return module
  for i, part in enumerate(parts):
    if part.startswith("_") and not part.startswith("__"):
      return ".".join(parts[:i])
  return None


def test_no_module_uses_a_private_name_of_another():
  problems = []
  for path, tree in _modules(*_OWN):
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    for module, name in _imports(tree):
      owner = _private_owner(module, name)
      if owner and not (package == owner or package.startswith(owner + ".")):
        problems.append(f"{path.relative_to(ROOT)}: {module} {name}")
    # Attribute access `lib._name` on an imported module of ours.
    aliases = {}
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and (
          node.module.split(".")[0] in _OWN):
        for alias in node.names:
          aliases[alias.asname or alias.name] = node.module
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and
          not node.attr.startswith("__") and
          isinstance(node.value, ast.Name) and node.value.id in aliases):
        problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                        f"{node.value.id}.{node.attr}")
  assert not problems, problems


def test_the_library_depends_on_no_tool_and_the_core_on_no_zoo():
  problems = []
  for path, tree in _modules("lilnetx_tf"):
    relative = path.relative_to(ROOT / "lilnetx_tf")
    core = relative.parts[0] not in ("models", "data")
    for module, _ in _imports(tree):
      top = module.split(".")[0]
      if top in ("train", "export", "bench", "tests"):
        problems.append(f"{relative} imports {module}")
      if core and (module.startswith("lilnetx_tf.models") or
                   module.startswith("lilnetx_tf.data")):
        problems.append(f"{relative} (core) imports {module}")
  assert not problems, problems


def test_bazel_targets_run_pytest_and_fail_without_tests(tmp_path):
  build = (ROOT / "BUILD").read_text()
  assert 'main = "tests/pytest_main.py"' in build
  assert 'args = ["$(location %s)" % src]' in build
  runner = str(ROOT / "tests" / "pytest_main.py")
  files = {"test_ok.py": "def test_ok():\n  assert 1 + 1 == 2\n",
           "test_bad.py": "def test_bad():\n  assert 1 + 1 == 3\n",
           "test_none.py": "VALUE = 1\n"}
  codes = {}
  for name, text in files.items():
    (tmp_path / name).write_text(text)
    codes[name] = subprocess.run(
        [sys.executable, runner, str(tmp_path / name), "-p",
         "no:cacheprovider"], cwd=tmp_path, capture_output=True,
        timeout=120, check=False).returncode
  # pytest's statuses: 0 passed, 1 failed, 5 nothing collected.
  assert codes == {"test_ok.py": 0, "test_bad.py": 1, "test_none.py": 5}
