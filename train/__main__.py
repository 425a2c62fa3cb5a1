"""Trains a model with LilNetX (or plainly, `vanilla`) from a config file.

  python -m train --config=train/configs/mnist_lenet5.py \
      --workdir=/tmp/runs/mnist_lenet5 --config.data_dir=../shared/data/mnist
  lilnetx-train --config=mnist_lenet5 --workdir=... (installed with pip)

`--config` takes a config file's path, or the name of a shipped config
(`train/configs/NAME.py`).

Every config field can be overridden, e.g. `--config.lambda_rate=3e-4`.
Re-running the same command resumes an interrupted run; a finished run is only
reported. See `train/configs/base.py` for the fields.
"""

import importlib
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

import lilnetx_tf
from . import loop
from . import registry

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file with get_config(), e.g. "
    "train/configs/cifar10_resnet20.py; fields overridable as --config.FIELD.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for everything the run writes; re-running "
    "with the same directory resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  try:
    registry.check_config(_CONFIG.value)
    loop.check_workdir(_CONFIG.value, _WORKDIR.value)
  except ValueError as e:
    sys.exit(f"Invalid config: {e}")
  try:
    loop.run(_CONFIG.value, _WORKDIR.value)
  except registry.ConfigError as e:  # Found when building the model.
    sys.exit(f"Invalid config: {e}")
  except FileNotFoundError as e:  # Missing data files: no traceback needed.
    sys.exit(f"Missing data: {e}")
  except lilnetx_tf.NonFiniteError as e:
    sys.exit(f"Training stopped: {e} The checkpoints of the finished epochs "
             f"in {_WORKDIR.value} are intact: fix the cause (e.g. a lower "
             "learning rate) and re-run the same command to resume.")


def _with_shipped_config(argv):
  """`argv` with `--config=NAME` replaced by the shipped config's path."""
  configs = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "configs")
  out = []
  for arg in argv:
    if arg.startswith("--config="):
      value, _, options = arg[len("--config="):].partition(":")
      shipped = os.path.join(configs, value + ".py")
      if (not os.path.exists(value) and os.sep not in value
          and os.path.exists(shipped)):
        arg = "--config=" + shipped + (":" + options if options else "")
    out.append(arg)
  return out


def run():
  """The `lilnetx-train` console script: `python -m train` when installed.

  Config files are loaded by path and start from `train.configs.base` (the
  shipped ones and users' own alike); installed, that package is
  `lilnetx_tf_cli.train`, so the name `train` is bound to it for this
  process (nothing named `train` is installed).
  """
  if __package__ != "train":
    sys.modules.setdefault("train", importlib.import_module(__package__))
  app.run(main, argv=_with_shipped_config(sys.argv))


if __name__ == "__main__":
  run()
