"""LeNet-5 (Caffe variant, 431K weights) on MNIST, 10 epochs.

  python -m train --config=train/configs/mnist_lenet5.py \
      --workdir=/tmp/runs/mnist_lenet5 --config.data_dir=../shared/data/mnist

`--config=...mnist_lenet5.py:RECIPE` picks another recipe of the benchmark
(`bench/compare.py`): `float` (the plain float network, the baseline),
`finetune` (a third of the budget from a trained float model,
`--config.init_weights=BASELINE/model.keras`) or `distill` (the whole budget
from it, with `--config.teacher` the same file).
"""

import math

from train.configs import base

RECIPES = ("scratch", "float", "finetune", "distill")


def get_config(recipe="scratch"):
  if recipe not in RECIPES:
    raise ValueError(f"mnist_lenet5: unknown recipe {recipe!r}; choose one "
                     f"of {', '.join(RECIPES)}.")
  config = base.get_config()
  config.model = "lenet5"
  config.dataset = "mnist"
  config.batch_size = 128
  config.epochs = 10
  config.warmup_epochs = 1
  # All 60,000 training examples, as the published MNIST results train: no
  # validation split (the final epoch's model is the result).
  config.validation_fraction = 0.0
  # The strongest rate weight of the benchmark's sweep (1, 2, 4) that stays
  # within a tenth of a point of the float network (docs/benchmarks.md).
  config.lambda_rate = 2.0
  config.rate_warmup_epochs = 1
  # The compression terms and prior steps on one step in 4, scaled by 4:
  # this network's plain step is short next to their per-weight cost, and
  # sizes and accuracies match every-step training (docs/benchmarks.md).
  config.compression_interval = 4
  if recipe == "float":
    config.vanilla = True
    config.weight_decay = 0.0  # Plain Keras, as a user would train it.
  elif recipe == "finetune":
    config.epochs = math.ceil(config.epochs / 3)
  return config
