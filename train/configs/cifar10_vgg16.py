"""VGG-16 with batch norm on CIFAR-10.

  python -m train --config=train/configs/cifar10_vgg16.py \
      --workdir=/tmp/runs/cifar10_vgg16 \
      --config.data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz
"""

import ml_collections

from train.configs import base


def get_config():
  config = base.get_config()
  config.model = "vgg16"
  config.model_options = ml_collections.ConfigDict({"width": 1})
  config.dataset = "cifar10"
  config.batch_size = 256
  config.epochs = 200
  return config
