"""The tables of docs/benchmarks.md, rendered from docs/results/*.json.

Each table sits between `<!-- table: NAME -->` and `<!-- /table -->` in the
document and is generated from its JSON by `TABLES[NAME]`, with the source
under it: the JSON, the commit, the stack and machine it records, and the
command that reproduces it. Edit the JSON (or rerun the benchmark that writes
it), never the table:

  python -m bench.tables            # rewrites every table block
  python -m bench.tables --check    # exit 1, naming the blocks that differ

tests/test_docs_tables.py runs the check.
"""

import argparse
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
from bench import run_configs
from train.configs import cifar10_resnet20_15ep
# pylint: enable=wrong-import-position

__all__ = ["DOC", "DOCS", "RESULTS", "TABLES", "blocks", "render", "update", "main"]

DOC = ROOT / "docs" / "benchmarks.md"
# Other documents that show some of the tables (README.md: the summary).
DOCS = (DOC, ROOT / "README.md")
RESULTS = ROOT / "docs" / "results"
_BLOCK = re.compile(r"(<!-- table: (\S+) -->\n)(.*?)(<!-- /table -->)",
                    re.DOTALL)
_CIFAR_DATA = "--data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz"


def _load(results, name):
  with open(results / f"{name}.json") as f:
    return json.load(f)


def _pct(value):
  return "-" if value is None else f"{100 * value:.2f}"


def _pct1(value):
  return "-" if value is None else f"{100 * value:.1f}"


def _int(value):
  return "-" if value is None else f"{value:,}"


def _rate(value):
  """A rate weight or learning rate as the configs write it: 4e-2, 4.5."""
  if value >= 0.1:
    return f"{value:g}"
  mantissa, exponent = f"{value:e}".split("e")
  return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _table(head, rows, left=1):
  """A markdown table; the columns after the first `left` right-aligned."""
  lines = ["| " + " | ".join(head) + " |",
           "|" + "---|" * left + "---:|" * (len(head) - left)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines


def _stack_text(stack):
  """"TensorFlow 2.14.1, tensorflow-compression 2.14.1" and the like."""
  parts = [f"TensorFlow {stack['tensorflow']}"]
  if stack.get("tf-keras"):
    parts.append(f"tf-keras {stack['tf-keras']}")
  coder = ("tensorflow-compression" if stack.get("tensorflow-compression")
           else "constriction")
  if stack.get(coder):
    parts.append(f"{coder} {stack[coder]}")
  if stack.get("tensorflow-model-optimization"):
    parts.append(f"tfmot {stack['tensorflow-model-optimization']}")
  return ", ".join(parts)


def _source(name, data, commands=None):
  """The table's source line, and the commands that reproduce it."""
  parts = [f"[results/{name}.json](results/{name}.json)"]
  if data.get("commit"):
    parts.append(f"commit {data['commit'][:7]}")
  if data.get("stack"):
    parts.append(_stack_text(data["stack"]))
  machine = data.get("machine")
  if machine:
    gpus = machine.get("gpus")
    parts.append(f"{machine['cpus']} CPU cores"
                 + (", no GPU" if gpus == 0 else ""))
  if data.get("format_version"):
    parts.append(f"`.lnx` format version {data['format_version']}")
  commands = commands or data.get("commands") or [data["command"]]
  return ["", "Source: " + "; ".join(parts) + ". Reproduce:", "", "```sh",
          *commands, "```"]


def _compare_rows(data):
  """The rows of a compare JSON that its config reproduces."""
  return [row for row in data["rows"]
          if row.get("config", data["config"]) == data["config"]]


def _compare(task, command=None):
  """`bench/compare.py`'s table of `task`, its quoted rows below."""

  def render(results):
    name = f"compare_{task}"
    data = _load(results, name)
    rows = [[row["label"], _pct(row["test_accuracy"]), _int(row["bytes"]),
             _int(row["coded_latent_bytes"]), f"{row['ratio']:.1f}",
             _pct1(row["weight_sparsity"]), _pct1(row["slice_sparsity"]),
             _int(row["macs_dense"]), _int(row["macs_nonzero"]),
             f"{row['train_wall_seconds']:,.1f}"]
            for row in _compare_rows(data)]
    rows += [[f"{row['label']} (quoted, not measured)",
              _pct(row["test_accuracy"]), _int(row["bytes"]), "-",
              f"{row['ratio']:.1f}", "", "", "", "", ""]
             for row in data["quoted"]]
    lines = [f"{data['model']} ({data['parameters']:,} parameters, float32 "
             f"{data['float32_bytes']:,} bytes), {data['epochs']} epochs, "
             f"batch {data['batch_size']}, {data['train_examples']:,} "
             f"training and {data['test_examples']:,} test images, seed "
             f"{data['seed']}.", ""]
    lines += _table(["pipeline", "acc %", "bytes", "latents", "x f32",
                     "w.sp %", "sl.sp %", "MACs dense", "MACs nz", "train s"],
                    rows)
    return lines + _source(name, data, command and [command])

  return render


def _is_recipe(run, config):
  return (run["lambda_rate"], run["learning_rate"], run["seed"]) == (
      config.lambda_rate, config.learning_rate, config.seed)


def _scratch(results):
  """The 15-epoch from-scratch runs of CIFAR-10 ResNet-20."""
  name = "cifar10_resnet20_15ep"
  data = _load(results, name)
  config = cifar10_resnet20_15ep.get_config()
  if not any(_is_recipe(run, config) for run in data["runs"]):
    raise ValueError(f"{name}.json: no run of train/configs/{name}.py's "
                     "recipe (its lambda_rate, learning_rate and seed).")
  rows = []
  for run in data["runs"]:
    label = (f"lambda_I {_rate(run['lambda_rate'])}, learning rate "
             f"{_rate(run['learning_rate'])}, seed {run['seed']}")
    if _is_recipe(run, config):
      label = f"**{label} (the config)**"
    rows.append([
        label, _pct(run["test_accuracy"]), _int(run["bytes"]),
        f"{data['float32_bytes'] / run['bytes']:.1f}",
        _int(run["coded_latent_bytes"]), _pct(run["lnx_test_accuracy"]),
        f"{_pct1(run['weight_sparsity'])} / {_pct1(run['slice_sparsity'])}",
        _pct1(run["macs_nonzero_fraction"]),
        f"{run['channels_kept']} of {data['channels']}"])
  rows.append(["float32 baseline (`:float`)",
               _pct(data["baseline"]["test_accuracy"]),
               f"{data['float32_bytes']:,} (float32)", "1.0", "-", "-",
               "0.0 / 0.0", "100.0", f"{data['channels']} of "
               f"{data['channels']}"])
  head = ["from scratch, 15 epochs", "acc %", "file bytes", "x f32",
          "latents", "`model.lnx` acc %", "w.sp / sl.sp %", "MACs nz %",
          "channels kept"]
  return _table(head, rows) + _source(name, data)


def _distill(results):
  """The distilled fine-tune of CIFAR-10 ResNet-20, file by file."""
  name = "cifar10_resnet20_15ep_distill"
  data = _load(results, name)
  config = cifar10_resnet20_15ep.get_config("distill")
  if (data["lambda_rate"], data["learning_rate"]) != (
      config.lambda_rate, config.learning_rate):
    raise ValueError(f"{name}.json: not the recipe of "
                     f"{data['config']} (its lambda_rate, learning_rate).")
  lines = [f"lambda_I {_rate(data['lambda_rate'])}, learning rate "
           f"{_rate(data['learning_rate'])}, {data['epochs']} epochs from the "
           f"{data['baseline_epochs']}-epoch baseline "
           f"({_pct(data['baseline']['test_accuracy'])}%); coded latents "
           f"{data['coded_latent_bytes']:,} B, weight / slice sparsity "
           f"{_pct1(data['weight_sparsity'])}% / "
           f"{_pct1(data['slice_sparsity'])}%, "
           f"{_pct1(data['macs_nonzero_fraction'])}% of the dense MACs "
           "nonzero.", ""]
  rows = [[f"`{f['file']}`" if f["export_options"] is None
           else f"`{f['export_options']}`", _pct(f["test_accuracy"]),
           _int(f["bytes"]), f"{data['float32_bytes'] / f['bytes']:.1f}"]
          for f in data["files"]]
  lines += _table(["file", "acc %", "bytes", "x f32"], rows)
  return lines + _source(name, data)


def _summary(results):
  """Per task: the config's LilNetX file against the smallest other file.

  The other file is the smallest of the baseline and tfmot rows at most 0.1
  points less accurate than LilNetX.
  """
  rows = []
  for task, spec in run_configs.TASKS.items():
    module = spec["config"]
    data = _load(results, f"compare_{task}")
    others = [r for r in _compare_rows(data) if r["family"] != "lilnetx"]
    baseline = next(r for r in others if r["name"] == "baseline_float32")
    if task == "cifar10_resnet20":
      scratch = _load(results, "cifar10_resnet20_15ep")
      run = next(r for r in scratch["runs"]
                 if _is_recipe(r, module.get_config()))
      lilnetx = dict(test_accuracy=run["test_accuracy"], bytes=run["bytes"],
                     ratio=data["float32_bytes"] / run["bytes"])
      where = "`cifar10_resnet20_15ep.py`, compact file"
    else:
      rate = module.get_config().lambda_rate
      lilnetx = next(r for r in data["rows"]
                     if r["name"] == f"lilnetx_lambda{rate:g}")
      where = f"`{module.__name__.split('.')[-1]}.py`"
    within = [r for r in others
              if r["test_accuracy"] >= lilnetx["test_accuracy"] - 1e-3]
    best = min(within, key=lambda r: r["bytes"])
    rows.append([
        f"{task} ({data['epochs']} epochs)", where,
        _pct(lilnetx["test_accuracy"]), _int(lilnetx["bytes"]),
        f"{lilnetx['ratio']:.1f}", _pct(baseline["test_accuracy"]),
        f"{best['label']}: {_pct(best['test_accuracy'])}, "
        f"{_int(best['bytes'])}", f"{best['bytes'] / lilnetx['bytes']:.1f}",
        "; ".join(f"{q['label']}: {_pct(q['test_accuracy'])}, "
                  f"{_int(q['bytes'])}" for q in data.get("quoted", ()))])
  head = ["task", "LilNetX", "acc %", "bytes", "x f32", "float32 acc %",
          "smallest other file within 0.1 points: acc %, bytes",
          "LilNetX smaller by", "published (quoted): acc %, bytes"]
  return _table(head, rows, left=2)


def _train_time(results):
  name = "train_time_mnist"
  data = _load(results, name)
  rows = [[f"{t['task']} (`{t['config']}`)", f"{t['baseline_seconds']:.1f}",
           f"{t['lilnetx_seconds']:.1f}",
           f"{t['lilnetx_seconds'] / t['baseline_seconds']:.2f}"]
          for t in data["tasks"]]
  lines = [f"{data['epochs']} epochs per run; {data['statistic']}.", ""]
  lines += _table(["task", "float baseline s", "LilNetX s", "ratio"], rows)
  return lines + _source(name, data)


def _stacks_step(results):
  name = "stacks_step_time"
  data = _load(results, name)
  rows = [[label, s["tensorflow"], s["keras"], f"{s['step_ms']:.2f}",
           f"{s['cpu_ms']:.2f}"]
          for label, s in data["stacks"].items()]
  rows.append(["current / pinned", "", "", f"{data['ratio_step']:.3f}",
               f"{data['ratio_cpu']:.3f}"])
  lines = [f"LilNetX {data['model']} training step, batch "
           f"{data['batch_size']}: medians of {data['rounds']} alternating "
           f"rounds of {data['steps']} steps per stack.", ""]
  lines += _table(["stack", "TensorFlow", "Keras", "step ms", "CPU ms"], rows,
                  left=3)
  return lines + _source(name, data)


def _stacks_seeds(results):
  name = "stacks_lenet5"
  data = _load(results, name)
  rows = []
  for label, runs in data["runs"].items():
    rows += [[label, run["seed"], _pct(run["test_accuracy"]),
              _int(run["coded_bytes"]), f"{run['coded_to_entropy']:.4f}",
              _int(run["file_bytes"])] for run in runs]
    median = data["medians"][label]
    rows.append([f"{label}, median", "", _pct(median["test_accuracy"]),
                 _int(median["coded_bytes"]),
                 f"{median['coded_to_entropy']:.4f}",
                 _int(median["file_bytes"])])
  lines = [f"`{data['config']}` trained on each stack's Python:", ""]
  lines += _table(["stack", "seed", "acc %", "latents", "coded / entropy",
                   "file bytes"], rows)
  return lines + _source(name, data)


def _codec(results):
  names = ("codec_pinned", "codec_current")
  runs = [_load(results, name) for name in names]
  rows = [[step] + [f"{run['steps'][step]['median_s']:.2f} s "
                    f"({run['steps'][step]['latents_per_s'] / 1e6:.0f} M/s)"
                    for run in runs]
          for step in runs[0]["steps"]]
  rows += [[f"bytes: {size}"] + [_int(run["sizes"][size]) for run in runs]
           for size in runs[0]["sizes"]]
  lines = [f"A {runs[0]['model']}-sized model, {runs[0]['num_latents']:,} "
           f"latents; medians of {runs[0]['runs']} runs (latents per second "
           "in brackets).", ""]
  lines += _table(["step"] + [f"{run['coder']}, TensorFlow "
                              f"{run['stack']['tensorflow']}" for run in runs],
                  rows)
  for name, run in zip(names, runs):
    lines += _source(name, run)
  return lines


def _frontier(results):
  name = "frontier_lenet5"
  data = _load(results, name)
  rows = [[run["seed"], _rate(p["lambda_rate"]), p["epoch"],
           _int(p["file_bytes"]), _int(p["latent_bytes"]),
           _pct(p["test_accuracy"]), f"{p['below_separate_points']:.2f}"]
          for run in data["runs"] for p in run["points"]]
  separate = ", ".join(f"{_int(r['file_bytes'])} B at "
                       f"{_pct(r['test_accuracy'])}%"
                       for r in data["separate"])
  lines = [f"`{data['config']}`, one run per seed; each point a `.lnx` file "
           "written during the run. Separate single-lambda runs (10 epochs, "
           f"seed 0, compare_mnist_lenet5.json): {separate}.", ""]
  lines += _table(["seed", "lambda_I", "epoch", "file bytes", "latents",
                   "test acc %", "points below the separate runs"], rows)
  lines += ["", "Per run: " + "; ".join(
      f"seed {run['seed']}: {run['points_in_98.5_99.2']} points in "
      f"98.5-99.2%, at most {run['worst_below_separate']:.2f} points below, "
      f"{run['train_wall_seconds']:.0f} s of training"
      for run in data["runs"]) + "."]
  return lines + _source(name, data)


def _structures(results):
  name = "structures_lenet5"
  data = _load(results, name)
  rows = []
  for run in data["runs"]:
    structure = ("slices (`mnist_lenet5.py`)" if run["name"] == "size" else
                 "slices + output channels, lambda_rho " +
                 run["overrides"][0].split("=")[1])
    rows.append([structure, _pct(run["test_accuracy"]),
                 _int(run["file_bytes"]),
                 f"{run['channels_kept']} of {run['channels_total']}",
                 f"{_int(run['params_before'])} -> {_int(run['params_after'])}",
                 f"{run['macs_before'] / run['macs_after']:.2f}",
                 f"{run['latency_ms']['1']['speedup']:.2f}",
                 f"{run['latency_ms']['2']['speedup']:.2f}"])
  lines = _table(["structure", "test acc %", "`.lnx` bytes", "channels kept",
                  "parameters", "MACs: x fewer", "faster, 1 thread",
                  "faster, 2 threads"], rows)
  return lines + _source(name, data)


TABLES = {
    "summary": _summary,
    "compare_mnist_lenet5": _compare("mnist_lenet5",
                                     "python -m bench.compare "
                                     "--task=mnist_lenet5"),
    "compare_mnist_lenet300": _compare("mnist_lenet300",
                                       "python -m bench.compare "
                                       "--task=mnist_lenet300"),
    "compare_cifar10_resnet20": _compare(
        "cifar10_resnet20",
        "python -m bench.compare --task=cifar10_resnet20 "
        f"--pipelines=baseline,lilnetx_finetune {_CIFAR_DATA}"),
    "cifar10_resnet20_15ep": _scratch,
    "cifar10_resnet20_15ep_distill": _distill,
    "frontier_lenet5": _frontier,
    "structures_lenet5": _structures,
    "train_time_mnist": _train_time,
    "stacks_step_time": _stacks_step,
    "stacks_lenet5": _stacks_seeds,
    "codec": _codec,
}


def render(name, results=RESULTS):
  """The generated text of table `name` (its block's content)."""
  if name not in TABLES:
    raise KeyError(f"bench.tables: no table {name!r}; the tables are "
                   f"{', '.join(TABLES)}.")
  return "\n".join(TABLES[name](pathlib.Path(results))) + "\n"


def blocks(text):
  """`(name, content)` of each table block of a document's `text`."""
  return [(m.group(2), m.group(3)) for m in _BLOCK.finditer(text)]


def update(text, results=RESULTS):
  """`text` with every table block regenerated from `results`."""
  return _BLOCK.sub(lambda m: m.group(1) + render(m.group(2), results)
                    + m.group(4), text)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--check", action="store_true",
                      help="Change nothing; exit 1 if a block differs.")
  parser.add_argument("--doc", type=pathlib.Path, action="append",
                      help="A document to update (repeatable); default: "
                      "docs/benchmarks.md and README.md.")
  parser.add_argument("--results", type=pathlib.Path, default=RESULTS)
  args = parser.parse_args(argv)
  status = 0
  for doc in args.doc or DOCS:
    text = doc.read_text()
    stale = [name for name, content in blocks(text)
             if content != render(name, args.results)]
    if args.check:
      if stale:
        print(f"{doc}: tables out of step with {args.results}: "
              f"{', '.join(stale)}; run python -m bench.tables.")
        status = 1
      else:
        print(f"{doc}: {len(blocks(text))} tables up to date.")
      continue
    doc.write_text(update(text, args.results))
    print(f"{doc}: rewrote {', '.join(stale) or 'nothing'}.")
  return status

if __name__ == "__main__":
  sys.exit(main())
