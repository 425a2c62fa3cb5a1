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


def on_grid(values, bits):
  """`values` rounded to multiples of 2**(floor(log2 max|values|) - bits)."""
  values = np.asarray(values, np.float64)
  peak = np.abs(values).max()
  if not bits or peak == 0:
    return values.astype(np.float32)
  step = 2.0**(np.floor(np.log2(peak)) - bits)
  return (np.round(values / step) * step).astype(np.float32)


def rice_decode(data, count, k):
  """`count` signed integers of a Rice code, read bit by bit.

  The layout of `lilnetx_tf.compressed.rice`: all unary parts (quotient ones,
  then a zero), then all `k`-bit low parts, most significant bit first, then
  fewer than 8 zero bits. Raises AssertionError or IndexError on other bits.
  """
  bits = "".join(f"{byte:08b}" for byte in bytes(data))
  pos, quotients = 0, []
  for _ in range(count):
    quotient = 0
    while bits[pos] == "1":
      quotient += 1
      pos += 1
    pos += 1
    quotients.append(quotient)
  values = []
  for quotient in quotients:
    z = quotient * 2**k + (int(bits[pos:pos + k], 2) if k else 0)
    pos += k
    values.append(z // 2 if z % 2 == 0 else -(z + 1) // 2)
  assert pos <= len(bits) and len(bits) - pos < 8 and "1" not in bits[pos:]
  return np.array(values, np.int64)


def noisy_deep_factorized_prob(matrices, biases, factors, x):
  """Unit-interval masses of the deep factorized density, in float64.

  Ballé et al. (2018)'s cumulative network, written out: per position p,
  logits = softplus(H_i) @ logits + b_i, then + tanh(a_i) * tanh(logits)
  between layers; the mass of [x - 1/2, x + 1/2] is the difference of the
  sigmoids of the logits at its ends, taken on the far side of the median
  (survival functions right of it) so that float64 keeps the tails.

  Args:
    matrices: Per layer, `(positions, out, in)` arrays (before softplus).
    biases: Per layer, `(positions, out, 1)` arrays.
    factors: Per hidden layer, `(positions, out, 1)` arrays (before tanh).
    x: `(n, positions)` values.

  Returns:
    `(n, positions)` float64 masses.
  """
  x = np.asarray(x, np.float64)
  def logits(values):
    columns = []
    for p in range(values.shape[1]):
      out = values[:, p][None, :]
      for i, matrix in enumerate(matrices):
        out = np.log1p(np.exp(np.asarray(matrix[p], np.float64))) @ out
        out = out + np.asarray(biases[i][p], np.float64)
        if i < len(factors):
          out = out + np.tanh(np.asarray(factors[i][p], np.float64)) * np.tanh(out)
      columns.append(out[0])
    return np.stack(columns, axis=1)
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  upper, lower = logits(x + .5), logits(x - .5)
  right = upper + lower > 0
  return np.where(right, sigmoid(-lower) - sigmoid(-upper),
                  sigmoid(upper) - sigmoid(lower))
