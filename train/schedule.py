"""Learning-rate schedule of the reference implementation: warm-up, cosine.

The rate rises linearly from `peak / warmup_steps` to `peak` over the first
`warmup_steps` steps, then follows half a cosine down to `final_fraction *
peak` at `total_steps`, and stays there. It is a function of the optimizer's
step counter, which is checkpointed, so a resumed run continues on the curve.
"""

import math

import tensorflow as tf

__all__ = ["WarmupCosineDecay"]


@tf.keras.utils.register_keras_serializable(package="lilnetx_train")
class WarmupCosineDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up then cosine decay.

  Args:
    peak: Learning rate at the end of the warm-up.
    total_steps: Steps of the whole run (warm-up included).
    warmup_steps: Steps of the linear warm-up; 0 starts at `peak`.
    final_fraction: The rate at `total_steps`, as a fraction of `peak`.

  Raises:
    ValueError: For a non-positive `peak` or `total_steps`, or a warm-up
      longer than the run.
  """

  def __init__(self, peak, total_steps, warmup_steps=0, final_fraction=0.0):
    super().__init__()
    if not (peak > 0 and math.isfinite(peak)):
      raise ValueError(f"`peak` must be finite and > 0, got {peak}.")
    if total_steps < 1:
      raise ValueError(f"`total_steps` must be >= 1, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
      raise ValueError(f"`warmup_steps` must be in [0, total_steps = "
                       f"{total_steps}], got {warmup_steps}.")
    if not 0 <= final_fraction <= 1:
      raise ValueError(
          f"`final_fraction` must be in [0, 1], got {final_fraction}.")
    self.peak = float(peak)
    self.total_steps = int(total_steps)
    self.warmup_steps = int(warmup_steps)
    self.final_fraction = float(final_fraction)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    # Step 0 takes the first warm-up value, not zero: no wasted update.
    warmup = self.peak * (step + 1) / max(self.warmup_steps, 1)
    decay_steps = max(self.total_steps - self.warmup_steps, 1)
    progress = tf.clip_by_value(
        (step - self.warmup_steps) / decay_steps, 0.0, 1.0)
    cosine = 0.5 * (1 + tf.cos(math.pi * progress))
    decayed = self.peak * (self.final_fraction +
                           (1 - self.final_fraction) * cosine)
    return tf.where(step < self.warmup_steps, warmup, decayed)

  def get_config(self):
    return dict(peak=self.peak, total_steps=self.total_steps,
                warmup_steps=self.warmup_steps,
                final_fraction=self.final_fraction)
