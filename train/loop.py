"""One training run: data, model, `model.fit` with callbacks, final report.

`run(config, workdir)` is what `python -m train` calls. Re-running it with
the same workdir resumes from the last epoch checkpoint, or, when the run is
complete, only reports that.

The model is fitted on the training split less a validation split
(`config.validation_fraction`, at most `config.max_validation_examples`,
chosen by `config.seed`); the best epoch is chosen on the validation split,
and the test split is only evaluated for the report.

Outputs in `workdir`: `config.json`, `checkpoints/`, `model.keras` (latest),
`best.keras` (best validation accuracy; none without a validation split),
`log.csv`, `tensorboard/`, `metrics.json`, `report.png` and, when
`lilnetx_tf.compressed.fileformat` is available, `model.lnx`.
"""

import csv
import json
import os
import sys
import time

from absl import logging
import tensorflow as tf
from lilnetx_tf.compat import keras

import lilnetx_tf
from lilnetx_tf import data as data_lib
from lilnetx_tf.atomic import atomic_path
from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.compressed import frontier as frontier_lib
from . import callbacks as callbacks_lib
from . import distribute
from . import faults
from . import registry
from . import report

__all__ = ["check_workdir", "run"]

# Fields that may change between a run and its resumption without making the
# checkpoint meaningless.
_RESUMABLE_CHANGES = ("epochs", "data_dir", "cache_dir", "log_histograms",
                      "coded_size_every_epoch", "keep_checkpoints", "strategy",
                      "cpu_devices", "tpu", "deterministic")


# Fields that decide what the checkpoint holds, or which examples the
# recorded best validation accuracy was measured on: a run cannot resume
# with others.
_STRUCTURAL = ("model", "model_options", "dataset", "vanilla", "reference",
               "sparsity_groups", "seed", "train_limit", "validation_fraction",
               "max_validation_examples")


def _check_resumed_config(path, config):
  """Refuses structural config changes of a resumed run, warns about others.

  Raises:
    ValueError: naming the first field that differs from the run's and both
      values, before anything is built or written.
  """
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  new = json.loads(config.to_json())
  changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  for key in changed:
    if key in _STRUCTURAL:
      raise ValueError(
          f"{os.path.dirname(path)} holds a run with config.{key} = "
          f"{old.get(key)!r}, this command asks for {new.get(key)!r}: resume "
          "with the run's config (see its config.json) or use a new "
          "--workdir. Nothing was changed.")
  for key in changed:
    log = logging.info if key in _RESUMABLE_CHANGES else logging.warning
    log("config.%s changed since this run started: %r -> %r.", key,
        old.get(key), new.get(key))


def check_workdir(config, workdir):
  """Checks that `workdir` is new or holds a run `config` can resume.

  Cheap (reads one checkpoint value and `config.json`), so the CLI calls it
  before building anything.

  Raises:
    ValueError: if the workdir's run has another model, dataset, ...
  """
  if callbacks_lib.RunCheckpoint.epochs_done(
      os.path.join(workdir, "checkpoints")):
    _check_resumed_config(os.path.join(workdir, "config.json"), config)


def _truncate_csv(path, epochs_done):
  """Keeps the header and rows of finished epochs (drops a killed epoch's)."""
  if not os.path.exists(path):
    return
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if not rows:
    return
  column = rows[0].index("epoch")
  kept = [rows[0]] + [r for r in rows[1:] if int(r[column]) < epochs_done]
  with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
    csv.writer(f).writerows(kept)


def _data_args(config):
  return dict(batch_size=config.batch_size, data_dir=config.data_dir,
              cache_dir=config.cache_dir, seed=config.seed,
              source=config.data_source)


def _train_dataset(config, initial_epoch):
  """The training pipeline from `initial_epoch` on, and its `DatasetInfo`.

  Its epochs are functions of (seed, epoch), so a resumed run sees the data
  an uninterrupted one sees.
  """
  return data_lib.build_dataset(
      config.dataset, "train", training=True, limit=config.train_limit,
      augment=config.augment, validation_fraction=config.validation_fraction,
      max_validation_examples=config.max_validation_examples,
      epochs=config.epochs, initial_epoch=initial_epoch, **_data_args(config))


def _datasets(config, initial_epoch):
  """The training, validation (or None) and test pipelines, and infos.

  Returns:
    `(train_ds, validation_ds, test_ds, train_info, test_info)`;
    `train_info.num_examples` counts the examples fitted ("train") and, when
    there are any, those held out ("validation").
  """
  train_ds, train_info = _train_dataset(config, initial_epoch)
  n_train = train_info.num_examples["train"]
  n_validation = train_info.num_examples.get("validation", 0)
  validation_ds = None
  if n_validation:
    validation_ds, _ = data_lib.build_dataset(
        config.dataset, "validation", training=False,
        limit=config.train_limit,
        validation_fraction=config.validation_fraction,
        max_validation_examples=config.max_validation_examples,
        **_data_args(config))
  test_ds, test_info = data_lib.build_dataset(
      config.dataset, "test", training=False, limit=config.test_limit,
      **_data_args(config))
  if n_train < config.batch_size:
    raise ValueError(f"config.batch_size ({config.batch_size}) exceeds the "
                     f"{n_train} training examples fitted.")
  logging.info("Data: %s, %d train (fitted) / %d validation / %d test "
               "examples.", config.dataset, n_train, n_validation,
               test_info.num_examples["test"])
  if not n_validation:
    logging.warning("No validation split (config.validation_fraction = %s, "
                    "max_validation_examples = %s): no best epoch is chosen, "
                    "only the final model is reported.",
                    config.validation_fraction, config.max_validation_examples)
  return train_ds, validation_ds, test_ds, train_info, test_info


def _verbosity(chief):
  """Keras's `verbose`: a progress bar on a terminal, else a line per epoch.

  A progress bar written to a file or pipe is one carriage-return line per
  step: megabytes of log per run.
  """
  if not chief:
    return 0
  return 1 if sys.stdout.isatty() else 2


def _callbacks(config, state, dirs, csv_path, resumed, start, data):
  """The fit callbacks; those adding figures to the logs come first.

  `data` is `(validation_ds or None, test_ds)`, for the frontier's rows.
  """
  # First, so that no later callback sees a broken step.
  cbs = [lilnetx_tf.StopOnNonFinite()]
  if config.deterministic:
    cbs.append(callbacks_lib.EpochRandomness(config.seed))
  if config.frontier:  # Before the warm-up, which ramps its lambda_I up.
    named = dict(zip(("validation", "test"), data))
    cbs.append(lilnetx_tf.Frontier(
        config.frontier, dirs.path("frontier"),
        data={k: v for k, v in named.items() if v is not None}))
  if not config.vanilla:
    cbs += [lilnetx_tf.RateWarmup(
        config.rate_warmup_epochs,
        formula="reference" if config.reference else "linear"),
            lilnetx_tf.CompressionLogger(coded=config.coded_size_every_epoch)]
  cbs.append(callbacks_lib.LearningRateLogger())
  if dirs.chief:
    # Explicit, so that its end-of-epoch line precedes our summary line.
    cbs.append(callbacks_lib.ProgbarLogger())
  cbs += [
      keras.callbacks.CSVLogger(csv_path, append=resumed),
      callbacks_lib.EpochTensorBoard(dirs.path("tensorboard")),
  ]
  if config.log_histograms:
    cbs.append(callbacks_lib.LatentHistograms(
        dirs.path("tensorboard", "histograms")))
  cbs += [callbacks_lib.EpochSummary(config.epochs, start), state]
  return cbs


def _evaluate(model, ds):
  result = model.evaluate(ds, return_dict=True, verbose=0)
  return float(result["accuracy"]), float(result["loss"])


def _selected_figures(config, final, state, dirs, test_ds):
  """Figures of the model of the best validation accuracy (`best.keras`).

  Its test accuracy is measured here, on the test split, once.
  """
  best_epoch = int(state.best_epoch.numpy())
  if best_epoch == final["epoch"]:
    selected = dict(final)  # The same weights as the final model.
  else:
    best_model = keras.models.load_model(dirs.path("best.keras"))
    selected, _ = report.model_figures(best_model, config.vanilla,
                                       dirs.path("best.lnx"))
    selected["test_accuracy"], _ = _evaluate(best_model, test_ds)
  selected.pop("test_loss", None)
  # The value that selected it, as measured during training.
  selected.update(epoch=best_epoch,
                  validation_accuracy=float(state.best.numpy()))
  return selected


def _final_report(config, model, data, state, dirs, infos):
  """Evaluates, measures and writes metrics.json and report.png.

  `data` is `(validation_ds or None, test_ds)`.
  """
  validation_ds, test_ds = data
  test_accuracy, test_loss = _evaluate(model, test_ds)
  validation = (_evaluate(model, validation_ds) if validation_ds is not None
                else None)
  if not dirs.chief:
    return None
  epochs = int(state.epoch.numpy())
  faults.kill_point("model.lnx", epochs)
  final, layers = report.model_figures(model, config.vanilla,
                                       dirs.path("model.lnx"))
  final.update(epoch=epochs, test_accuracy=test_accuracy, test_loss=test_loss)
  best = None
  if validation is not None:
    final["validation_accuracy"] = validation[0]
    best = _selected_figures(config, final, state, dirs, test_ds)
  train_info, test_info = infos
  metrics = dict(
      model=config.model, dataset=config.dataset, vanilla=config.vanilla,
      epochs=epochs, train_examples=train_info.num_examples["train"],
      validation_examples=train_info.num_examples.get("validation", 0),
      test_examples=test_info.num_examples["test"],
      train_wall_seconds=float(state.seconds.numpy()), final=final, best=best,
      layers=layers)
  report.write_json(dirs.path("metrics.json"), metrics)
  report.plot_report(
      dirs.path("report.png"), layers,
      report.read_csv_log(dirs.path("log.csv")),
      f"{config.model} on {config.dataset}"
      f"{' (vanilla)' if config.vanilla else ' (LilNetX)'}: "
      f"{100 * final['test_accuracy']:.2f}% test accuracy")
  size = final.get("coded_bytes", final["float32_bytes"])
  if best is None:
    selection = "no validation split, no epoch selected"
  else:
    selection = (f"selected on validation: epoch {best['epoch']}, validation "
                 f"accuracy {100 * best['validation_accuracy']:.2f}%, test "
                 f"accuracy {100 * best['test_accuracy']:.2f}%")
  logging.info(
      "Done: %d epochs, final model's test accuracy %.2f%% (%s), %s "
      "%d bytes, slice sparsity %.1f%%, zero weights %.1f%%, MACs %.1f%% of "
      "dense, %.0f s of training. Outputs in %s.", metrics["epochs"],
      100 * final["test_accuracy"], selection,
      "float32 kernels" if config.vanilla else "coded latents", size,
      100 * final["slice_sparsity"], 100 * final["weight_sparsity"],
      100 * final["macs_ratio"],
      metrics["train_wall_seconds"], dirs.workdir)
  if config.frontier:
    _frontier_report(config, dirs)
  return metrics


def _frontier_report(config, dirs):
  """The frontier's table (logged, frontier.txt) and plot (frontier.png)."""
  with open(dirs.path("frontier", frontier_lib.ROWS_FILE)) as f:
    rows = json.load(f)["rows"]
  table = report.frontier_table(rows)
  atomic_write(dirs.path("frontier", "frontier.txt"), table + "\n")
  report.plot_frontier(dirs.path("frontier", "frontier.png"), rows,
                       f"{config.model} on {config.dataset}: one run")
  logging.info("Frontier (%s):\n%s", dirs.path("frontier"), table)


def run(config, workdir, extra_callbacks=()):
  """Trains (or resumes, or reports on) the run in `workdir`.

  Args:
    config: A training config (see `train/configs/base.py`).
    workdir: Directory of the run's outputs; created if missing.
    extra_callbacks: More Keras callbacks (e.g. for tests), run first.

  Returns:
    The metrics dict written to `metrics.json` (None on non-chief workers).

  Raises:
    ValueError: For an invalid config or data that does not fit it.
  """
  start = time.time()
  registry.check_config(config)
  strategy = distribute.make_strategy(config.strategy, config.cpu_devices,
                                      config.tpu)
  dirs = distribute.WorkerDirs(workdir, distribute.is_chief(strategy))
  if strategy.num_replicas_in_sync > 1:
    logging.info("%s strategy: %d replicas (%s).", config.strategy,
                 strategy.num_replicas_in_sync, type(strategy).__name__)
  # Every worker reads the chief's checkpoints, config and metrics.
  checkpoints = os.path.join(workdir, "checkpoints")
  epochs_done = callbacks_lib.RunCheckpoint.epochs_done(checkpoints)
  metrics_path = os.path.join(workdir, "metrics.json")
  if epochs_done:
    _check_resumed_config(os.path.join(workdir, "config.json"), config)
  if epochs_done >= config.epochs and os.path.exists(metrics_path):
    logging.info("Run in %s already finished (%d/%d epochs, see %s); nothing "
                 "to do.", workdir, epochs_done, config.epochs, metrics_path)
    dirs.cleanup()
    with open(metrics_path) as f:
      return json.load(f)

  if config.deterministic:
    # Process-wide: with the seed, every op gives the same result each run.
    tf.config.experimental.enable_op_determinism()
  keras.utils.set_random_seed(config.seed)
  initial_epoch = min(epochs_done, config.epochs)
  train_ds, validation_ds, test_ds, train_info, test_info = _datasets(
      config, initial_epoch)
  steps_per_epoch = train_info.num_examples["train"] // config.batch_size
  with strategy.scope():
    model = registry.build_model(config, train_info, steps_per_epoch,
                                 resuming=initial_epoch > 0)
    state = callbacks_lib.RunCheckpoint(
        model, read_dir=checkpoints, write_dir=dirs.path("checkpoints"),
        model_dir=dirs.output, max_to_keep=config.keep_checkpoints)
  epochs_done = state.restore()
  if min(epochs_done, config.epochs) != initial_epoch:
    # The latest checkpoint was unreadable and an older one restored.
    train_ds, _ = _train_dataset(config, min(epochs_done, config.epochs))
  atomic_write(dirs.path("config.json"), config.to_json(indent=2) + "\n")
  if epochs_done < config.epochs:
    csv_path = dirs.path("log.csv")
    if epochs_done:
      _truncate_csv(csv_path, epochs_done)
      logging.info("Resuming at epoch %d/%d.", epochs_done + 1, config.epochs)
    elif os.path.exists(csv_path):
      os.remove(csv_path)
    # A resumed `fit` keeps the restored priors (see `LilNetXModel.fit`).
    model.fit(train_ds, validation_data=validation_ds, epochs=config.epochs,
              initial_epoch=epochs_done, steps_per_epoch=steps_per_epoch,
              callbacks=list(extra_callbacks) + faults.mid_epoch_kill() +
              _callbacks(config, state, dirs, csv_path, epochs_done > 0,
                         start, (validation_ds, test_ds)),
              verbose=_verbosity(dirs.chief))
  elif (isinstance(model, lilnetx_tf.LilNetXModel)
        and model.initial_prior_steps):
    # Killed after the last epoch, before the report: the priors as `fit`
    # leaves them (the checkpoint precedes its final prior fit).
    model.fit_priors()
  metrics = _final_report(config, model, (validation_ds, test_ds), state, dirs,
                          (train_info, test_info))
  distribute.barrier(strategy)
  dirs.cleanup()
  return metrics
