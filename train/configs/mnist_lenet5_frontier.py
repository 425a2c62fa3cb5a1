"""LeNet-5 on MNIST: the size / accuracy frontier from one run of 15 epochs.

  python -m train --config=train/configs/mnist_lenet5_frontier.py \
      --workdir=/tmp/runs/lenet5_frontier --config.data_dir=../shared/data/mnist

The shipped LeNet-5 recipe (`mnist_lenet5.py`) for 9 epochs at lambda_I 1,
then two epochs each at 2, 4 and 8: four `.lnx` files in RUN/frontier/, from
the most accurate to the smallest, with their test accuracy (frontier.txt,
frontier.png). The learning rate decays to zero in each segment and restarts
at 0.3 of its peak, so each file is written at a rate of zero, as a single
run's is. 1.5 times the shipped recipe's epochs.
"""

from train.configs import mnist_lenet5


def get_config():
  config = mnist_lenet5.get_config()
  config.epochs = 15
  config.frontier = "1:9,2:2,4:2,8:2"
  config.frontier_restart = 0.3
  return config
