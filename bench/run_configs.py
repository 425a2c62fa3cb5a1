"""Training configs shaped for the benchmarks, shared by their scripts.

`bench/compare.py` and `bench/train_time.py` train a task's LilNetX config
and its float baseline with `train.loop`; both shape the configs here, so
that they train the same baseline on the same budget.

`TASKS` names each benchmark task's config module and the rate weights its
table shows; every hyper-parameter comes from the config's recipes
(`get_config(recipe)`, one of `RECIPES`), and `recipe_config` sets only the
budget (`bench/tables.py` and the tests read them too, without TensorFlow).
"""

import math

from train.configs import cifar10_resnet20_15ep
from train.configs import mnist_lenet300
from train.configs import mnist_lenet5

__all__ = ["RECIPES", "TASKS", "config_path", "finetune_epochs",
           "float_baseline", "rates_of", "recipe_config", "with_budget"]

RECIPES = ("scratch", "float", "finetune", "distill")

# Each task: its config module, the rate weights of its from-scratch rows
# (the config's own among them) and, where more than the config's, of its
# fine-tunes.
TASKS = {
    "mnist_lenet5": dict(config=mnist_lenet5, rates=(1.0, 2.0, 4.0)),
    "mnist_lenet300": dict(config=mnist_lenet300, rates=(0.5, 0.7, 1.0)),
    "cifar10_resnet20": dict(config=cifar10_resnet20_15ep,
                             rates=(3e-2, 4e-2, 6e-2),
                             finetune_rates=(10.0, 30.0)),
}


def with_budget(config, epochs):
  """`config` set to `epochs`, its warm-ups capped, no per-epoch extras.

  Args:
    config: A training config (`ml_collections.ConfigDict`), changed in place.
    epochs: The epoch budget, >= 1.

  Returns:
    `config`.
  """
  config.epochs = epochs
  # Warm-ups longer than the budget: the LR one is an error, and a rate
  # warm-up spanning every epoch would train LilNetX at lambda_I = 0 in the
  # first one, i.e. one-epoch runs at every rate weight alike.
  config.warmup_epochs = min(config.warmup_epochs, epochs)
  config.rate_warmup_epochs = min(config.rate_warmup_epochs, epochs - 1)
  # Range coding every epoch is logging the baseline's run has no
  # counterpart of; the final report range codes the latents anyway.
  config.log_histograms = False
  config.coded_size_every_epoch = False
  return config


def float_baseline(config, learning_rate=None):
  """The plain float model's config: `config` as `vanilla`, no weight decay.

  Trained by the same loop as LilNetX (schedule, data pipeline, callbacks),
  so that the two training times compare the methods, not two harnesses.

  Args:
    config: The task's LilNetX config (not changed).
    learning_rate: Peak learning rate; default the config's.

  Returns:
    A new config.
  """
  config = config.copy_and_resolve_references()
  config.vanilla = True
  config.weight_decay = 0.0  # Plain Keras, as a user would train it.
  if learning_rate is not None:
    config.learning_rate = learning_rate
  return config


def finetune_epochs(epochs):
  """Epochs of LilNetX fine-tuning of the baseline: a third of the budget."""
  return max(1, math.ceil(epochs / 3))


def recipe_config(task, recipe, epochs=None):
  """A recipe of the task's config on an epoch budget.

  Args:
    task: A key of `TASKS`.
    recipe: One of `RECIPES`.
    epochs: Epoch budget E, or None for the config's; the `finetune` recipe
      trains ceil(E / 3) epochs.

  Returns:
    The `ml_collections.ConfigDict`, through `with_budget`.
  """
  module = TASKS[task]["config"]
  if epochs is None:
    epochs = module.get_config().epochs
  return with_budget(
      module.get_config(recipe),
      finetune_epochs(epochs) if recipe == "finetune" else epochs)


def config_path(task):
  """The task's config file, relative to the repository root."""
  return f"train/configs/{TASKS[task]['config'].__name__.split('.')[-1]}.py"


def rates_of(task, recipe):
  """The rate weights of the task's rows of `recipe` (not `float`).

  The task's own for `scratch` (and `finetune_rates` for `finetune`), else
  the recipe's config's.
  """
  spec = TASKS[task]
  if recipe == "scratch":
    return spec["rates"]
  if recipe == "finetune" and "finetune_rates" in spec:
    return spec["finetune_rates"]
  return (spec["config"].get_config(recipe).lambda_rate,)
