"""`LilNetXModel`: a Keras model trained with the LilNetX objective.

The model wraps a network of latent layers, owns one shared decoder and one
learned prior per group, and trains with plain `model.fit` on

  task loss + lambda_rate * bits / #latents
            + lambda_sparsity * sum of latent block norms
            + weight_decay * ||latents||^2,

where `bits` is the priors' differentiable bound on the latents' code length.
The task loss is a mean over examples in nats (cross-entropy), so
`lambda_rate` is the task loss one bit per latent is worth: with
`lambda_rate = 1`, shortening the average code by 0.01 bit per latent is worth
0.01 nats of mean cross-entropy. (`reference=True` divides by the number of
kernel slices instead, as the official implementation does.)

The priors do not learn from this loss: they have their own objective, the
bits of the rounded latents under them (`prior_fit_bits`, a likelihood fit
independent of `lambda_rate`), on their own optimizer (Adam at 1e-2 by
default), `prior_steps` times per training step, and `fit` fits them to the
latents before and after training. So they track the latents throughout, and
the rate term's gradient to the latents comes from a density that matches
them.
"""

import numpy as np
import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.method import distillation as distillation_lib
from lilnetx_tf.method import grid
from lilnetx_tf.method import groups
from lilnetx_tf.method import initialization
from lilnetx_tf.method import interval
from lilnetx_tf.method import model_args
from lilnetx_tf.method import prior_fit
from lilnetx_tf.method import sparsity
from lilnetx_tf.method.decoders import KernelDecoder
from lilnetx_tf.method.initialization import kernel_shape
from lilnetx_tf.method.model_args import latent_layers
from lilnetx_tf.method.priors import GroupPrior

__all__ = ["LilNetXModel", "latent_layers"]


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class LilNetXModel(interval.IntervalTraining, keras.Model):
  """Trains a network of latent layers with the LilNetX objective.

  Args:
    network: A built Keras model (functional or Sequential) containing
      latent layers (`lilnetx_tf.method.layers`).
      `lilnetx_tf.compressible` builds one from a plain Keras model.
    lambda_rate: lambda_I, weight of the rate term: nats of mean task loss
      per bit per latent (see the module docstring). Raising it makes the
      compressed model smaller. Held in a variable, so callbacks
      (e.g. `RateWarmup`) can change it and a resumed run keeps it.
    lambda_sparsity: lambda_rho, weight of the sum of latent block norms.
      Raising it creates more zero slices / channels (less computation).
    weight_decay: Weight of the squared L2 norm of the latents.
    sparsity_structure: `"slice"`, `"out_channel"`, `"in_channel"`, or
      several joined by "+" (`"slice+out_channel"`: whole channels, which
      export removes, and slices inside the kept ones).
    sparsity_norm: `"l2"`, `"l1"` or `"linf"`.
    sparsity_groups: Kernel groups the sparsity term applies to; default:
      every group with more than one kernel position (`conv3x3`,
      `depthwise3x3`, `conv5`, ...).
    decoder_initializer: `"uniform"` or `"identity"` (see `KernelDecoder`).
    latent_init_bound: Latents start uniform in +-bound (times the ratio of the
      layer's standard-init scale to its group's typical one), so they span
      about 2 * bound + 1 integers.
    prior_init_scale: Initial width of the priors' densities.
    prior_steps: Prior optimizer steps per training step (per step that
      computes the compression terms, see `compression_interval`).
    initial_prior_steps: Prior optimizer steps of `fit_priors`, which `fit`
      runs before and after training (0: neither).
    compression_interval: Computes the rate, sparsity and decay terms and
      runs the prior steps on one training step in this many, with the terms
      multiplied by it (lazy regularization, as StyleGAN2's: the same force
      on average, at a fraction of the cost). 1, the default, is the
      reference's every step. Their per-latent cost does not shrink with
      the network's computation, so networks of few operations per weight
      (LeNet-300-100: one multiply-add per weight and example) train
      markedly faster with 4 to 8. The other steps train on the task loss
      alone. Needs `steps_per_execution` 1.
    reference: Reproduce the official PyTorch implementation's objective:
      the rate term divided by the number of kernel slices (rows of in x out
      per layer) instead of latents, its initialisation (raw decoder matrices
      with N(0, var) entries and its per-layer latent bounds, with
      `latent_init_bound` as its `boundary`; see `_initialize_as_reference`).
      Use `RateWarmup(..., formula="reference")` for its warm-up.
    grid_bits: Binary places of the power-of-two grids that the decoders'
      unit matrices and the latent layers' biases train on, so that the file
      stores them in a few bits each, exactly (`lilnetx_tf.method.grid`);
      0: plain float32. Default: 6, or 0 with `reference=True`.
    initialize: Re-initialise latents and decoders (False when restoring).
    seed: Optional seed of that initialisation.
    **kwargs: Keras model arguments (e.g. `name`).
  """

  # The network owns and checkpoints its layers; these are views of them.
  # Class-level defaults keep Keras from tracking (and re-saving) them.
  _latent_layers = ()
  group_layers = None
  distillation = None

  def __init__(self, network, lambda_rate=1.0, lambda_sparsity=0.0,
               weight_decay=0.0, sparsity_structure="slice",
               sparsity_norm="l2", sparsity_groups=None,
               decoder_initializer="uniform", latent_init_bound=2.0,
               prior_init_scale=4.0, prior_steps=2, initial_prior_steps=500,
               compression_interval=1, reference=False, grid_bits=None,
               initialize=True, seed=None, **kwargs):
    super().__init__(**kwargs)
    layers = model_args.checked_latent_layers(network)
    model_args.check_objective(
        sparsity_structure, sparsity_norm, lambda_rate=lambda_rate,
        lambda_sparsity=lambda_sparsity, weight_decay=weight_decay,
        latent_init_bound=latent_init_bound)
    self.network = network
    self._latent_layers = layers
    self.group_layers = {}
    for layer in layers:
      self.group_layers.setdefault(layer.group, []).append(layer)
    positions = {g: groups.num_positions(kernel_shape(ls[0]))
                 for g, ls in self.group_layers.items()}
    self.sparsity_groups = model_args.sparsity_groups(sparsity_groups,
                                                      positions)
    self.lambda_rate_target = float(lambda_rate)
    self.lambda_sparsity_target = float(lambda_sparsity)
    self.weight_decay = float(weight_decay)
    self.sparsity_structure = sparsity_structure
    self.sparsity_norm = sparsity_norm
    self.decoder_initializer = decoder_initializer
    self.latent_init_bound = float(latent_init_bound)
    self.prior_init_scale = float(prior_init_scale)
    self.prior_steps, self.initial_prior_steps, self.compression_interval = (
        model_args.checked_counts(prior_steps=prior_steps,
                                  initial_prior_steps=initial_prior_steps,
                                  compression_interval=compression_interval))
    self.seed = seed
    if grid_bits is None:
      grid_bits = 0 if reference else grid.DEFAULT_GRID_BITS
    self.grid_bits = grid_bits  # KernelDecoder checks it.
    self._make_decoders_and_priors(positions)
    self.lambda_rate = tf.Variable(float(lambda_rate), trainable=False,
                                   dtype=tf.float32, name="lambda_rate")
    self.lambda_sparsity = tf.Variable(float(lambda_sparsity), trainable=False,
                                       dtype=tf.float32, name="lambda_sparsity")
    self.reference = bool(reference)
    self.num_latents = sum(int(np.prod(kernel_shape(l))) for l in layers)
    self.num_slices = sum(
        int(np.prod(kernel_shape(l))) // groups.num_positions(kernel_shape(l))
        for l in layers)
    # The rate term's denominator: the reference divides the bits by the
    # number of kernel slices, this library by the number of latents.
    self.rate_normalizer = self.num_slices if reference else self.num_latents
    self._bits_tracker = keras.metrics.Mean(name="bits_per_latent")
    self._prior_bits_tracker = keras.metrics.Mean(
        name="prior_bits_per_latent")
    self._norm_tracker = keras.metrics.Mean(name="block_norm")
    self.prior_optimizer = None
    if initialize:
      self.initialize_latents()
    self.built = True

  def _make_decoders_and_priors(self, positions):
    """One decoder and one prior per group; each latent layer's decoder."""
    self.decoders, self.priors = {}, {}
    for g in sorted(positions):
      self.decoders[g] = KernelDecoder(
          positions[g], initializer=self.decoder_initializer, seed=self.seed,
          grid_bits=self.grid_bits, name=f"decoder_{g}")
      self.decoders[g].build()
      self.priors[g] = GroupPrior(positions[g],
                                  init_scale=self.prior_init_scale,
                                  name=f"prior_{g}")
      self.priors[g].build()
    for layer in self._latent_layers:
      layer.attach_decoder(self.decoders[layer.group])

  # -- Initialisation -------------------------------------------------------

  def initialize_latents(self, kernels=None):
    """Initialises latents and decoders (see `initialization.initialize`).

    Args:
      kernels: Optional dict, layer name -> float kernel (NumPy), for every
        latent layer (e.g. the weights of a pretrained model).
    """
    initialization.initialize(self, kernels)

  # -- The objective --------------------------------------------------------

  @property
  def latent_layers(self):
    return list(self._latent_layers)

  def prior_variables(self):
    return [v for p in self.priors.values() for v in p.trainable_weights]

  def network_variables(self):
    """The variables the task loss trains: all trainable ones but the priors'.

    A decoder trains while a latent of its group does: the decoder of a
    group whose latent layers are all frozen (`base.trainable = False`) is
    frozen too, so their kernels stay as they are. A frozen layer in a group
    with trainable ones keeps its latents, but its kernel follows the shared
    decoder.
    """
    trainable = self.trainable_variables
    ids = {id(v) for v in trainable}
    frozen = {id(v) for v in self.prior_variables()}
    for g, layers in self.group_layers.items():
      if not any(id(l.latent) in ids for l in layers):
        frozen.update(id(v) for v in self.decoders[g].trainable_weights)
    return [v for v in trainable if id(v) not in frozen]

  def _group_positions(self, group):
    """The position-major latents of a group's layers, one tensor each.

    A list rather than their concatenation: the priors count the parts
    together, and a concatenation would copy every latent twice a step
    (values, then gradients).
    """
    return [groups.to_positions(l.latent) for l in self.group_layers[group]]

  def total_bits(self, training=False):
    """Bits of all latents under the priors (noisy bound or rounded)."""
    # One prior evaluation per group, not per layer: fewer, larger ops.
    return tf.add_n([self.priors[g].bits(self._group_positions(g), training)
                     for g in self.group_layers])

  def block_norm_sum(self):
    """Sum of the latent block norms over the groups in `sparsity_groups`."""
    norms = [tf.reduce_sum(sparsity.block_norms(
        l.latent, self.sparsity_structure, self.sparsity_norm))
             for l in self._latent_layers if l.group in self.sparsity_groups]
    return tf.add_n(norms) if norms else tf.constant(0.0)

  def latent_l2(self):
    return tf.add_n([tf.reduce_sum(tf.square(l.latent))
                     for l in self._latent_layers])

  def compression_loss(self, training=True):
    """The LilNetX terms added to the task loss, and the bits per latent."""
    bits = self.total_bits(training)
    bits_per_latent = bits / self.num_latents
    norm_sum = self.block_norm_sum()
    loss = self.lambda_rate * bits / self.rate_normalizer
    loss += self.lambda_sparsity * norm_sum
    if self.weight_decay:
      loss += self.weight_decay * self.latent_l2()
    return loss, bits_per_latent, norm_sum

  # -- Keras ----------------------------------------------------------------

  def compile(self, optimizer="rmsprop", *args, prior_optimizer=None,
              distillation=None, **kwargs):
    """Configures training: `keras.Model.compile`, plus the priors'.

    Every argument of `keras.Model.compile` is accepted, positionally in
    Keras's order (`optimizer, loss, metrics, ...`) or by keyword.

    Args:
      optimizer: Optimizer of latents, decoders and all other weights.
      *args: `keras.Model.compile`'s positional arguments after it.
      prior_optimizer: Keyword only. Optimizer of the priors; default Adam at
        1e-2.
      distillation: Keyword only. A `lilnetx_tf.Distillation` whose term
        training adds to the task loss; not saved with the compile config.
      **kwargs: As `keras.Model.compile`.

    Raises:
      TypeError: if `distillation` is not a `Distillation`.

    Usage:

      model = lilnetx_tf.compressible(keras_model, lambda_rate=2.0)
      model.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"],
                    loss=keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True))
      model.fit(x, y, epochs=10, callbacks=[lilnetx_tf.RateWarmup(1)])
    """
    if distillation is not None and not isinstance(
        distillation, distillation_lib.Distillation):
      raise TypeError(f"`distillation` must be a lilnetx_tf.Distillation, "
                      f"got {type(distillation).__name__}.")
    super().compile(optimizer, *args, **kwargs)
    self.distillation = distillation
    if prior_optimizer is None:
      prior_optimizer = keras.optimizers.Adam(1e-2)
    self.prior_optimizer = keras.optimizers.get(prior_optimizer)
    # Its slots now: created by a traced prior step, they would make
    # `tf.function` trace that step twice (seconds, in every first `fit`).
    with self.distribute_strategy.scope():
      self.prior_optimizer.build(self.prior_variables())

  def get_compile_config(self):
    config = super().get_compile_config()
    if config is not None and self.prior_optimizer is not None:
      config = dict(config)
      config["prior_optimizer"] = keras.optimizers.serialize(
          self.prior_optimizer)
    return config

  def compile_from_config(self, config):
    config = dict(config)
    prior_optimizer = config.pop("prior_optimizer", None)
    config = keras.saving.deserialize_keras_object(config)
    if prior_optimizer is not None:
      prior_optimizer = keras.optimizers.deserialize(prior_optimizer)
    self.compile(prior_optimizer=prior_optimizer, **config)
    # Build the optimizer now (`compile` built the priors' one) so that its
    # saved slots can be restored.
    self.optimizer.build(self.network_variables())

  def call(self, inputs, training=None):
    return self.network(inputs, training=training)

  @property
  def metrics(self):
    return super().metrics + [self._bits_tracker, self._prior_bits_tracker,
                              self._norm_tracker]

  def prior_fit_bits(self):
    """The priors' own objective: bits per latent of the rounded latents.

    The evaluation estimate of the model's size (`total_bits(False)` per
    latent), computed from per-position histograms, with gradients for the
    priors only. It does not depend on `lambda_rate`: the priors fit the
    latents whatever the rate weight, also when it is 0 or warming up
    (`lilnetx_tf.method.prior_fit`).
    """
    return prior_fit.prior_fit_bits(self)

  def fit_priors(self, steps=None):
    """Fits the priors to the current rounded latents (latents unchanged).

    `fit` calls this first, so that training starts with priors that match
    the latents (fresh priors overestimate their bits several times over and
    give the rate term a wrong gradient). It can also be called after
    changing latents by hand.

    Args:
      steps: Prior optimizer steps; default `initial_prior_steps`.

    Returns:
      The bits per latent of the rounded latents under the priors, as the
      last step measured them (before its update).

    Raises:
      RuntimeError: if the model is not compiled.
    """
    steps = self.initial_prior_steps if steps is None else int(steps)
    return prior_fit.fit_priors(self, steps)

  def fit(self, *args, **kwargs):  # pylint: disable=signature-differs
    """`keras.Model.fit`, with the priors fitted before and after.

    Fitted before, so that the first steps' rate gradient comes from priors
    that match the latents; after, so that the final estimate is the
    converged priors' (during training they trail the moving latents a
    little). A resumed run (`initial_epoch` > 0) restored priors that were
    fitted and trained with the latents: they are not refitted first, so
    that it continues exactly as an uninterrupted run.
    """
    if self.initial_prior_steps and not kwargs.get("initial_epoch"):
      self.fit_priors()
    history = super().fit(*args, **kwargs)
    if self.initial_prior_steps:
      self.fit_priors()
    return history

  def train_step(self, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    network_vars = self.network_variables()
    compression_step = self._traces_compression_step
    # Keras scales the task loss per replica so that summed gradients are a
    # mean; the other terms must be scaled the same way.
    replicas = self.distribute_strategy.num_replicas_in_sync
    with tf.GradientTape() as tape:
      y_pred = self(x, training=True)
      loss = self.compute_loss(x, y, y_pred, sample_weight)
      if self.distillation is not None:
        loss += self.distillation.loss(x, y_pred, sample_weight) / replicas
      if compression_step:
        extra, bits_per_latent, norm_sum = self.compression_loss(
            training=True)
        loss += extra * (self.compression_interval / replicas)
    # Only the network's variables learn from the loss: the rate term's
    # gradient to the priors would scale with lambda_rate (and vanish at 0);
    # the priors fit the latents with their own objective instead.
    grads = tape.gradient(loss, network_vars)
    self.optimizer.apply_gradients(zip(grads, network_vars))
    if compression_step:
      if self.prior_steps:
        prior_bits = prior_fit.prior_steps(self, self.prior_steps)
      else:
        prior_bits = self.prior_fit_bits()
      self._bits_tracker.update_state(bits_per_latent)
      self._prior_bits_tracker.update_state(prior_bits)
      self._norm_tracker.update_state(norm_sum)
    return self.compute_metrics(x, y, y_pred, sample_weight)

  def test_step(self, data):
    logs = super().test_step(data)
    # The trackers measure the training objective; evaluation leaves them
    # empty, so report none rather than zeros (`val_bits_per_latent` ...).
    for tracker in (self._bits_tracker, self._prior_bits_tracker,
                    self._norm_tracker):
      logs.pop(tracker.name, None)
    return logs

  def get_config(self):
    return dict(
        name=self.name,
        network=keras.utils.serialize_keras_object(self.network),
        lambda_rate=self.lambda_rate_target,
        lambda_sparsity=self.lambda_sparsity_target,
        weight_decay=self.weight_decay,
        sparsity_structure=self.sparsity_structure,
        sparsity_norm=self.sparsity_norm,
        sparsity_groups=list(self.sparsity_groups),
        decoder_initializer=self.decoder_initializer,
        latent_init_bound=self.latent_init_bound,
        prior_init_scale=self.prior_init_scale,
        prior_steps=self.prior_steps,
        initial_prior_steps=self.initial_prior_steps,
        compression_interval=self.compression_interval,
        reference=self.reference,
        grid_bits=self.grid_bits,
        seed=self.seed,
    )

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    network = keras.layers.deserialize(
        config.pop("network"), custom_objects=custom_objects)
    return cls(network, initialize=False, **config)
