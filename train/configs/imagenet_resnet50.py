"""ResNet-50 on ImageNet (ILSVRC 2012); data as in `imagenet_resnet18`.

  python -m train --config=train/configs/imagenet_resnet50.py \
      --workdir=/tmp/runs/imagenet_resnet50 --config.data_dir=/data/imagenet
"""

from train.configs import imagenet_resnet18


def get_config():
  config = imagenet_resnet18.get_config()
  config.model = "resnet50"
  return config
