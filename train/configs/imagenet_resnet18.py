"""ResNet-18 on ImageNet (ILSVRC 2012), 224x224.

With TFDS (ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in the manual
directory, prepared once):

  python -m train --config=train/configs/imagenet_resnet18.py \
      --workdir=/tmp/runs/imagenet_resnet18 --config.data_dir=/data/imagenet

Or from an extracted image tree `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`
(streamed from files): `--config.data_dir=/data/imagenet-tree`.
"""

from train.configs import base


def get_config():
  config = base.get_config()
  config.model = "resnet18"
  config.dataset = "imagenet2012"
  config.batch_size = 128
  config.epochs = 90
  config.coded_size_every_epoch = False
  return config
