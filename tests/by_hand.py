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
