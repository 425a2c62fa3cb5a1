"""The decoder a group of layers shares: latent integers to float weights.

A k x k convolution group has one k^2 x k^2 matrix applied to every (in, out)
slice; 1x1 convolutions and dense layers have a single scalar. There is no
shift term, so a zero latent slice decodes to an exactly zero weight slice --
the property that turns zero latent blocks into structured weight sparsity.
"""

import math
import numbers

import tensorflow as tf
from lilnetx_tf.compat import keras

from lilnetx_tf.method import grid

__all__ = ["KernelDecoder", "decode_kernel", "DECODER_INITIALIZERS"]

DECODER_INITIALIZERS = ("uniform", "identity")


def decode_kernel(latent, matrix):
  """Decodes a kernel-shaped latent tensor with a decoder matrix.

  Training, compression and decompression all decode through this one function
  so that the decompressed weights equal the training model's bit for bit.

  Args:
    latent: Kernel-shaped tensor (`(*spatial, in, out)` or `(in, out)`), usually
      already rounded to integers.
    matrix: `(positions, positions)` decoder matrix, `positions` the product
      of the spatial sizes (1 for dense and 1x1 kernels).

  Returns:
    The decoded kernel, same shape as `latent`. Row-major spatial positions of
    each slice are mixed: `w[p, n] = sum_q latent[q, n] * matrix[q, p]`.
  """
  latent = tf.convert_to_tensor(latent)
  matrix = tf.cast(matrix, latent.dtype)
  positions = matrix.shape[0]
  if positions == 1:
    return latent * matrix[0, 0]
  shape = tf.shape(latent)
  flat = tf.reshape(latent, (positions, -1))
  return tf.reshape(tf.matmul(matrix, flat, transpose_a=True), shape)


@keras.utils.register_keras_serializable(package="lilnetx_tf")
class KernelDecoder(keras.layers.Layer):
  """Decoder shared by all latent layers of one group.

  The decoding matrix is `scale * unit`: a fixed scale (a non-trainable
  weight, set at initialisation) times a trainable matrix of order one.
  Optimisers with per-step updates of about their learning rate (Adam at
  1e-2, as in the reference) then change the decoder by a relative amount of
  about the learning rate, whatever the weights' magnitude. With `grid_bits`,
  `unit` is the trainable matrix on its power-of-two grid (`grid.grid_ste`),
  so that the file stores it as small integers, exactly.

  Args:
    positions: Kernel positions per slice (k*k; 1 for 1x1 convs and dense).
    initializer: `"uniform"` (a random matrix) or `"identity"`. A scalar
      decoder is the same under both.
    scale: Ratio of the decoded weights' standard deviation to the latents'.
      Chosen by `LilNetXModel` so that decoded weights start with the variance
      of a standard initializer.
    seed: Optional seed of the uniform initializer.
    grid_bits: Binary places of the unit matrix's grid (see `grid`); 0: no
      grid. The biases of the group's layers use the same grid.
    **kwargs: Keras layer arguments.
  """

  def __init__(self, positions, initializer="uniform", scale=1.0, seed=None,
               grid_bits=0, **kwargs):
    super().__init__(**kwargs)
    if int(positions) < 1:
      raise ValueError(f"`positions` must be >= 1, got {positions}.")
    if initializer not in DECODER_INITIALIZERS:
      raise ValueError(f"Unknown decoder initializer {initializer!r}; valid: "
                       f"{', '.join(DECODER_INITIALIZERS)}.")
    self.positions = int(positions)
    self.initializer = initializer
    self.initial_scale = float(scale)
    self.seed = seed
    if (isinstance(grid_bits, bool) or
        not isinstance(grid_bits, numbers.Integral) or
        not 0 <= grid_bits <= grid.MAX_GRID_BITS):
      raise ValueError(f"`grid_bits` must be an integer in [0, "
                       f"{grid.MAX_GRID_BITS}], got {grid_bits!r}.")
    self.grid_bits = int(grid_bits)

  def _unit_value(self, shape=None, dtype=None):
    del shape  # Always (positions, positions).
    p = self.positions
    if self.initializer == "identity" or p == 1:
      return tf.eye(p, dtype=dtype or tf.float32)
    # var(w) = p * var(latent) * var(entry): unit variance gain for 3 / p.
    limit = math.sqrt(3.0 / p)
    return tf.random.uniform((p, p), -limit, limit, seed=self.seed,
                             dtype=dtype or tf.float32)

  def build(self, input_shape=None):
    self.unit_matrix = self.add_weight(
        name="unit_matrix", shape=(self.positions, self.positions),
        initializer=self._unit_value, trainable=True)
    self.scale = self.add_weight(
        name="scale", shape=(),
        initializer=keras.initializers.Constant(self.initial_scale),
        trainable=False)
    super().build(input_shape)

  @property
  def unit(self):
    """The unit matrix the decoder uses: on its grid, if it has one."""
    return grid.grid_ste(self.unit_matrix, self.grid_bits)

  @property
  def matrix(self):
    """The decoding matrix, `scale * unit` (a tensor)."""
    return self.scale * self.unit

  def reset(self, scale, identity=False, matrix=None):
    """Re-initialises the decoder with a new scale (before training).

    Args:
      scale: The new scale.
      identity: Use an identity unit matrix whatever the initializer.
      matrix: Use this `(positions, positions)` unit matrix instead.
    """
    self.initial_scale = float(scale)
    if not self.built:
      self.build()
    self.scale.assign(self.initial_scale)
    if matrix is not None:
      self.unit_matrix.assign(tf.constant(matrix, tf.float32))
    else:
      self.unit_matrix.assign(tf.eye(self.positions) if identity
                              else self._unit_value())

  def call(self, latent):
    return decode_kernel(latent, self.matrix)

  def get_config(self):
    config = super().get_config()
    config.update(positions=self.positions, initializer=self.initializer,
                  scale=self.initial_scale, seed=self.seed,
                  grid_bits=self.grid_bits)
    return config
