"""Kernel-shape groups and the slice view of a kernel.

LilNetX shares one decoder and one prior among all layers whose kernels have the
same spatial shape. A *group* is named after that shape (`conv3x3`, `conv1x1`,
`depthwise3x3`, `dense`, ...). Within a group every kernel is seen as a matrix
of *slices*: one row per (input, output) pair, one column per kernel position
(k*k columns for a k x k kernel, one for 1x1 convs and dense layers). The
decoder maps each row, the prior models each column, and the slice sparsity
prior acts on rows. The priors evaluate the transposed, *position-major* view
`(positions, in * out)`, which is a free reshape of the kernel.
"""

import numpy as np
import tensorflow as tf

__all__ = [
    "group_name",
    "num_positions",
    "to_slices",
    "to_positions",
    "from_slices",
    "SPARSITY_STRUCTURES",
]

# Group-sparsity structures: what one group norm covers in a kernel of shape
# (kh, kw, in, out) -- the axes reduced by the norm.
SPARSITY_STRUCTURES = {
    "slice": (0, 1),        # one k x k slice per (in, out) pair (the paper's)
    "out_channel": (0, 1, 2),
    "in_channel": (0, 1, 3),
}


def group_name(kind, kernel_size=None):
  """Returns the group of a layer kind and spatial kernel size.

  Args:
    kind: One of `"conv"`, `"depthwise"`, `"dense"`.
    kernel_size: `(kh, kw)` for convolutions; ignored for dense layers.

  Returns:
    The group name, e.g. `"conv3x3"`, `"depthwise5x5"`, `"dense"`.

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
  kh, kw = (int(k) for k in kernel_size)
  return f"{kind}{kh}x{kw}"


def num_positions(kernel_shape):
  """Number of kernel positions (slice length) of a 2-D or 4-D kernel shape."""
  kernel_shape = tuple(int(d) for d in kernel_shape)
  if len(kernel_shape) == 2:
    return 1
  if len(kernel_shape) == 4:
    return kernel_shape[0] * kernel_shape[1]
  raise ValueError(f"Expected a dense (2-D) or conv (4-D) kernel shape, got "
                   f"{kernel_shape}.")


def to_slices(kernel):
  """Returns the slice matrix `(in * out, positions)` of a kernel.

  Works on `tf.Tensor`s and NumPy arrays alike. Row `i * out + o` holds the
  kernel positions of the (input `i`, output `o`) pair in row-major (kh, kw)
  order.
  """
  if isinstance(kernel, np.ndarray):
    if kernel.ndim == 2:
      return kernel.reshape(-1, 1)
    kh, kw, cin, cout = kernel.shape
    return kernel.transpose(2, 3, 0, 1).reshape(cin * cout, kh * kw)
  if kernel.shape.rank == 2:
    return tf.reshape(kernel, (-1, 1))
  kh, kw, cin, cout = kernel.shape
  return tf.reshape(tf.transpose(kernel, (2, 3, 0, 1)), (cin * cout, kh * kw))


def to_positions(kernel):
  """Returns the position-major view `(positions, in * out)` of a kernel.

  The transpose of `to_slices(kernel)`, and a free reshape of a `(kh, kw, in,
  out)` or `(in, out)` kernel: the layout the priors evaluate.
  """
  shape = kernel.shape
  positions = num_positions(tuple(int(d) for d in shape))
  if isinstance(kernel, np.ndarray):
    return kernel.reshape(positions, -1)
  return tf.reshape(kernel, (positions, -1))


def from_slices(slices, kernel_shape):
  """Inverse of `to_slices`: rebuilds a kernel of `kernel_shape`."""
  kernel_shape = tuple(int(d) for d in kernel_shape)
  if isinstance(slices, np.ndarray):
    if len(kernel_shape) == 2:
      return slices.reshape(kernel_shape)
    kh, kw, cin, cout = kernel_shape
    return slices.reshape(cin, cout, kh, kw).transpose(2, 3, 0, 1)
  if len(kernel_shape) == 2:
    return tf.reshape(slices, kernel_shape)
  kh, kw, cin, cout = kernel_shape
  return tf.transpose(tf.reshape(slices, (cin, cout, kh, kw)), (2, 3, 0, 1))
