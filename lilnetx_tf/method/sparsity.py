"""Structured sparsity of the latents: the lambda_rho term of the objective.

The term is the sum of the norms of a kernel's *blocks* (its slices, or its
whole input or output channels; `groups.SPARSITY_STRUCTURES`), or of several
structures at once (`"slice+out_channel"`: both sums, as the sparse group
lasso adds an element and a group penalty). Channels are what export removes
and so what makes a model faster; zero slices inside kept channels make the
file smaller. A block norm
that reaches zero makes a whole latent slice or channel zero, and since
decoders have no shift the decoded weights are zero there as well: the
structured zeros that export removes physically.
"""

import tensorflow as tf

from lilnetx_tf.method import groups

__all__ = ["NORMS", "block_norms", "check_structure"]

NORMS = ("l2", "l1", "linf")

# sqrt has an infinite derivative at zero; a tiny floor keeps the gradient of
# an exactly-zero block finite (it is pulled to zero by the rounding anyway).
_EPS = 1e-12


def check_structure(structure):
  """The structures of a `sparsity_structure` string, or a ValueError."""
  parts = str(structure).split("+")
  unknown = [p for p in parts if p not in groups.SPARSITY_STRUCTURES]
  if unknown or len(set(parts)) != len(parts):
    raise ValueError(
        f"Unknown sparsity structure {structure!r}; valid: "
        f"{', '.join(groups.SPARSITY_STRUCTURES)}, or several of them "
        "joined by '+' (e.g. 'slice+out_channel').")
  return parts


def block_norms(latent, structure="slice", norm="l2"):
  """Norms of the blocks of a latent kernel.

  Args:
    latent: Latent tensor of kernel shape `(*spatial, in, out)`, or `(in,
      out)` for dense layers (seen as 1x1).
    structure: `"slice"` (one block per (in, out) pair), `"out_channel"`,
      `"in_channel"`, or several joined by "+" (e.g. `"slice+out_channel"`:
      the blocks of each).
    norm: `"l2"`, `"l1"` or `"linf"`.

  Returns:
    A tensor with one norm per block (a 1-D concatenation for several
    structures).

  Raises:
    ValueError: for an unknown structure or norm.
  """
  parts = check_structure(structure)
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(NORMS)}.")
  if len(parts) > 1:
    return tf.concat([tf.reshape(block_norms(latent, part, norm), [-1])
                      for part in parts], 0)
  axes = groups.block_axes(structure, latent.shape.rank)
  if norm == "l2":
    return tf.sqrt(tf.reduce_sum(tf.square(latent), axis=axes) + _EPS)
  if norm == "l1":
    return tf.reduce_sum(tf.abs(latent), axis=axes)
  return tf.reduce_max(tf.abs(latent), axis=axes)
