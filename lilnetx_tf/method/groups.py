"""Kernel groups and the slice view of a kernel.

LilNetX shares one decoder and one prior among all kernels of the same kind
and spatial shape: a *kernel group*, or *group* for short, named after that
shape (`conv3x3`, `conv1x1`, `conv5` for a 1-D convolution, `depthwise3x3`,
`dense`, ...). Within a group every kernel is seen as a matrix of *slices*:
one row per (input, output) pair, one column per kernel position (k*k columns
for a k x k kernel, k for a 1-D one, one for 1x1 convs and dense layers). The
decoder maps each row and the prior models each column. The priors evaluate
the transposed, *position-major* view `(positions, in * out)`, which is a free
reshape of the kernel.

The structured-sparsity term acts on *blocks* of a kernel, never called
groups here: one block per slice, or per whole input or output channel
(`SPARSITY_STRUCTURES`).
"""

import numpy as np
import tensorflow as tf

__all__ = [
    "SPARSITY_STRUCTURES",
    "block_axes",
    "from_slices",
    "group_name",
    "num_positions",
    "to_positions",
    "to_slices",
]

# The blocks the sparsity term's norms cover, by the kernel axes a norm keeps
# apart: "slice" keeps (in, out) pairs (one block per k x k slice, the
# paper's), "out_channel" keeps output channels, "in_channel" input channels.
SPARSITY_STRUCTURES = {
    "slice": ("in", "out"),
    "out_channel": ("out",),
    "in_channel": ("in",),
}


def block_axes(structure, rank):
  """The axes a block norm reduces, for a kernel of `rank` (spatial, in, out).

  Args:
    structure: A key of `SPARSITY_STRUCTURES`.
    rank: The kernel's rank: 2 for dense kernels (seen as 1x1), 3 for 1-D and
      4 for 2-D convolutions.

  Returns:
    A tuple of axes.
  """
  kept = {"in": rank - 2, "out": rank - 1}
  return tuple(a for a in range(rank)
               if a not in {kept[k] for k in SPARSITY_STRUCTURES[structure]})


def group_name(kind, kernel_size=None):
  """Returns the group of a layer kind and spatial kernel size.

  Args:
    kind: One of `"conv"`, `"depthwise"`, `"dense"`.
    kernel_size: `(kh, kw)` for 2-D, `(k,)` for 1-D convolutions; ignored for
      dense layers.

  Returns:
    The group name, e.g. `"conv3x3"`, `"conv5"`, `"depthwise5x5"`, `"dense"`.

  Raises:
    ValueError: for an unknown kind or a missing kernel size.
  """
  if kind == "dense":
    return "dense"
  if kind not in ("conv", "depthwise"):
    raise ValueError(f"Unknown layer kind {kind!r}: expected 'conv', "
                     "'depthwise' or 'dense'.")
  if kernel_size is None:
    raise ValueError(f"A {kind} group needs a kernel size.")
  return kind + "x".join(str(int(k)) for k in kernel_size)


def num_positions(kernel_shape):
  """Number of kernel positions (slice length) of a kernel shape.

  Dense kernels `(in, out)` have one; convolution kernels `(*spatial, in,
  out)` have the product of their spatial sizes.
  """
  kernel_shape = tuple(int(d) for d in kernel_shape)
  if len(kernel_shape) < 2:
    raise ValueError(f"Expected a kernel shape (*spatial, in, out), got "
                     f"{kernel_shape}.")
  return int(np.prod(kernel_shape[:-2], dtype=np.int64))


def _slice_order(rank):
  """The transpose that puts (in, out) first and the positions last."""
  return (rank - 2, rank - 1) + tuple(range(rank - 2))


def to_slices(kernel):
  """Returns the slice matrix `(in * out, positions)` of a kernel.

  Works on `tf.Tensor`s and NumPy arrays alike. Row `i * out + o` holds the
  kernel positions of the (input `i`, output `o`) pair in row-major spatial
  order.
  """
  shape = tuple(int(d) for d in kernel.shape)
  rows, positions = shape[-2] * shape[-1], num_positions(shape)
  if isinstance(kernel, np.ndarray):
    return kernel.transpose(_slice_order(len(shape))).reshape(rows, positions)
  return tf.reshape(tf.transpose(kernel, _slice_order(len(shape))),
                    (rows, positions))


def to_positions(kernel):
  """Returns the position-major view `(positions, in * out)` of a kernel.

  The transpose of `to_slices(kernel)`, and a free reshape of a `(*spatial,
  in, out)` kernel: the layout the priors evaluate.
  """
  positions = num_positions(kernel.shape)
  if isinstance(kernel, np.ndarray):
    return kernel.reshape(positions, -1)
  return tf.reshape(kernel, (positions, -1))


def from_slices(slices, kernel_shape):
  """Inverse of `to_slices`: rebuilds a kernel of `kernel_shape`."""
  kernel_shape = tuple(int(d) for d in kernel_shape)
  rank = len(kernel_shape)
  ordered = kernel_shape[-2:] + kernel_shape[:-2]
  inverse = tuple(np.argsort(_slice_order(rank)))
  if isinstance(slices, np.ndarray):
    return slices.reshape(ordered).transpose(inverse)
  return tf.transpose(tf.reshape(slices, ordered), inverse)
