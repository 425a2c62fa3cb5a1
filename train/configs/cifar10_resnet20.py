"""ResNet-20 on CIFAR-10, width 4: the paper's main CIFAR model.

Offline, from the JPEG tree (decoded once, then cached):

  python -m train --config=train/configs/cifar10_resnet20.py \
      --workdir=/tmp/runs/cifar10_resnet20 \
      --config.data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz

The standard ResNet-20 (0.27M weights) is width 1:
`--config.model_options.width=1`; `cifar10_resnet20_15ep` is its recipe for a
15-epoch budget. Without data_dir, TFDS's cifar10 is used.
"""

import ml_collections

from train.configs import base


def get_config():
  config = base.get_config()
  config.model = "resnet20"
  config.model_options = ml_collections.ConfigDict({"width": 4})
  config.dataset = "cifar10"
  config.batch_size = 256
  config.epochs = 200
  # Finer latents (about 9 integers across instead of 5) and a learning rate
  # that moves them as fast, relative to their spread, as Adam at 1e-2 moves
  # a float kernel: the best of a short width-1 sweep (docs/benchmarks.md).
  config.latent_init_bound = 4.0
  config.learning_rate = 6e-2
  return config
