"""Group-sparsity priors on latents: the lambda_rho term of the objective.

A group norm that reaches zero makes a whole latent slice or channel zero, and
since decoders have no shift the decoded weights are zero there as well: the
structured zeros that export removes physically.
"""

import tensorflow as tf

from lilnetx_tf.method import groups

__all__ = ["group_norms", "NORMS"]

NORMS = ("l2", "l1", "linf")

# sqrt has an infinite derivative at zero; a tiny floor keeps the gradient of
# an exactly-zero group finite (it is pulled to zero by the rounding anyway).
_EPS = 1e-12


def group_norms(latent, structure="slice", norm="l2"):
  """Norms of the groups of a latent kernel.

  Args:
    latent: Latent tensor of kernel shape `(kh, kw, in, out)`, or `(in, out)`
      for dense layers (seen as 1x1).
    structure: `"slice"` (one group per (in, out) pair), `"out_channel"` or
      `"in_channel"`.
    norm: `"l2"`, `"l1"` or `"linf"`.

  Returns:
    A tensor with one norm per group.

  Raises:
    ValueError: for an unknown structure or norm.
  """
  if structure not in groups.SPARSITY_STRUCTURES:
    raise ValueError(f"Unknown sparsity structure {structure!r}; valid: "
                     f"{', '.join(groups.SPARSITY_STRUCTURES)}.")
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(NORMS)}.")
  if latent.shape.rank == 2:
    latent = latent[tf.newaxis, tf.newaxis]
  axes = groups.SPARSITY_STRUCTURES[structure]
  if norm == "l2":
    return tf.sqrt(tf.reduce_sum(tf.square(latent), axis=axes) + _EPS)
  if norm == "l1":
    return tf.reduce_sum(tf.abs(latent), axis=axes)
  return tf.reduce_max(tf.abs(latent), axis=axes)
