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
  # Measured (10 epochs, 55,000 training examples, README): 99.00% test
  # accuracy with 4,010 B of coded latents, a 5,794 B file.
  config.lambda_rate = 2.0
  config.rate_warmup_epochs = 1
  return config
