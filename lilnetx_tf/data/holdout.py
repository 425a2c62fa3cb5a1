"""The validation split: training examples held out to choose a model by.

Model selection (the best epoch, hyper-parameters) on the test split makes the
reported test accuracy optimistic, so `build_dataset` can set aside part of
the training split as a "validation" split: `validation_size` examples, chosen
by `validation_indices` from the seed alone. The same seed picks the same
examples in every run and process; the rest are the examples fitted.
"""

from typing import Optional, Tuple

import numpy as np

__all__ = ["split_indices", "validation_indices", "validation_size"]


def validation_size(num_examples: int, fraction: float,
                    max_examples: Optional[int] = None) -> int:
  """The number of training examples held out for validation.

  Args:
    num_examples: Training examples available (after any `limit`).
    fraction: Share to hold out, in [0, 1); 0 holds out none.
    max_examples: Upper bound on the count, or None for no bound; 0 holds out
      none.

  Returns:
    `round(fraction * num_examples)`, at most `max_examples`.

  Raises:
    ValueError: For a fraction outside [0, 1) or a negative `max_examples`.
  """
  if isinstance(fraction, bool) or not isinstance(
      fraction, (int, float, np.floating)) or not 0 <= fraction < 1:
    raise ValueError(f"The validation fraction must lie in [0, 1), got "
                     f"{fraction!r}.")
  if max_examples is not None and (
      isinstance(max_examples, bool)
      or not isinstance(max_examples, (int, np.integer)) or max_examples < 0):
    raise ValueError("The maximum number of validation examples must be None "
                     f"or an int >= 0, got {max_examples!r}.")
  # Rounded, not truncated: 0.29 * 100 is 28.999999999999996 in floats.
  count = int(round(fraction * num_examples))
  return count if max_examples is None else min(count, int(max_examples))


def validation_indices(num_examples: int, count: int, seed: int) -> np.ndarray:
  """The positions of the held-out examples among `num_examples`.

  Args:
    num_examples: Training examples available.
    count: How many to hold out (`validation_size`).
    seed: Decides which; any int in [0, 2**32).

  Returns:
    `count` distinct int64 positions in [0, num_examples), increasing.
  """
  if not 0 <= count <= num_examples:
    raise ValueError(f"Cannot hold out {count} of {num_examples} examples.")
  # RandomState, not default_rng: numpy keeps its streams fixed across
  # versions, so the held-out examples never change under a run.
  chosen = np.random.RandomState(seed).permutation(num_examples)[:count]
  return np.sort(chosen).astype(np.int64)


def split_indices(num_examples: int, count: int, seed: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """`(fitted, held_out)` positions: a partition of range(num_examples).

  Both increasing; `held_out` is `validation_indices(num_examples, count,
  seed)`.
  """
  held_out = validation_indices(num_examples, count, seed)
  keep = np.ones(num_examples, bool)
  keep[held_out] = False
  return np.flatnonzero(keep).astype(np.int64), held_out
