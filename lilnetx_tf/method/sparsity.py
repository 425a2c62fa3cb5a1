"""Structured sparsity of the latents: the lambda_rho term of the objective.

The term is the sum of the norms of a kernel's *blocks* (its slices, or its
whole input or output channels; `groups.SPARSITY_STRUCTURES`). A block norm
that reaches zero makes a whole latent slice or channel zero, and since
decoders have no shift the decoded weights are zero there as well: the
structured zeros that export removes physically.
"""

import tensorflow as tf

from lilnetx_tf.method import groups

__all__ = ["NORMS", "block_norms"]

NORMS = ("l2", "l1", "linf")

# sqrt has an infinite derivative at zero; a tiny floor keeps the gradient of
# an exactly-zero block finite (it is pulled to zero by the rounding anyway).
_EPS = 1e-12


def block_norms(latent, structure="slice", norm="l2"):
  """Norms of the blocks of a latent kernel.

  Args:
    latent: Latent tensor of kernel shape `(*spatial, in, out)`, or `(in,
      out)` for dense layers (seen as 1x1).
    structure: `"slice"` (one block per (in, out) pair), `"out_channel"` or
      `"in_channel"`.
    norm: `"l2"`, `"l1"` or `"linf"`.

  Returns:
    A tensor with one norm per block.

  Raises:
    ValueError: for an unknown structure or norm.
  """
  if structure not in groups.SPARSITY_STRUCTURES:
    raise ValueError(f"Unknown sparsity structure {structure!r}; valid: "
                     f"{', '.join(groups.SPARSITY_STRUCTURES)}.")
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(NORMS)}.")
  axes = groups.block_axes(structure, latent.shape.rank)
  if norm == "l2":
    return tf.sqrt(tf.reduce_sum(tf.square(latent), axis=axes) + _EPS)
  if norm == "l1":
    return tf.reduce_sum(tf.abs(latent), axis=axes)
  return tf.reduce_max(tf.abs(latent), axis=axes)
