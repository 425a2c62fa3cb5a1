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
  # Measured: 98.03% with 15.5 KB of latents in 10 epochs (README).
  config.lambda_rate = 0.5
  return config
