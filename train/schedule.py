"""Learning-rate schedule of the reference implementation: warm-up, cosine.

The rate rises linearly from `peak / warmup_steps` to `peak` over the first
`warmup_steps` steps, then follows half a cosine down to zero at
`total_steps`. It is Keras's own `CosineDecay` (a `LearningRateSchedule` with
`get_config`), so a saved `model.keras` loads anywhere with plain Keras, and
it is a function of the optimizer's step counter, which is checkpointed, so a
resumed run continues on the curve.
"""

import math

from lilnetx_tf.compat import keras

__all__ = ["warmup_cosine_decay"]


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
