"""MobileNetV2 (alpha 1.0) on ImageNet; data as in `imagenet_resnet18`.

  python -m train --config=train/configs/imagenet_mobilenet_v2.py \
      --workdir=/tmp/runs/imagenet_mobilenet_v2 --config.data_dir=/data/imagenet

LilNetX compresses its 3x3 depthwise kernels too (group `depthwise3x3`, under
the slice sparsity prior by default).
"""

import ml_collections

from train.configs import imagenet_resnet18


def get_config():
  config = imagenet_resnet18.get_config()
  config.model = "mobilenet_v2"
  config.model_options = ml_collections.ConfigDict({"alpha": 1.0})
  return config
