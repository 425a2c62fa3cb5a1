"""Checks a training config and builds its model, by registry names.

Models come from `lilnetx_tf.models` and datasets from `lilnetx_tf.data`, so
the lists of valid names in error messages are always those registries'.
`check_config` runs before anything slow (TensorFlow devices, data), so a typo
fails at once.
"""

import inspect
import math
import os

import tensorflow as tf
from lilnetx_tf.compat import keras

import lilnetx_tf
from lilnetx_tf import data as data_lib
from lilnetx_tf.compressed import frontier as frontier_lib
from lilnetx_tf import models
from lilnetx_tf.method import sparsity
from lilnetx_tf.data import registry as data_registry
from . import distribute
from .schedule import SegmentCosineDecay
from .schedule import warmup_cosine_decay

__all__ = ["ConfigError", "build_model", "check_config", "sparsity_groups"]


def _check_choice(field, value, valid):
  if value not in valid:
    raise ValueError(f"Unknown {field} {value!r}; valid names: "
                     f"{', '.join(valid)}.")


def _check_number(config, field, low, integer=False, optional=False,
                  strict=False):
  value = config[field]
  if value is None and optional:
    return
  ok = isinstance(value, int) if integer else isinstance(value, (int, float))
  ok = ok and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (value > low if strict else value >= low)
  if not ok:
    bound = f"{'>' if strict else '>='} {low}"
    kind = "an integer" if integer else "a finite number"
    raise ValueError(f"config.{field} must be {kind} {bound}"
                     f"{' or None' if optional else ''}, got {value!r}.")


def sparsity_groups(config):
  """The `sparsity_groups` field as a list, or None for the model's default."""
  names = [g.strip() for g in config.sparsity_groups.split(",") if g.strip()]
  return names or None


def check_config(config):
  """Validates a training config; cheap, and before any TensorFlow work.

  Args:
    config: The `ml_collections.ConfigDict`.

  Raises:
    ValueError: Naming the bad field and value, and the valid choices.
  """
  _check_choice("model", config.model, models.model_names())
  _check_choice("dataset", config.dataset, data_lib.dataset_names())
  _check_choice("data_source", config.data_source, data_registry.SOURCES)
  _check_choice("strategy", config.strategy, distribute.STRATEGIES)
  sparsity.check_structure(config.sparsity_structure)
  _check_choice("sparsity_norm", config.sparsity_norm, sparsity.NORMS)
  builder = models.MODELS[config.model]
  valid = [p.name for p in inspect.signature(builder).parameters.values()
           if p.kind is inspect.Parameter.KEYWORD_ONLY]
  for option in config.model_options:
    if option not in valid:
      raise ValueError(
          f"Unknown model option {option!r} for model {config.model!r}; valid "
          f"options: {', '.join(valid) if valid else 'none'}.")
  for field in ("batch_size", "epochs"):
    _check_number(config, field, 1, integer=True)
  for field in ("train_limit", "test_limit"):
    _check_number(config, field, 1, integer=True, optional=True)
  for field in ("warmup_epochs", "rate_warmup_epochs", "cpu_devices", "seed",
                "prior_steps"):
    _check_number(config, field, 0, integer=True)
  for field in ("keep_checkpoints", "compression_interval"):
    _check_number(config, field, 1, integer=True)
  _check_number(config, "grid_bits", -1, integer=True)
  for field in ("learning_rate", "prior_learning_rate", "frontier_restart",
                "distillation_temperature"):
    _check_number(config, field, 0, strict=True)
  for field in ("lambda_rate", "lambda_sparsity", "weight_decay",
                "latent_init_bound", "distillation_weight"):
    _check_number(config, field, 0)
  fraction = config.validation_fraction
  if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
      or not 0 <= fraction < 1):
    raise ValueError("config.validation_fraction must be a number in [0, 1), "
                     f"got {fraction!r}.")
  _check_number(config, "max_validation_examples", 0, integer=True)
  if not isinstance(config.deterministic, bool):
    raise ValueError("config.deterministic must be True or False, got "
                     f"{config.deterministic!r}.")
  if config.teacher and config.vanilla:
    raise ValueError("config.teacher needs a LilNetX run; a vanilla run "
                     "trains the plain model on its labels alone.")
  if config.frontier:
    _check_frontier(config)
  if config.warmup_epochs > config.epochs:
    raise ValueError(f"config.warmup_epochs ({config.warmup_epochs}) exceeds "
                     f"config.epochs ({config.epochs}).")


def _check_frontier(config):
  if config.vanilla:
    raise ValueError("config.frontier needs a LilNetX run, not a vanilla one.")
  try:
    schedule = frontier_lib.parse_schedule(config.frontier)
  except ValueError as e:
    raise ValueError(f"config.frontier: {e}") from None
  epochs = sum(e for _, e in schedule)
  if epochs != config.epochs:
    raise ValueError(f"config.frontier trains {epochs} epochs, config.epochs "
                     f"is {config.epochs}: make them equal.")


def _kernel_l2(model, weight_decay):
  """The vanilla model's weight decay: L2 on the kernels LilNetX would code."""
  kernels = [layer.weights[0] for layer in model.layers
             if isinstance(layer, (keras.layers.Conv2D,
                                   keras.layers.DepthwiseConv2D,
                                   keras.layers.Dense))]
  return lambda: weight_decay * tf.add_n(
      [tf.reduce_sum(tf.square(k)) for k in kernels])


class ConfigError(ValueError):
  """Settings that only building the model shows to be impossible.

  For example `sparsity_groups` naming a kernel group the model does not
  have. Raised before anything is trained or written.
  """


def build_model(config, info, steps_per_epoch, resuming=False):
  """Builds and compiles the run's model; call inside `strategy.scope()`.

  Args:
    config: A checked config.
    info: The training split's `lilnetx_tf.data.DatasetInfo`.
    steps_per_epoch: Optimizer steps per epoch (for the LR schedule).
    resuming: Whether a checkpoint will overwrite every weight; then
      `config.init_weights` is not read (the file may be gone).

  Returns:
    A compiled `LilNetXModel`, or with `config.vanilla` the plain zoo model.

  Raises:
    ConfigError: if the model or its LilNetX form refuses the settings.
  """
  try:
    model = _network(config, info, resuming)
    teacher = _load_teacher(config.teacher, info) if config.teacher else None
  except ValueError as e:
    raise ConfigError(str(e)) from e
  warmup_steps = config.warmup_epochs * steps_per_epoch
  if config.frontier:  # Each segment ends at a rate of zero, as a run does.
    schedule = SegmentCosineDecay(
        config.learning_rate,
        [e * steps_per_epoch
         for _, e in frontier_lib.parse_schedule(config.frontier)],
        warmup_steps, restart=config.frontier_restart)
  else:
    schedule = warmup_cosine_decay(
        config.learning_rate, total_steps=config.epochs * steps_per_epoch,
        warmup_steps=warmup_steps)
  return _compiled(model, config, schedule, teacher)


def _network(config, info, resuming):
  """The zoo model, plain or made compressible as the config says."""
  network = models.build_model(config.model, info.input_shape,
                               info.num_classes,
                               **config.model_options.to_dict())
  if config.init_weights and not resuming:
    _load_float_weights(network, config.init_weights)
  if config.vanilla:
    if config.weight_decay:
      network.add_loss(_kernel_l2(network, config.weight_decay))
    return network
  return lilnetx_tf.compressible(
      network, init_from_weights=bool(config.init_weights),
      lambda_rate=config.lambda_rate,
      lambda_sparsity=config.lambda_sparsity,
      weight_decay=config.weight_decay,
      sparsity_structure=config.sparsity_structure,
      sparsity_norm=config.sparsity_norm,
      sparsity_groups=sparsity_groups(config),
      prior_steps=config.prior_steps,
      compression_interval=config.compression_interval,
      reference=config.reference,
      grid_bits=None if config.grid_bits == -1 else config.grid_bits,
      latent_init_bound=config.latent_init_bound, seed=config.seed)


def _load_float_model(path, field):
  """The plain Keras model saved at `path` (the value of config.`field`).

  Raises:
    ValueError: if there is no such file or it holds a LilNetX model.
  """
  if not os.path.isfile(path):
    raise ValueError(f"{field}: no file {path!r}.")
  trained = keras.models.load_model(path, compile=False)
  if isinstance(trained, lilnetx_tf.LilNetXModel):
    raise ValueError(f"{field}: {path!r} holds a LilNetX model; "
                     "give a float model (a vanilla run's model.keras).")
  return trained


def _load_teacher(path, info):
  """The float teacher saved at `path`, if it fits the run's data.

  Raises:
    ValueError: if there is no such file, it holds a LilNetX model, or its
      inputs or class count differ from the dataset's.
  """
  teacher = _load_float_model(path, "config.teacher")
  inputs, outputs = teacher.input_shape, teacher.output_shape
  if not (isinstance(inputs, tuple) and isinstance(outputs, tuple) and
          tf.TensorShape(inputs[1:]).is_compatible_with(info.input_shape) and
          tf.TensorShape(outputs).is_compatible_with((None, info.num_classes))):
    raise ValueError(
        f"config.teacher: {path!r} maps inputs {inputs} to outputs "
        f"{outputs}; this run's data needs {(None, *info.input_shape)} to "
        f"{(None, info.num_classes)} (logits).")
  return teacher


def _load_float_weights(network, path):
  """Sets `network`'s weights to those of the float model saved at `path`.

  Raises:
    ValueError: if the file holds no plain Keras model of the same weights.
  """
  trained = _load_float_model(path, "config.init_weights")
  shapes = [tuple(w.shape) for w in trained.weights]
  expected = [tuple(w.shape) for w in network.weights]
  if shapes != expected:
    raise ValueError(f"config.init_weights: {path!r} is not this network "
                     f"({len(shapes)} weights of shapes {shapes[:3]}..., "
                     f"expected {len(expected)}: {expected[:3]}...).")
  network.set_weights(trained.get_weights())


def _compiled(model, config, schedule, teacher=None):
  """`model`, compiled with the config's optimizers (and teacher)."""
  compile_args = dict(
      optimizer=keras.optimizers.Adam(schedule),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"])
  if not config.vanilla:
    compile_args["prior_optimizer"] = keras.optimizers.Adam(
        config.prior_learning_rate)
    if teacher is not None:
      compile_args["distillation"] = lilnetx_tf.Distillation(
          teacher, weight=config.distillation_weight,
          temperature=config.distillation_temperature)
  model.compile(**compile_args)
  # Keras 2.14 reduces step outputs with "sum" across multi-worker replicas
  # by default ("auto"); the metric values are already global there, so a
  # sum would report each worker's copy added up (accuracy above 1).
  model.distribute_reduction_method = "first"
  return model
