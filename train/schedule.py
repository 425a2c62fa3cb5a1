"""Learning-rate schedule of the reference implementation: warm-up, cosine.

The rate rises linearly from `peak / warmup_steps` to `peak` over the first
`warmup_steps` steps, then follows half a cosine down to zero at
`total_steps`. It is Keras's own `CosineDecay` (a `LearningRateSchedule` with
`get_config`), so a saved `model.keras` loads anywhere with plain Keras, and
it is a function of the optimizer's step counter, which is checkpointed, so a
resumed run continues on the curve.
"""

import math

import numpy as np
import tensorflow as tf
from lilnetx_tf.compat import keras

__all__ = ["SegmentCosineDecay", "warmup_cosine_decay"]


def warmup_cosine_decay(peak, total_steps, warmup_steps=0):
  """Linear warm-up to `peak`, then cosine decay to zero.

  Args:
    peak: Learning rate at the end of the warm-up.
    total_steps: Steps of the whole run (warm-up included).
    warmup_steps: Steps of the linear warm-up; 0 starts at `peak`.

  Returns:
    A `keras.optimizers.schedules.CosineDecay`.

  Raises:
    ValueError: For a non-positive `peak` or `total_steps`, or a warm-up
      longer than the run.
  """
  if not (peak > 0 and math.isfinite(peak)):
    raise ValueError(f"`peak` must be finite and > 0, got {peak}.")
  if total_steps < 1:
    raise ValueError(f"`total_steps` must be >= 1, got {total_steps}.")
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(f"`warmup_steps` must be in [0, total_steps = "
                     f"{total_steps}], got {warmup_steps}.")
  decay_steps = max(total_steps - warmup_steps, 1)
  if not warmup_steps:
    return keras.optimizers.schedules.CosineDecay(peak, decay_steps)
  # Starting at peak / warmup_steps (not 0) makes the first step count.
  return keras.optimizers.schedules.CosineDecay(
      peak / warmup_steps, decay_steps, warmup_target=peak,
      warmup_steps=warmup_steps)


@keras.utils.register_keras_serializable(package="lilnetx_tf_train")
class SegmentCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
  """A cosine down to zero in each segment of a run: warm restarts.

  Segment 0 warms up linearly over `warmup_steps` to `peak`, then decays by
  half a cosine to zero at its end; each later segment restarts at
  `restart * peak` and decays to zero at its end (SGDR, Loshchilov and
  Hutter 2017, with segments of any length). A frontier run
  (`config.frontier`) writes a file at the end of each segment: there the
  rate is zero, as at the end of a single run.

  Args:
    peak: The first segment's peak rate.
    segment_steps: Steps of each segment.
    warmup_steps: Warm-up steps of the first segment.
    restart: Each later segment's peak, as a fraction of `peak`.
  """

  def __init__(self, peak, segment_steps, warmup_steps=0, restart=0.3):
    super().__init__()
    self.peak = float(peak)
    self.segment_steps = [int(s) for s in segment_steps]
    self.warmup_steps = int(warmup_steps)
    self.restart = float(restart)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    ends = tf.constant(np.cumsum(self.segment_steps), tf.float32)
    index = tf.minimum(tf.searchsorted(ends, [step], side="right")[0],
                       len(self.segment_steps) - 1)
    start = tf.concat([[0.0], ends], 0)[index]
    first = tf.equal(index, 0)
    warmup = tf.where(first, float(self.warmup_steps), 0.0)
    length = tf.maximum(ends[index] - start - warmup, 1.0)
    peak = tf.where(first, self.peak, self.peak * self.restart)
    progress = tf.clip_by_value((step - start - warmup) / length, 0.0, 1.0)
    decayed = peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
    warming = peak * (step - start + 1.0) / tf.maximum(warmup, 1.0)
    return tf.where(step - start < warmup, warming, decayed)

  def get_config(self):
    return dict(peak=self.peak, segment_steps=self.segment_steps,
                warmup_steps=self.warmup_steps, restart=self.restart)
