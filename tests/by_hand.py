"""Figures the tests compute by hand, independently of `lilnetx_tf`."""

import numpy as np


def position_rows(kernel):
  """A kernel's rounded values, one row per kernel position (a reshape)."""
  kernel = np.round(np.asarray(kernel))
  positions = kernel.shape[0] * kernel.shape[1] if kernel.ndim == 4 else 1
  return kernel.reshape(positions, -1)


def entropy_bits(rows):
  """Sum over rows of len(row) * H(row): one histogram per row."""
  bits = 0.0
  for row in rows:
    _, counts = np.unique(row, return_counts=True)
    bits -= float(np.sum(counts * np.log2(counts / len(row))))
  return bits


def group_rows(model):
  """Group -> its layers' rounded latents, one row per kernel position."""
  return {g: np.concatenate([position_rows(l.latent.numpy()) for l in layers],
                            axis=1)
          for g, layers in model.group_layers.items()}


def group_entropy_bits(model):
  """Group -> the factorized empirical entropy of its rounded latents."""
  return {g: entropy_bits(rows) for g, rows in group_rows(model).items()}
