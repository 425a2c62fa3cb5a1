"""The package's structure rules, and the Bazel test runner."""

import ast
import os
import pathlib
import re
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


# The folders whose Python may use no private name of another package; only
# lilnetx_tf/compat.py may (each such use there is a documented helper).
_CHECKED = (*_OWN, "bench", "tests")
_COMPAT = "lilnetx_tf/compat.py"


def _is_private(name):
  """`_name` and `__name` (mangled), but not `__dunder__` or `_`."""
  return (name.startswith("_") and name.strip("_") != "" and
          not (name.startswith("__") and name.endswith("__")))


def _string_arg(call, names):
  """The constant string second argument of `getattr(x, "...")` etc."""
  if (isinstance(call.func, ast.Name) and call.func.id in names and
      len(call.args) >= 2 and isinstance(call.args[1], ast.Constant) and
      isinstance(call.args[1].value, str)):
    return call.args[1].value
  return None


def _defined_names(tree):
  """The private names a module defines for attribute access.

  Defs and classes, assignment targets (`x._name = ...`, `_name = ...` in a
  class or module body, loop and `with` targets), function parameters and
  `setattr(x, "_name", ...)`: a name our code defines anywhere is ours
  wherever it is read.
  """
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
      names.add(node.id)
    elif isinstance(node, ast.Attribute) and isinstance(
        node.ctx, (ast.Store, ast.Del)):
      names.add(node.attr)
    elif isinstance(node, ast.arg):
      names.add(node.arg)
    elif isinstance(node, ast.Call):
      name = _string_arg(node, ("setattr",))
      if name is not None:
        names.add(name)
  return {n for n in names if _is_private(n)}


def _private_reads(tree):
  """(line, name) of each read of a private attribute, strings included."""
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
        and _is_private(node.attr)):
      yield node.lineno, node.attr
    elif isinstance(node, ast.Call):
      name = _string_arg(node, ("getattr", "hasattr", "delattr"))
      if name is not None and _is_private(name):
        yield node.lineno, name


def _foreign_private_names(sources, allowed=(_COMPAT,)):
  """`path:line: name` of each private name our code does not define.

  Args:
    sources: Relative path -> Python source, the whole tree checked.
    allowed: Paths that may use private names of other packages (their
      definitions do not count as ours either: compat.py assigns to other
      packages' objects).

  Returns:
    The uses, sorted by path and line.
  """
  trees = {path: ast.parse(text, path) for path, text in sources.items()}
  ours = set()
  for path, tree in trees.items():
    if path not in allowed:
      ours |= _defined_names(tree)
  return [f"{path}:{line}: .{name}"
          for path, tree in sorted(trees.items()) if path not in allowed
          for line, name in sorted(_private_reads(tree)) if name not in ours]


def test_only_compat_uses_private_names_of_other_packages():
  sources = {str(path.relative_to(ROOT)): path.read_text()
             for folder in _CHECKED for path in (ROOT / folder).rglob("*.py")}
  assert _COMPAT in sources and "tests/test_layout.py" in sources
  assert _foreign_private_names(sources) == []


def test_the_private_name_check_can_fail():
  foreign = (
      "def f(model, layer, t):\n"
      "  a = model._flatten_layers(include_self=False)\n"
      "  b = getattr(model, '_is_graph_network', False)\n"
      "  c = hasattr(layer, '_keras_history') and t._keras_history.layer\n"
      "  return a, b, c, model.__class__, layer._ours, layer._param\n")
  ours = ("class Mine:\n"
          "  _ours = None\n"
          "  def _helper(self, _param):\n"
          "    self._kept = _param\n"
          "    return self._helper, getattr(self, '_kept')\n")
  assert _foreign_private_names({"a.py": foreign, "b.py": ours}) == [
      "a.py:2: ._flatten_layers", "a.py:3: ._is_graph_network",
      "a.py:4: ._keras_history", "a.py:4: ._keras_history"]
  # Each kind of definition makes a name ours: a def, a class attribute, an
  # assignment to an attribute, a parameter, setattr.
  for definition in ("def _flatten_layers(): pass",
                     "class C:\n  _flatten_layers = 1",
                     "x._flatten_layers = 1", "def g(_flatten_layers): pass",
                     "setattr(x, '_flatten_layers', 1)"):
    assert "._flatten_layers" not in " ".join(_foreign_private_names(
        {"a.py": foreign, "b.py": ours, "c.py": definition}))
  # Only the allowed file may use them, and its assignments make none ours.
  allowed = "def h(m):\n  m._keras_history = 1\n  return m._nodes_by_depth\n"
  assert _foreign_private_names(
      {"compat.py": allowed, "b.py": ours}, allowed=("compat.py",)) == []
  assert _foreign_private_names(
      {"compat.py": allowed, "a.py": foreign, "b.py": ours},
      allowed=("compat.py",)) == [
          "a.py:2: ._flatten_layers", "a.py:3: ._is_graph_network",
          "a.py:4: ._keras_history", "a.py:4: ._keras_history"]


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


def _without_bazel_env():
  """The environment minus what `bazel test` sets for the test itself."""
  return {k: v for k, v in os.environ.items()
          if not (k.startswith("TEST_") or k == "XML_OUTPUT_FILE")}


def test_bazel_targets_run_pytest_and_fail_without_tests(tmp_path):
  build = (ROOT / "BUILD").read_text()
  assert 'main = "tests/pytest_main.py"' in build
  assert 'args = ["$(location %s)" % src]' in build
  assert '[py_test(' in build and 'for src in glob(["tests/test_*.py"])]' in build
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
        env=_without_bazel_env(), timeout=120, check=False).returncode
  # pytest's statuses: 0 passed, 1 failed, 5 nothing collected.
  assert codes == {"test_ok.py": 0, "test_bad.py": 1, "test_none.py": 5}
  # Under `bazel test`, the test functions go to Bazel's test.xml.
  bazel_env = dict(_without_bazel_env(), TEST_TMPDIR=str(tmp_path),
                   XML_OUTPUT_FILE=str(tmp_path / "test.xml"))
  subprocess.run([sys.executable, runner, str(tmp_path / "test_ok.py")],
                 cwd=tmp_path, env=bazel_env, capture_output=True,
                 timeout=120, check=True)
  report = (tmp_path / "test.xml").read_text()
  assert 'tests="1"' in report and 'name="test_ok"' in report


# Paths that belong to one machine, not to the project or a distribution.
_MACHINE_PATH = re.compile(r"(?<![\w.$)])/(?:work|home|root|tmp|Users|mnt|opt)"
                           r"(?:/|\b)")


def _glob_regex(pattern):
  """A regular expression matching what Bazel's glob `pattern` matches."""
  parts = []
  for segment in pattern.split("/"):
    if segment == "**":
      parts.append("(?:[^/]+/)*")
    else:
      parts.append(
          "".join("[^/]*" if c == "*" else re.escape(c) for c in segment) + "/")
  return re.compile("".join(parts)[:-1] + r"\Z")


def _bazel_problems(build, workspace_files, files):
  """What is out of step between BUILD (text) and the checkout.

  `workspace_files` maps the names of BUILD, WORKSPACE and the other Bazel
  set-up files to their text; `files` are the checkout's files (relative
  paths) that BUILD must cover.
  """
  problems = []
  tree = ast.parse(build)
  constants = {}
  globs = []
  named = set()  # Every string of BUILD, file names among them.
  for node in ast.walk(tree):
    if (isinstance(node, ast.Assign) and len(node.targets) == 1 and
        isinstance(node.targets[0], ast.Name)):
      try:
        constants[node.targets[0].id] = ast.literal_eval(node.value)
      except ValueError:
        pass
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and
        node.func.id == "glob"):
      globs.extend(ast.literal_eval(node.args[0]))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      named.add(node.value)
  tests = sorted(f for f in files if _glob_regex("tests/test_*.py").match(f))
  if "tests/test_*.py" not in globs:
    problems.append("the py_test targets do not glob tests/test_*.py")
  fast = constants.get("_FAST", [])
  if not fast:
    problems.append("no fast tests (_FAST) in BUILD")
  for src in fast:
    if src not in tests:
      problems.append(f"_FAST names {src}, which is no test file")
  for src in constants.get("_TIMEOUT", {}):
    if src not in tests:
      problems.append(f"_TIMEOUT names {src}, which is no test file")
  for path in files:
    if path.endswith(".py") and path not in named and not any(
        _glob_regex(g).match(path) for g in globs):
      problems.append(f"{path} is in no glob of BUILD")
  for name, text in workspace_files.items():
    for match in _MACHINE_PATH.finditer(text):
      problems.append(f"{name}: machine-specific path {match.group(0)}...")
    if str(ROOT) in text:
      problems.append(f"{name}: this checkout's path {ROOT}")
  return problems


def _bazel_files():
  names = ["BUILD", "WORKSPACE", ".bazelrc"]
  names += sorted(str(p.relative_to(ROOT))
                  for p in (ROOT / "third_party" / "bazel").rglob("*")
                  if p.is_file())
  return {name: (ROOT / name).read_text() for name in names}


def test_bazel_build_is_in_step_with_the_files():
  files = sorted(
      str(p.relative_to(ROOT))
      for folder in (*_OWN, "bench", "tests")
      for p in (ROOT / folder).rglob("*.py"))
  assert "tests/test_layout.py" in files and "lilnetx_tf/__init__.py" in files
  setup = _bazel_files()
  build = setup["BUILD"]
  assert _bazel_problems(build, setup, files) == []
  # Each check can fail: an unlisted file, a fast or timed test that is gone,
  # no test glob, a machine's path.
  flat = build.replace('"lilnetx_tf/**/*.py"', '"lilnetx_tf/*.py"')
  nested = [f"{f} is in no glob of BUILD" for f in files
            if f.startswith("lilnetx_tf/") and f.count("/") > 1]
  assert nested and _bazel_problems(flat, {}, files) == nested
  assert _bazel_problems(build, {}, files + ["tests/helpers.py"]) == [
      "tests/helpers.py is in no glob of BUILD"]
  gone = [f for f in files if f != "tests/test_layout.py"]
  assert _bazel_problems(build, {}, gone) == [
      "_FAST names tests/test_layout.py, which is no test file",
      "_TIMEOUT names tests/test_layout.py, which is no test file"]
  no_tests = build.replace('glob(["tests/test_*.py"])', '["tests/test_a.py"]')
  assert "the py_test targets do not glob tests/test_*.py" in _bazel_problems(
      no_tests, {}, files)
  no_fast = re.sub(r"_FAST = \[[^]]*\]", "_FAST = []", build)
  assert _bazel_problems(no_fast, {}, files) == [
      "no fast tests (_FAST) in BUILD"]
  for path in ("/work/main/.venv/bin/python", "/home/me/src", "/root/x",
               '"/tmp/venv"', str(ROOT)):
    assert _bazel_problems(build, {"WORKSPACE": f"x = {path}\n"}, files), path
  for fine in ("/usr/share/bazel/rules/java", "@bazel_tools//tools/python",
               "//third_party/bazel:repositories.bzl", "$(location x)/tmp"):
    assert _bazel_problems(build, {"WORKSPACE": fine}, files) == [], fine
