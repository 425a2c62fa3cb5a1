"""A finished run's figures: `metrics.json` and the `report.png` chart.

LilNetX models are measured by `lilnetx_tf.compression_stats` (real range-coded
size included); vanilla models by `lilnetx_tf.method.stats.plain_stats`, with
the same keys where they make sense (float32 size, sparsities, MACs).
"""

import csv
import json
import os

import matplotlib
matplotlib.use("Agg")  # Files only; no display on servers.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

import lilnetx_tf  # pylint: disable=g-import-not-at-top,wrong-import-position
from lilnetx_tf.atomic import atomic_path  # pylint: disable=g-import-not-at-top,wrong-import-position
from lilnetx_tf.atomic import atomic_write  # pylint: disable=g-import-not-at-top,wrong-import-position
from lilnetx_tf.method.stats import plain_stats  # pylint: disable=g-import-not-at-top,wrong-import-position

__all__ = ["model_figures", "plot_report", "read_csv_log", "write_json"]

def model_figures(model, vanilla, compressed_path=None):
  """Size, sparsity and MAC figures of a trained model.

  Args:
    model: The trained `LilNetXModel` (or plain model when `vanilla`).
    vanilla: Whether `model` is a plain Keras model.
    compressed_path: Where to write the compressed file (LilNetX only), or
      None.

  Returns:
    `(total, layers)`: JSON-ready dicts; `total['file_bytes']` is the size of
    the compressed file, or None when it was not written.
  """
  if vanilla:
    stats = plain_stats(model)
    stats["total"]["file_bytes"] = None
  else:
    stats = lilnetx_tf.compression_stats(model, coded=True)
    stats["total"]["file_bytes"] = (
        lilnetx_tf.save_compressed(model, compressed_path)["file_bytes"]
        if compressed_path else None)
  return stats["total"], stats["layers"]


def write_json(path, obj):
  """Writes `obj` as indented JSON, atomically."""
  atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_csv_log(path):
  """Reads a Keras `CSVLogger` file into {column: list of floats}.

  Missing values are NaN: Keras writes "NA", e.g. in every `val_*` column of
  a run without validation data.
  """
  if not os.path.exists(path):
    return {}
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  columns = rows[0].keys() if rows else ()
  return {c: [float(r[c]) if r[c] not in ("", "NA", None) else np.nan
              for r in rows] for c in columns}


def plot_report(path, layers, log, title):
  """Draws size and sparsity per layer, and accuracy and size over epochs.

  Args:
    path: The PNG to write.
    layers: Per-layer figures (`model_figures`' second value).
    log: The epoch log (`read_csv_log`).
    title: Figure title.
  """
  fig, axes = plt.subplots(2, 2, figsize=(14, 9))
  names = list(layers)
  x = np.arange(len(names))
  ax = axes[0, 0]
  float_kb = [4 * layers[n]["weights"] / 1e3 for n in names]
  ax.bar(x - 0.2, float_kb, 0.4, label="float32")
  if all("estimated_bits" in layers[n] for n in names):
    ax.bar(x + 0.2, [layers[n]["estimated_bits"] / 8e3 for n in names], 0.4,
           label="LilNetX (estimated)")
  ax.set_yscale("log")
  ax.set_ylabel("KB")
  ax.set_title("Size per layer")
  ax.legend()
  ax = axes[0, 1]
  ax.bar(x, [100 * layers[n]["zero_slices"] / max(layers[n]["slices"], 1)
             for n in names], 0.6, label="zero slices")
  ax.bar(x, [100 * (1 - layers[n]["nonzero_weights"] / layers[n]["weights"])
             for n in names], 0.3, label="zero weights")
  ax.set_ylim(0, 100)
  ax.set_ylabel("%")
  ax.set_title("Sparsity per layer")
  ax.legend()
  for ax in axes[0]:
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=6 if len(names) > 25 else 8)
  epochs = np.asarray(log.get("epoch", []), int) + 1
  ax = axes[1, 0]
  for key, label in (("accuracy", "train"), ("val_accuracy", "validation")):
    if not np.all(np.isnan(log.get(key, np.nan))):
      ax.plot(epochs, 100 * np.asarray(log[key]), marker=".", label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel("accuracy %")
  ax.set_title("Accuracy")
  ax.legend()
  ax = axes[1, 1]
  for key, label in (("estimated_bytes", "estimated"),
                     ("entropy_bytes", "entropy"),
                     ("coded_bytes", "range coded")):
    if key in log:
      ax.plot(epochs, np.asarray(log[key]) / 1e3, marker=".", label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel("KB")
  ax.set_title("Size of the latents")
  lines = list(ax.lines)
  if "slice_sparsity" in log:
    twin = ax.twinx()
    lines += twin.plot(epochs, 100 * np.asarray(log["slice_sparsity"]), "g--",
                       label="slice sparsity (right)")
    twin.set_ylabel("slice sparsity %")
  if lines:
    ax.legend(lines, [line.get_label() for line in lines], loc="best")
  for ax in axes[1]:
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  fig.suptitle(title)
  fig.tight_layout()
  try:
    with atomic_path(path, suffix=".png") as tmp:
      fig.savefig(tmp, dpi=100)
  finally:
    plt.close(fig)


def frontier_table(rows):
  """The frontier's points as a text table, one row per `.lnx` file."""
  metrics = [k for k in rows[0] if k.endswith("_accuracy")] if rows else []
  header = (f"{'epoch':>5} {'lambda_I':>9} {'file B':>9} {'latents B':>10} " +
            " ".join(f"{m.replace('_accuracy', ' %'):>12}" for m in metrics) +
            "  file")
  lines = [header, "-" * len(header)]
  for r in rows:
    lines.append(f"{r['epoch']:>5} {r['lambda_rate']:>9g} "
                 f"{r['file_bytes']:>9,} {r['latent_bytes']:>10,} " +
                 " ".join(f"{100 * r[m]:>12.2f}" for m in metrics) +
                 f"  {r['file']}")
  return "\n".join(lines)


def plot_frontier(path, rows, title):
  """Accuracy against file bytes, one marker per frontier point."""
  metrics = [k for k in rows[0] if k.endswith("_accuracy")]
  fig, ax = plt.subplots(figsize=(6, 4))
  sizes = [r["file_bytes"] for r in rows]
  for metric in metrics:
    ax.plot(sizes, [100 * r[metric] for r in rows], "o-",
            label=metric.replace("_", " "))
  for r in rows:
    ax.annotate(f"{r['lambda_rate']:g}", (r["file_bytes"],
                                          100 * r[metrics[-1]]),
                textcoords="offset points", xytext=(4, 4), fontsize=8)
  ax.set_xlabel(".lnx file bytes")
  ax.set_ylabel("accuracy %")
  ax.set_title(title)
  ax.legend()
  ax.grid(alpha=0.3)
  with atomic_path(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
  plt.close(fig)
