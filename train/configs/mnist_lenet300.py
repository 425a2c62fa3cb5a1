"""LeNet-300-100 (267K weights) on MNIST, 10 epochs.

  python -m train --config=train/configs/mnist_lenet300.py \
      --workdir=/tmp/runs/mnist_lenet300 --config.data_dir=../shared/data/mnist

`--config=...mnist_lenet300.py:RECIPE` picks another recipe of the
benchmark (`bench/compare.py`), as in `mnist_lenet5`: `float`, `finetune`
or `distill`.
"""

import math

from train.configs import base

RECIPES = ("scratch", "float", "finetune", "distill")


def get_config(recipe="scratch"):
  if recipe not in RECIPES:
    raise ValueError(f"mnist_lenet300: unknown recipe {recipe!r}; choose "
                     f"one of {', '.join(RECIPES)}.")
  config = base.get_config()
  config.model = "lenet_300_100"
  config.dataset = "mnist"
  config.batch_size = 128
  config.epochs = 10
  config.warmup_epochs = 1
  # All 60,000 training examples, as published MNIST results train: no
  # validation split (the final epoch's model is the result).
  config.validation_fraction = 0.0
  # Latents at twice the default learning rate reach more zeros in 10 epochs
  # at the same accuracy (docs/benchmarks.md).
  config.learning_rate = 2e-2
  # The most accurate rate weight of the benchmark's sweep (0.5, 0.7, 1)
  # whose file is 10x smaller than any tfmot file within a tenth of a point
  # of its accuracy (docs/benchmarks.md).
  config.lambda_rate = 0.7
  # The compression terms and prior steps on one step in 8, scaled by 8:
  # this network's plain step is short next to their per-weight cost, and
  # sizes and accuracies match every-step training (docs/benchmarks.md).
  config.compression_interval = 8
  if recipe == "float":
    config.vanilla = True
    config.weight_decay = 0.0  # Plain Keras, as a user would train it.
  if recipe != "scratch":
    # The float network, and the latents that start as its kernels, train
    # at the default rate.
    config.learning_rate = 1e-2
  if recipe == "finetune":
    config.epochs = math.ceil(config.epochs / 3)
  return config
