"""Learned entropy priors of the latent integers, one per group.

Each group owns one density per kernel position (batch shape `positions`):
the deep factorized density of Ballé et al. (2018), as tensorflow-compression
defines it (implemented here in plain TensorFlow, so that no stack needs that
package to train), mixed with a wide logistic
"tail" component of learned weight, location and scale, both convolved with
unit uniform noise. The deep factorized density alone has logistic tails tied
to the slope of its peak; the latents LilNetX trains are a sharp peak at zero
(often > 99% of them) with a few values several integers out, and without
the tail component it overestimates their bits by 5-10% however long it
trains (measured on MNIST LeNet-5).

During training the latents get uniform noise and the prior gives a
differentiable upper bound on their bits; at evaluation they are rounded and
the bits are their self-information. The prior fits the latents with its own
objective (`histogram_bits`, see `LilNetXModel.prior_fit_bits`). Range coding
does not use the prior: its tables are the coded latents' own histograms
(`codec.histogram_tables`).
"""

import math

import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.method.layers import round_ste

__all__ = ["GroupPrior", "uniform_noise"]


def uniform_noise(shape):
  """Unit uniform noise, `[-1/2, 1/2)`, of a dynamic `shape`.

  Stateless Philox from a seed drawn by the stateful generator: the stateless
  kernel is several times faster on CPU (430,500 values: 0.5 ms against 2.3
  ms), and the seed draw keeps the global seed's reproducibility.
  """
  seed = tf.random.uniform((2,), 0, 2**31 - 1, tf.int32)
  return tf.random.stateless_uniform(shape, seed, -.5, .5)


def _log_expm1(x):
  return math.log(math.expm1(x))


def _logits_by_position(values, matrices, biases, factors):
  """The deep factorized network's cumulative logits, position-major.

  The formula of tensorflow-compression's `DeepFactorized`, which reshapes
  and transposes its `(..., positions)` inputs to `(positions, 1, n)` and back
  on every call; position-major inputs need neither.

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


# The tail component stays a tail: at least this wide and at most this heavy,
# so that it cannot take over the peak (a logistic of scale s puts at most
# tanh(1 / (4 s)) of its mass on one integer) and leave the deep factorized
# component the tails, a local optimum seen in training (20% above the
# entropy).
_MIN_TAIL_SCALE = 1.0
_MAX_TAIL_WEIGHT = 0.5
# The priors' fitting objective counts latents beyond this at the bound.
_MAX_FIT_VALUE = 2.0**15
# The training bound reads the noisy log-density from a table of this many
# points per unit, interpolated linearly, value and derivative alike. The
# table spans the latents' range within +-_TABLE_BOUND; beyond, the densities'
# tails are logistic, their log linear, and the edge cells extrapolate.
_TABLE_STEPS_PER_UNIT = 64
_TABLE_BOUND = 128.0


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class GroupPrior(keras.layers.Layer):
  """Learned prior of one group's latents, one density per kernel position.

  The density of position `p` is `(1 - w_p) * DF_p + w_p * L_p`: a
  tensorflow-compression deep factorized density `DF_p` and a logistic `L_p`
  of learned location and scale (at least 1), with learned weight
  `w_p = sigmoid(t_p) / 2`, all convolved with unit uniform noise.

  Args:
    positions: Kernel positions per slice; the prior's batch shape.
    num_filters: Hidden widths of the deep factorized network (tfc's
      default).
    init_scale: Initial width of the deep factorized density; should cover
      the initial latents.
    **kwargs: Keras layer arguments.
  """

  def __init__(self, positions, num_filters=(3, 3), init_scale=10.0,
               **kwargs):
    super().__init__(**kwargs)
    self.positions = int(positions)
    self.num_filters = tuple(int(f) for f in num_filters)
    self.init_scale = float(init_scale)
    if self.positions < 1:
      raise ValueError(f"`positions` must be >= 1, got {positions}.")
    if not self.init_scale > 0:
      raise ValueError(f"`init_scale` must be > 0, got {init_scale}.")

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
          initializer=keras.initializers.Constant(
              _log_expm1(1 / scale / filters[i + 1]))))
      self._biases.append(self.add_weight(
          name=f"bias_{i}", shape=(channels, filters[i + 1], 1),
          initializer=keras.initializers.RandomUniform(-.5, .5)))
      if i < len(self.num_filters):
        self._factors.append(self.add_weight(
            name=f"factor_{i}", shape=(channels, filters[i + 1], 1),
            initializer="zeros"))
    column = (channels, 1)
    # A tail component of about 1% weight and scale 2.3 to start with.
    self.tail_logit = self.add_weight(
        name="tail_logit", shape=column,
        initializer=keras.initializers.Constant(-4.0))
    self.tail_loc = self.add_weight(name="tail_loc", shape=column,
                                    initializer="zeros")
    self.tail_scale = self.add_weight(
        name="tail_scale", shape=column,
        initializer=keras.initializers.Constant(1.0))
    super().build(input_shape)

  def deep_factorized_log_prob(self, values):
    """Log-probabilities under the noisy deep factorized component alone.

    The density of tensorflow-compression's `NoisyDeepFactorized` on this
    prior's parameters (`tests/test_core.py` checks it against the stock
    class where tensorflow-compression is installed, and against a NumPy
    implementation everywhere).

    Args:
      values: `(positions, n)` float tensor (see `groups.to_positions`).

    Returns:
      `(positions, n)` natural-log probabilities.
    """
    if not self.built:
      self.build()
    values = self._checked(values)
    logits = _logits_by_position(tf.concat([values + .5, values - .5], 1),
                                 self._matrices, self._biases, self._factors)
    return _noisy_log_prob(*tf.split(logits, 2, axis=1))

  def deep_factorized_parameters(self):
    """The density network's `(matrices, biases, factors)` variables.

    In tensorflow-compression's `DeepFactorized` layout (matrices and factors
    before softplus and tanh), e.g. to build the stock distribution.
    """
    if not self.built:
      self.build()
    return list(self._matrices), list(self._biases), list(self._factors)

  def tail_parameters(self):
    """The tail component's weight, location and scale, `(positions, 1)`."""
    return (_MAX_TAIL_WEIGHT * tf.math.sigmoid(self.tail_logit),
            self.tail_loc, tf.nn.softplus(self.tail_scale) + _MIN_TAIL_SCALE)

  def log_prob(self, values):
    """Log-probabilities of position-major values under the noisy density.

    The deep factorized part equals `deep_factorized_log_prob`; its network
    runs once on both interval ends: this is most of a training step's
    overhead.

    Args:
      values: `(positions, n)` float tensor (see `groups.to_positions`).

    Returns:
      `(positions, n)` natural-log probabilities.

    Raises:
      ValueError: if `values` is not `(positions, n)`.
    """
    if not self.built:
      self.build()
    values = self._checked(values)
    deep, tail = self._cumulative_logits(
        tf.concat([values + .5, values - .5], 1))
    return self._interval_log_prob(*tf.split(deep, 2, axis=1),
                                   *tf.split(tail, 2, axis=1))

  def _cumulative_logits(self, points):
    """Both components' cumulative logits at `(positions, m)` points."""
    _, loc, scale = self.tail_parameters()
    return (_logits_by_position(points, self._matrices, self._biases,
                                self._factors), (points - loc) / scale)

  def _interval_log_prob(self, deep_upper, deep_lower, tail_upper,
                         tail_lower):
    """Log-mass of unit intervals, from the cumulative logits at their ends.

    Args:
      deep_upper: `(positions, m)` deep factorized logits at the upper ends.
      deep_lower: The same at the lower ends.
      tail_upper: The tail component's logits at the upper ends.
      tail_lower: The same at the lower ends.

    Returns:
      `(positions, m)` natural-log probabilities.
    """
    weight, _, _ = self.tail_parameters()
    deep = _noisy_log_prob(deep_upper, deep_lower)
    tail = _noisy_log_prob(tail_upper, tail_lower)
    return tf.math.reduce_logsumexp(tf.stack(
        [deep + tf.math.log1p(-weight), tail + tf.math.log(weight)]), axis=0)

  def bits(self, values, training):
    """Bits of position-major latents under this prior.

    For the deep factorized component alone, these are the figures of
    `tfc.ContinuousBatchedEntropyModel` (integer quantization,
    `offset_heuristic=False`) on the slice matrix.

    Args:
      values: `(positions, n)` float latents (see `groups.to_positions`), or
        a list of such tensors (e.g. one per layer of the group), counted
        together without being concatenated.
      training: With `True`, adds uniform noise and returns the
        differentiable upper bound used for training, interpolated from a
        table of the density (gradients reach `values`, not the prior's
        weights, which fit with `histogram_bits`); with `False`, rounds
        (straight-through) and returns the self-information of the integers.

    Returns:
      A scalar float tensor.
    """
    parts = self._parts(values)
    if training:
      return self._table_bits(
          [part + uniform_noise(tf.shape(part)) for part in parts])
    return tf.add_n([tf.reduce_sum(self.log_prob(round_ste(part)))
                     for part in parts]) / -math.log(2.0)

  def _checked(self, values):
    """`values` as a float32 `(positions, n)` tensor."""
    values = tf.convert_to_tensor(values, tf.float32)
    if values.shape.rank != 2 or values.shape[0] not in (None, self.positions):
      raise ValueError(
          f"Prior {self.name!r} takes position-major values of shape "
          f"({self.positions}, n), got {values.shape}; see "
          "lilnetx_tf.method.groups.to_positions.")
    return values

  def _parts(self, values):
    """`values`, a tensor or a non-empty list of them, as a checked list."""
    parts = values if isinstance(values, (list, tuple)) else [values]
    if not parts:
      raise ValueError(f"Prior {self.name!r} got no values.")
    return [self._checked(part) for part in parts]

  def _table_bits(self, values):
    """`-sum(log2(prob(values)))`, read from a table of the density.

    Evaluating the density network on every latent was most of a training
    step (LeNet-5: 47 of 86 ms, against 31 ms for the plain network). The
    priors get no gradient from the rate term (they fit the latents with
    their own objective), so the term needs only the log-density at each
    noisy latent and its derivative: the log-density is tabulated on a fine
    grid over the latents' range, per position, and interpolated linearly;
    the derivative is that interpolation's, constant over each cell. Each
    latent costs one gather. The value's error is of the order of the
    spacing squared, the derivative's of the spacing (`tests/test_core.py`
    bounds both against the direct evaluation).

    Args:
      values: List of `(positions, n)` float values (the noisy latents).

    Returns:
      A scalar float tensor, NaN if any value is.
    """
    # Table bounds from the finite range of the values, so that a NaN or a
    # far latent cannot ask for a huge table.
    def bound(extreme):
      extreme = tf.stop_gradient(extreme)
      extreme = tf.where(tf.math.is_finite(extreme), extreme, 0.0)
      return tf.clip_by_value(extreme, -_TABLE_BOUND, _TABLE_BOUND)

    low = tf.math.floor(bound(tf.reduce_min(
        [tf.reduce_min(part) for part in values])))
    high = tf.math.maximum(tf.math.ceil(bound(tf.reduce_max(
        [tf.reduce_max(part) for part in values]))), low + 1)
    steps = _TABLE_STEPS_PER_UNIT
    count = tf.cast(high - low, tf.int32) * steps + 1
    # The interval of grid point i, [i - 1/2, i + 1/2], ends at grid points
    # i -+ steps / 2: one pass of the density network over a grid half a unit
    # wider on each side gives both ends of every interval.
    points = low - .5 + tf.cast(tf.range(count + steps), tf.float32) / steps
    deep, tail = self._cumulative_logits(
        tf.broadcast_to(points[None], (self.positions, count + steps)))
    table = tf.stop_gradient(self._interval_log_prob(
        deep[:, steps:], deep[:, :-steps], tail[:, steps:],
        tail[:, :-steps])) / -math.log(2.0)
    # One row per cell, its bits at the left end and their rise over it, so
    # that each latent needs one gather (TF's CPU gathers cost per index more
    # than per byte).
    rise = table[:, 1:] - table[:, :-1]
    cells = tf.reshape(tf.stack([table[:, :-1], rise], axis=-1), (-1, 2))
    offsets = tf.range(self.positions)[:, None] * (count - 1)

    @tf.custom_gradient
    def lookup(x):
      t = (x - low) * steps
      cell = tf.clip_by_value(tf.cast(tf.math.floor(t), tf.int32), 0,
                              count - 2)
      # gather_nd: faster on CPU than gather (LeNet-5: 2.7 ms, 3.6 ms).
      bits, rise = tf.unstack(
          tf.gather_nd(cells, (cell + offsets)[..., None]), axis=-1)
      # Beyond the table, `t - cell` leaves [0, 1]: the edge cell extrapolates
      # linearly (the densities' tails are logistic, their logs linear).
      return (bits + (t - tf.cast(cell, tf.float32)) * rise,
              lambda up: up * rise * float(steps))

    return tf.add_n([tf.reduce_sum(lookup(part)) for part in values])

  def histogram_bits(self, values):
    """Bits of the rounded latents under this prior, from their histogram.

    Equal to `bits(values, training=False)`, but the density network runs
    once per (position, integer value present in the group's range) instead
    of once per latent, and no gradient reaches `values`: this is the priors'
    own fitting objective (the negative log-likelihood of the integers that
    will be range coded), which is minimal when each position's density
    matches the latents' empirical distribution.

    Args:
      values: `(positions, n)` float latents (see `groups.to_positions`), or
        a list of such tensors.

    Returns:
      A scalar float tensor.
    """
    return self.histogram_bits_of(self.histogram(values))

  def histogram(self, values):
    """Per-position histogram of the rounded latents.

    Args:
      values: `(positions, n)` float latents (see `groups.to_positions`), or
        a list of such tensors.

    Returns:
      `(low, counts, finite)`: the smallest integer (int32 scalar), the
      counts of `low, low + 1, ...` per position (`(positions, length)`
      float32), and whether every value was finite. The input of
      `histogram_bits_of`, so that several prior steps can share one pass
      over the latents.
    """
    ints, finite = [], []
    for part in self._parts(values):
      part = tf.stop_gradient(part)
      ok = tf.math.is_finite(part)
      finite.append(tf.reduce_all(ok))
      # Sane integers whatever the values: a NaN would give bincount a
      # garbage size, a huge latent a huge one. Extremes count at the bound.
      part = tf.clip_by_value(tf.where(ok, part, 0.0), -_MAX_FIT_VALUE,
                              _MAX_FIT_VALUE)
      ints.append(tf.cast(tf.round(part), tf.int32))
    low = tf.reduce_min([tf.reduce_min(i) for i in ints])
    length = tf.reduce_max([tf.reduce_max(i) for i in ints]) - low + 1
    size = self.positions * length
    rows = tf.range(self.positions)[:, None] * length - low
    counts = tf.add_n([
        tf.math.bincount(tf.reshape(i + rows, [-1]), minlength=size,
                         maxlength=size, dtype=tf.float32) for i in ints])
    return (low, tf.reshape(counts, (self.positions, length)),
            tf.reduce_all(finite))

  def histogram_bits_of(self, histogram):
    """Bits of the counted integers under this prior (see `histogram`).

    Args:
      histogram: `(low, counts, finite)` from `histogram`.

    Returns:
      A scalar float tensor; NaN when the counted values were not all
      finite (so that the loss shows it).
    """
    low, counts, finite = histogram
    grid = tf.cast(low + tf.range(tf.shape(counts)[1]), tf.float32)
    grid = tf.broadcast_to(grid[None], tf.shape(counts))
    # Values absent from the latents may have a log-probability of -inf far
    # out; they must count zero, not NaN.
    log_prob = tf.math.multiply_no_nan(self.log_prob(grid), counts)
    bits = tf.reduce_sum(log_prob) / -math.log(2.0)
    return tf.where(finite, bits, math.nan)

  def call(self, values, training=None):
    return self.bits(values, bool(training))

  def get_config(self):
    config = super().get_config()
    config.update(positions=self.positions, num_filters=self.num_filters,
                  init_scale=self.init_scale)
    return config
