"""Training configs shaped for the benchmarks, shared by their scripts.

`bench/compare.py` and `bench/train_time.py` train a task's LilNetX config
and its float baseline with `train.loop`; both shape the configs here, so
that they train the same baseline on the same budget.
"""

__all__ = ["float_baseline", "with_budget"]


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
