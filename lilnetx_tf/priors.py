"""Learned entropy priors of the latent integers, one per group.

Each group owns a tensorflow-compression deep factorized density with one
density per kernel position (batch shape `positions`), convolved with unit
uniform noise. During training the latents get uniform noise and the prior
gives a differentiable upper bound on their bits; at evaluation they are
rounded and the bits are their self-information; for compression the prior is
turned into integer range-coding tables.
"""

import functools
import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from lilnetx_tf.layers import round_ste

__all__ = ["GroupPrior"]


def _log_expm1(x):
  return math.log(math.expm1(x))


def _logits_by_position(values, matrices, biases, factors):
  """`tfc.DeepFactorized._logits_cumulative` on position-major values.

  tfc reshapes and transposes its `(..., positions)` inputs to `(positions, 1,
  n)` and back on every call; position-major inputs need neither.

  Args:
    values: `(positions, n)` tensor.
    matrices: The density network's matrices (before softplus).
    biases: Its biases.
    factors: Its nonlinearity factors (before tanh).

  Returns:
    `(positions, n)` logits of the cumulative densities at `values`.
  """
  # expand_dims / squeeze / split rather than slicing: their gradients are
  # reshapes and a concat, where a slice's gradient writes a zero-filled copy.
  logits = tf.expand_dims(values, 1)
  for i, matrix in enumerate(matrices):
    logits = tf.linalg.matmul(tf.nn.softplus(matrix), logits) + biases[i]
    if i < len(factors):
      logits += tf.math.tanh(factors[i]) * tf.math.tanh(logits)
  return tf.squeeze(logits, 1)


class _OwnedDeepFactorized(tfc.DeepFactorized):
  """`tfc.DeepFactorized` on variables created and tracked by a Keras layer.

  `tfc.DeepFactorized` makes its variables in its constructor; a Keras layer
  must create weights in `build()` to be saved, restored and distributed like
  any other weight. The density network is tensorflow-compression's, evaluated
  by `_logits_by_position`.
  """

  def __init__(self, matrices, biases, factors, **kwargs):
    self._owned = (list(matrices), list(biases), list(factors))
    super().__init__(**kwargs)

  def _make_variables(self):
    self._matrices, self._biases, self._factors = self._owned

  def _logits_cumulative(self, inputs):
    # tfc's layout change around `_logits_by_position`, so that the coding
    # tables and the training bits come from one implementation of the network.
    shape = tf.shape(inputs)
    values = tf.transpose(
        tf.reshape(inputs, (-1, self.batch_shape.num_elements())))
    logits = _logits_by_position(values, self._matrices, self._biases,
                                 self._factors)
    return tf.reshape(tf.transpose(logits), shape)


def _noisy_log_prob(upper, lower):
  """log(sigmoid(upper) - sigmoid(lower)): log-mass of one unit interval.

  `upper` and `lower` are the cumulative logits at y + 1/2 and y - 1/2. The
  formula is tfc's (`_log_prob_with_logsf_and_logcdf`), including its choice
  of the numerically safe side: right of the median, the difference of the
  survival functions. Choosing the arguments first needs two log-sigmoids
  instead of four.
  """
  right = upper > 0
  big = tf.math.log_sigmoid(tf.where(right, -lower, upper))
  small = tf.math.log_sigmoid(tf.where(right, -upper, lower))
  # log(exp(big) - exp(small)), as tfc's _logsum_expbig_minus_expsmall.
  return tf.where(tf.math.is_inf(big), big,
                  tf.math.log1p(-tf.exp(small - big)) + big)


class _NoisyDeepFactorized(tfc.UniformNoiseAdapter):
  """`tfc.NoisyDeepFactorized` whose `log_prob` runs the density network once.

  tfc's `UniformNoiseAdapter.log_prob` evaluates the base distribution's
  log-CDF and log-survival function at y - 1/2 and y + 1/2: four passes of
  the density network. The deep factorized CDF is sigmoid(logits), so one pass
  over both points gives all four.
  """

  def _log_prob(self, y):
    logits = self.base._logits_cumulative(tf.stack([y + .5, y - .5]))  # pylint: disable=protected-access
    return _noisy_log_prob(logits[0], logits[1])


def _noisy_deep_factorized(matrices, biases, factors, positions, num_filters,
                           init_scale):
  base = _OwnedDeepFactorized(matrices, biases, factors,
                              batch_shape=(positions,),
                              num_filters=num_filters, init_scale=init_scale)
  return _NoisyDeepFactorized(base)


@functools.lru_cache(maxsize=None)
def _table_builder(positions, num_filters, init_scale, tail_mass, precision):
  """A traced table builder shared by all priors of one configuration.

  Graph mode because tfc's tail estimation loops are slow step by step in
  eager mode; shared so that each configuration is traced once per process,
  whatever the number of priors (models) coded.
  """

  @tf.function(autograph=False)
  def build(matrices, biases, factors):
    model = tfc.ContinuousBatchedEntropyModel(
        _noisy_deep_factorized(matrices, biases, factors, positions,
                               num_filters, init_scale),
        coding_rank=2, compression=True, stateless=True, tail_mass=tail_mass,
        range_coder_precision=precision, offset_heuristic=False)
    return model.cdf, model.cdf_offset

  return build


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class GroupPrior(tf.keras.layers.Layer):
  """Deep factorized prior of one group's latent slices.

  Args:
    positions: Kernel positions per slice; the prior's batch shape.
    num_filters: Hidden widths of the density network (tfc's default).
    init_scale: Initial width of the density; should cover the initial
      latents.
    tail_mass: Probability mass coded with the range coder's overflow (Elias
      gamma) escape instead of the tables.
    range_coder_precision: Bits of precision of the range-coding tables.
    **kwargs: Keras layer arguments.
  """

  def __init__(self, positions, num_filters=(3, 3), init_scale=10.0,
               tail_mass=2**-8, range_coder_precision=16, **kwargs):
    super().__init__(**kwargs)
    self.positions = int(positions)
    self.num_filters = tuple(int(f) for f in num_filters)
    self.init_scale = float(init_scale)
    self.tail_mass = float(tail_mass)
    self.range_coder_precision = int(range_coder_precision)
    if self.positions < 1:
      raise ValueError(f"`positions` must be >= 1, got {positions}.")
    if not 0 < self.tail_mass < 1:
      raise ValueError(f"`tail_mass` must be in (0, 1), got {tail_mass}.")
    if not 1 <= self.range_coder_precision <= 16:
      raise ValueError("`range_coder_precision` must be in [1, 16], got "
                       f"{range_coder_precision}.")

  def build(self, input_shape=None):
    # Same parameterisation and initial values as tfc.DeepFactorized.
    channels = self.positions
    filters = (1,) + self.num_filters + (1,)
    scale = self.init_scale ** (1 / (len(self.num_filters) + 1))
    self._matrices, self._biases, self._factors = [], [], []
    for i in range(len(self.num_filters) + 1):
      shape = (channels, filters[i + 1], filters[i])
      self._matrices.append(self.add_weight(
          name=f"matrix_{i}", shape=shape,
          initializer=tf.keras.initializers.Constant(
              _log_expm1(1 / scale / filters[i + 1]))))
      self._biases.append(self.add_weight(
          name=f"bias_{i}", shape=(channels, filters[i + 1], 1),
          initializer=tf.keras.initializers.RandomUniform(-.5, .5)))
      if i < len(self.num_filters):
        self._factors.append(self.add_weight(
            name=f"factor_{i}", shape=(channels, filters[i + 1], 1),
            initializer="zeros"))
    super().build(input_shape)

  def distribution(self):
    """The noisy deep factorized density (a tfp distribution)."""
    if not self.built:
      self.build()
    return _noisy_deep_factorized(self._matrices, self._biases, self._factors,
                                  self.positions, self.num_filters,
                                  self.init_scale)

  def log_prob(self, values):
    """Log-probabilities of position-major values under the noisy density.

    Equal to `self.distribution().log_prob` on the transposed values, but the
    density network runs once on both interval ends, without transposes: this
    is most of a training step's overhead.

    Args:
      values: `(positions, n)` float tensor (see `groups.to_positions`).

    Returns:
      `(positions, n)` natural-log probabilities.

    Raises:
      ValueError: if `values` is not `(positions, n)`.
    """
    if not self.built:
      self.build()
    values = tf.convert_to_tensor(values, tf.float32)
    if values.shape.rank != 2 or values.shape[0] not in (None, self.positions):
      raise ValueError(
          f"Prior {self.name!r} takes position-major values of shape "
          f"({self.positions}, n), got {values.shape}; see "
          "lilnetx_tf.groups.to_positions.")
    logits = _logits_by_position(tf.concat([values + .5, values - .5], 1),
                                 self._matrices, self._biases, self._factors)
    return _noisy_log_prob(*tf.split(logits, 2, axis=1))

  def bits(self, values, training):
    """Bits of position-major latents under this prior.

    The same figures as `tfc.ContinuousBatchedEntropyModel` (integer
    quantization, `offset_heuristic=False`) on the slice matrix.

    Args:
      values: `(positions, n)` float latents (see `groups.to_positions`).
      training: With `True`, adds uniform noise and returns the
        differentiable upper bound used for training; with `False`, rounds
        (straight-through) and returns the self-information of the integers.

    Returns:
      A scalar float tensor.
    """
    values = tf.convert_to_tensor(values, tf.float32)
    if training:
      values += tf.random.uniform(tf.shape(values), -.5, .5)
    else:
      values = round_ste(values)
    return tf.reduce_sum(self.log_prob(values)) / -math.log(2.0)

  def call(self, values, training=None):
    return self.bits(values, bool(training))

  def coding_tables(self):
    """Integer range-coding tables derived from the current prior.

    Returns:
      `(cdf, cdf_offset)` as int32 NumPy arrays, the tables of
      `tfc.ContinuousBatchedEntropyModel`; they embed the precision.
    """
    if not self.built:
      self.build()
    build = _table_builder(self.positions, self.num_filters, self.init_scale,
                           self.tail_mass, self.range_coder_precision)
    cdf, cdf_offset = build(self._matrices, self._biases, self._factors)
    return np.asarray(cdf, np.int32), np.asarray(cdf_offset, np.int32)

  def get_config(self):
    config = super().get_config()
    config.update(positions=self.positions, num_filters=self.num_filters,
                  init_scale=self.init_scale, tail_mass=self.tail_mass,
                  range_coder_precision=self.range_coder_precision)
    return config
