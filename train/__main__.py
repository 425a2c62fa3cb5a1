"""Trains a model with LilNetX (or plainly, `vanilla`) from a config file.

  python -m train --config=train/configs/mnist_lenet5.py \
      --workdir=/tmp/runs/mnist_lenet5 --config.data_dir=../shared/data/mnist

Every config field can be overridden, e.g. `--config.lambda_rate=3e-4`.
Re-running the same command resumes an interrupted run; a finished run is only
reported. See `train/configs/base.py` for the fields.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

import lilnetx_tf
from train import loop
from train import registry

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


if __name__ == "__main__":
  app.run(main)
