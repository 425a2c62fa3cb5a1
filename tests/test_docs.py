"""The docs cannot rot: their Python runs, and they describe the present.

Every ```python block of README.md and docs/*.md runs, the blocks of one
document in order in one namespace (as a reader runs them), in a fresh
process in an empty directory. A block that must not run (an excerpt, code
for a device) has the line `<!-- docs-test: skip: REASON -->` right before
its fence, and is listed in `SKIPPED` here, so a new one is a visible change.
"""

import ast
import io
import pathlib
import re
import subprocess
import sys
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SKIP_MARKER = re.compile(r"<!-- docs-test: skip: (.+?) -->")
_FENCE = re.compile(r"^```python\s*$")

# (document, first line of the block): the blocks that are not run.
SKIPPED = {
    ("docs/benchmarks.md", "converter = tf.lite.TFLiteConverter.from_keras_model(model)"),
    ("docs/benchmarks.md", 'pruning_params = {"pruning_schedule": tfmot.sparsity.keras.PolynomialDecay('),
    ("docs/benchmarks.md", "clustered = tf.keras.models.clone_model(model, clone_function=lambda layer:"),
    ("docs/benchmarks.md", "cluster_weights(layer, number_of_clusters=16,"),
    ("docs/deploy.md", "import numpy as np"),
}

# Phrases that narrate the project's development instead of describing it.
HISTORY_PHRASES = ("last round", "previous round", "this round", "re-measured",
                   "earlier rounds", "earlier round", "predates", "superseded",
                   "used to be", "was measured before")
# A measured figure in a config: a percentage, a byte count, a speed-up.
_FIGURE = re.compile(r"\d(\.\d+)?\s?%|\d[\d,]*\s?(B|KB|MB|bytes)\b|\d\.\d+x\b")


def python_blocks(path):
  """`(first line, code, skip reason or None)` of each ```python block."""
  lines = path.read_text().splitlines()
  blocks, i = [], 0
  while i < len(lines):
    if _FENCE.match(lines[i]):
      marker = SKIP_MARKER.search(lines[i - 1]) if i else None
      end = lines.index("```", i + 1)
      code = "\n".join(lines[i + 1:end])
      first = next((l for l in lines[i + 1:end] if l.strip()), "")
      blocks.append((first.strip(), code, marker and marker.group(1)))
      i = end
    i += 1
  return blocks


def _name(path):
  return str(path.relative_to(ROOT))


def test_python_blocks_are_found_by_hand():
  text = "intro\n```python\nx = 1\n```\n<!-- docs-test: skip: why -->\n" \
         "```python\n\ny = 2\n```\n```sh\nls\n```\n"
  path = ROOT / "tests" / "_docs_probe.md"
  path.write_text(text)
  try:
    assert python_blocks(path) == [("x = 1", "x = 1", None),
                                   ("y = 2", "\ny = 2", "why")]
  finally:
    path.unlink()


def test_skipped_blocks_are_the_listed_ones():
  marked = {(_name(p), first) for p in DOCS
            for first, _, reason in python_blocks(p) if reason}
  print("blocks not run:", *sorted(marked), sep="\n  ")
  assert marked == SKIPPED


@pytest.mark.parametrize("path", [p for p in DOCS if any(
    reason is None for _, _, reason in python_blocks(p))], ids=_name)
def test_python_blocks_run(path, tmp_path):
  code = "\n\n".join(code for _, code, reason in python_blocks(path)
                     if reason is None)
  script = tmp_path / "doc.py"
  script.write_text(code)
  env = {"PYTHONPATH": str(ROOT), "TF_USE_LEGACY_KERAS": "1",
         "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
  result = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def _narration_files():
  files = [ROOT / "README.md"]
  files += [p for p in (ROOT / "docs").rglob("*.md")]
  files += sorted((ROOT / "train" / "configs").glob("*.py"))
  files += sorted((ROOT / "lilnetx_tf").rglob("*.py"))
  return files


def test_no_history_narration():
  found = []
  for path in _narration_files():
    for number, line in enumerate(path.read_text().splitlines(), 1):
      lower = line.lower()
      found += [f"{_name(path)}:{number}: {phrase!r}"
                for phrase in HISTORY_PHRASES if phrase in lower]
  assert not found, "\n".join(found)


def test_history_phrases_are_caught():
  assert any(p in "The previous round's rows".lower() for p in HISTORY_PHRASES)
  assert _FIGURE.search("gave 99.03% with 3,630 B")
  assert _FIGURE.search("1.92x faster")
  assert not _FIGURE.search("lambda_I 2, 10 epochs, learning rate 2e-2")


def _prose(path):
  """`(line, text)` of a Python file's comments and docstrings."""
  source = path.read_text()
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      yield token.start[0], token.string
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
      doc = ast.get_docstring(node)
      if doc:
        line = node.body[0].lineno
        yield from ((line + i, text) for i, text in
                    enumerate(doc.splitlines()))


def test_configs_carry_no_measured_figures():
  found = [f"{_name(path)}:{line}: {text.strip()}"
           for path in sorted((ROOT / "train" / "configs").glob("*.py"))
           for line, text in _prose(path) if _FIGURE.search(text)]
  assert not found, "\n".join(found)


@pytest.mark.parametrize("package", ["method", "compressed", "deploy", "data"])
def test_subpackage_docstrings_list_their_modules(package):
  """Each subpackage's docstring names every module of it, and no other."""
  directory = ROOT / "lilnetx_tf" / package
  modules = {p.stem for p in directory.glob("*.py")
             if not p.stem.startswith("_")}
  doc = ast.get_docstring(ast.parse((directory / "__init__.py").read_text()))
  listed = set(re.findall(r"^\* `(\w+)`:", doc, re.MULTILINE))
  assert listed == modules, (f"docstring of lilnetx_tf.{package} lists "
                             f"{sorted(listed)}, the modules are "
                             f"{sorted(modules)}")


def test_readme_is_a_short_product_page():
  lines = (ROOT / "README.md").read_text().splitlines()
  assert len(lines) <= 200
  in_code, long = False, []
  for number, line in enumerate(lines, 1):
    if line.startswith("```"):
      in_code = not in_code
    elif not in_code and not line.startswith("|") and len(line) > 100:
      long.append(number)
  assert not long, f"README.md lines over 100 characters: {long}"
  text = "\n".join(lines)
  for needed in ("## Install", "## Quickstart", "## The knobs", "## Results",
                 "## Citing", "tflite.convert("):
    assert needed in text
