"""LeNet-300-100 (267K weights) on MNIST.

  python -m train --config=train/configs/mnist_lenet300.py \
      --workdir=/tmp/runs/mnist_lenet300 --config.data_dir=../shared/data/mnist
"""

from train.configs import base


def get_config():
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
  # (lambda_rate 1: 4,323 B at 97.91%, against 6,788 B at 97.96% with 1e-2).
  config.learning_rate = 2e-2
  # Measured (10 epochs, README): 97.97-98.33% (median 98.24%) with
  # 5,700-5,964 B of coded latents over seeds 0-4; every step
  # (compression_interval 1): seed 0 98.07%, 5,938 B. Seed 0 now gives
  # 98.00% with 5,685 B (seed 1: 98.03%, 5,718 B): the training noise's op
  # seeds follow the train step's graph, and LatentDense's output scaling
  # rounds its products differently, both changed since (docs/benchmarks.md).
  config.lambda_rate = 0.7
  # The compression terms and prior steps on one step in 8, scaled by 8:
  # this network's plain step is short next to their per-weight cost, and
  # the result is the same (see the figures above).
  config.compression_interval = 8
  return config
