"""The tables of docs/benchmarks.md are the JSON under docs/results/.

Each block between `<!-- table: NAME -->` and `<!-- /table -->` must be what
`bench.tables` renders from the JSON now, so that a table cannot drift from
its data; a changed figure must change its table and fail the check.
"""

import json
import shutil

import pytest

from bench import tables


def _rows(text):
  """The cells of each markdown table row of `text`."""
  return [[cell.strip() for cell in line.strip("|").split("|")]
          for line in text.splitlines() if line.startswith("| ")]


def test_every_table_of_the_benchmarks_page_is_its_json():
  text = tables.DOC.read_text()
  found = tables.blocks(text)
  names = [name for name, _ in found]
  # Each table once; the count of markers matches the blocks parsed.
  assert sorted(names) == sorted(tables.TABLES), names
  assert text.count("<!-- table: ") == text.count("<!-- /table -->") == len(
      found)
  stale = [name for name, content in found
           if content != tables.render(name)]
  assert not stale, f"run python -m bench.tables: {stale} differ"
  assert tables.main(["--check"]) == 0


def test_tables_show_the_json_figures():
  with open(tables.RESULTS / "compare_mnist_lenet5.json") as f:
    data = json.load(f)
  rows = {row[0]: row for row in _rows(tables.render("compare_mnist_lenet5"))}
  for row in data["rows"]:
    cells = rows[row["label"]]
    assert cells[1] == f"{100 * row['test_accuracy']:.2f}"
    assert int(cells[2].replace(",", "")) == row["bytes"]
    assert abs(float(cells[4]) - 4 * data["parameters"] / row["bytes"]) < 0.05
  # The summary: the config's LilNetX file (lambda_I 2) against the smallest
  # other file at most 0.1 points less accurate, computed here by hand.
  lilnetx = next(r for r in data["rows"] if r["name"] == "lilnetx_lambda2")
  others = [r for r in data["rows"] if r["family"] != "lilnetx" and
            r["test_accuracy"] >= lilnetx["test_accuracy"] - 0.001]
  smallest = min(others, key=lambda r: r["bytes"])
  summary = {row[0]: row for row in _rows(tables.render("summary"))}
  cells = summary["mnist_lenet5 (10 epochs)"]
  assert cells[6].startswith(smallest["label"] + ":")
  assert cells[7] == f"{smallest['bytes'] / lilnetx['bytes']:.1f}"


def test_a_changed_figure_fails_the_check(tmp_path):
  results = tmp_path / "results"
  shutil.copytree(tables.RESULTS, results)
  doc = tmp_path / "benchmarks.md"
  shutil.copy(tables.DOC, doc)
  assert tables.main(["--check", f"--doc={doc}",
                      f"--results={results}"]) == 0
  path = results / "compare_mnist_lenet5.json"
  data = json.loads(path.read_text())
  row = next(r for r in data["rows"] if r["name"] == "lilnetx_lambda2")
  row["test_accuracy"] = 0.9702
  path.write_text(json.dumps(data))
  assert tables.main(["--check", f"--doc={doc}",
                      f"--results={results}"]) == 1
  # Rewritten, the page shows the new figure in the task's table and in the
  # summary, whose other file is then the smallest tfmot file of all.
  assert tables.main([f"--doc={doc}", f"--results={results}"]) == 0
  text = doc.read_text()
  blocks = dict(tables.blocks(text))
  assert "| LilNetX lambda_I=2 | 97.02 |" in blocks["compare_mnist_lenet5"]
  assert "prune 95% + sparse cluster 16 + int8 PTQ: 98.62, 35,260" in (
      blocks["summary"])
  assert tables.main(["--check", f"--doc={doc}",
                      f"--results={results}"]) == 0
  assert blocks["compare_mnist_lenet300"] == tables.render(
      "compare_mnist_lenet300")


def test_a_cifar_run_of_another_recipe_is_refused(tmp_path):
  results = tmp_path / "results"
  shutil.copytree(tables.RESULTS, results)
  path = results / "cifar10_resnet20_15ep.json"
  data = json.loads(path.read_text())
  for run in data["runs"]:
    run["learning_rate"] = 5e-2
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="no run of .*cifar10_resnet20_15ep.py"):
    tables.render("cifar10_resnet20_15ep", results)


def test_readme_results_table_is_its_json():
  text = tables.DOCS[1].read_text()
  found = tables.blocks(text)
  assert [name for name, _ in found] == ["summary"]
  assert found[0][1] == tables.render("summary")
