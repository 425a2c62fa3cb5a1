"""LeNet-5 (Caffe variant, 431K weights) on MNIST.

  python -m train --config=train/configs/mnist_lenet5.py \
      --workdir=/tmp/runs/mnist_lenet5 --config.data_dir=../shared/data/mnist
"""

from train.configs import base


def get_config():
  config = base.get_config()
  config.model = "lenet5"
  config.dataset = "mnist"
  config.batch_size = 128
  config.epochs = 10
  config.warmup_epochs = 1
  # All 60,000 training examples, as the published MNIST results train: no
  # validation split (the final epoch's model is the result).
  config.validation_fraction = 0.0
  # Measured (10 epochs, README): 99.08%, 99.13% and 99.05% test accuracy
  # with 3,642, 3,390 and 3,408 B of coded latents (seeds 0, 1, 2). Every
  # step (compression_interval 1): 99.05%, 99.06%, 99.15%; 3,636, 3,443,
  # 3,451 B. Seed 0 gave 99.04% with 3,621 B in the benchmark's row, and now
  # 99.11% with 3,662 B: the training noise's op seeds follow the train
  # step's graph, and LatentDense's output scaling rounds its products
  # differently, both changed since (docs/benchmarks.md).
  config.lambda_rate = 2.0
  config.rate_warmup_epochs = 1
  # The compression terms and prior steps on one step in 4, scaled by 4:
  # this network's plain step is short next to their per-weight cost, and
  # the result is the same (see the figures above).
  config.compression_interval = 4
  return config
