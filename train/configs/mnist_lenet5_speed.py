"""LeNet-5 on MNIST for size and speed at once, 10 epochs.

  python -m train --config=train/configs/mnist_lenet5_speed.py \
      --workdir=/tmp/runs/lenet5_speed --config.data_dir=../shared/data/mnist

The shipped recipe (`mnist_lenet5.py`) with the structured-sparsity term on
whole output channels and on slices together: zero channels are what export
removes, so what makes the TFLite model faster on every runtime, and zero
slices inside the kept channels keep the file small. lambda_rho is the
largest of the benchmark's sweep that stays within a few tenths of a point of
the size recipe (docs/benchmarks.md, "Structure and speed").
"""

from train.configs import mnist_lenet5


def get_config():
  config = mnist_lenet5.get_config()
  config.sparsity_structure = "slice+out_channel"
  config.lambda_sparsity = 1e-4
  return config
