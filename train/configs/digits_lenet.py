"""LeNet-300-100 on scikit-learn's embedded 8x8 digits: seconds, no files.

For tests and demos:

  python -m train --config=train/configs/digits_lenet.py --workdir=/tmp/digits
"""

from train.configs import base


def get_config():
  config = base.get_config()
  config.model = "lenet_300_100"
  config.dataset = "digits"
  config.batch_size = 64
  config.epochs = 5
  config.warmup_epochs = 1
  config.log_histograms = False
  return config
