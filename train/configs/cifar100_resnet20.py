"""ResNet-20 (width 4) on CIFAR-100.

  python -m train --config=train/configs/cifar100_resnet20.py \
      --workdir=/tmp/runs/cifar100_resnet20 [--config.data_dir=TREE_OR_TAR_GZ]

Without data_dir, TFDS's cifar100 is used (downloaded on first use).
"""

from train.configs import cifar10_resnet20


def get_config():
  config = cifar10_resnet20.get_config()
  config.dataset = "cifar100"
  return config
