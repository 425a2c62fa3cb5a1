"""ResNet-20 (width 1) on CIFAR-10 in 15 epochs: the benchmark's recipes.

From scratch (the default), the official implementation's objective and
initialisation (`reference`: latents start on about three integers under
random decoders; the rate is per kernel slice, hence the small lambda_I), at
a learning rate that moves the latents within the short budget:

  python -m train --config=train/configs/cifar10_resnet20_15ep.py \
      --workdir=/tmp/runs/cifar10_15ep \
      --config.data_dir=../shared/data/cifar10/cifar10-jpeg.tar.gz

`--config=...cifar10_resnet20_15ep.py:RECIPE` picks another recipe of the
same budget: `float` (the plain float network, the baseline), `finetune` (a
third of the budget from a trained float model,
`--config.init_weights=BASELINE/model.keras`) or `distill` (the whole budget
from it, with `--config.teacher` the same file). The fine-tunes keep
`cifar10_resnet20`'s own objective and initialisation.
"""

import math

from train.configs import cifar10_resnet20

RECIPES = ("scratch", "float", "finetune", "distill")
EPOCHS = 15


def get_config(recipe="scratch"):
  if recipe not in RECIPES:
    raise ValueError(f"cifar10_resnet20_15ep: unknown recipe {recipe!r}; "
                     f"choose one of {', '.join(RECIPES)}.")
  config = cifar10_resnet20.get_config()
  config.model_options.width = 1
  config.epochs = EPOCHS
  # Every training image is fitted; the final model is the result.
  config.validation_fraction = 0.0
  # The latents are range coded once, at the end.
  config.log_histograms = False
  config.coded_size_every_epoch = False
  if recipe == "scratch":
    config.reference = True
    config.latent_init_bound = 3.0
    config.learning_rate = 8e-2
    config.lambda_rate = 4e-2
  elif recipe == "float":
    # Plain Keras at Adam's usual rate, as a user would train it.
    config.vanilla = True
    config.weight_decay = 0.0
    config.learning_rate = 1e-2
  else:
    # The latents start as the trained float kernels: one warm-up epoch.
    config.warmup_epochs = 1
    if recipe == "finetune":
      config.epochs = math.ceil(EPOCHS / 3)
      config.learning_rate = 3e-2
      config.lambda_rate = 10.0
    else:
      config.learning_rate = 2e-2
      config.lambda_rate = 4.5
  return config
