"""The arguments of `LilNetXModel`, checked before anything is built.

Each check raises the error a user sees for a bad network or setting, naming
the argument and what it must be.
"""

import math

import tensorflow as tf
from lilnetx_tf import compat
from lilnetx_tf.compat import keras

from lilnetx_tf.method import sparsity
from lilnetx_tf.method.layers import LatentKernel

__all__ = ["check_objective", "checked_counts", "checked_latent_layers",
           "latent_layers", "sparsity_groups"]


def latent_layers(network):
  """The distinct latent layers of a network (nested models included)."""
  if isinstance(network, LatentKernel):
    return [network]
  return [l for l in compat.flatten_layers(network, include_self=False)
          if isinstance(l, LatentKernel)]


def checked_latent_layers(network):
  """The latent layers of a built network, which must have distinct names."""
  if not isinstance(network, keras.Model):
    raise TypeError(f"`network` must be a Keras model, got "
                    f"{type(network).__name__}.")
  if not network.built:
    raise ValueError("`network` must be built (give it an input shape).")
  layers = latent_layers(network)
  if not layers:
    raise ValueError(
        f"Model {network.name!r} has no latent layers; convert it with "
        "lilnetx_tf.compressible(model) first.")
  names = [l.name for l in layers]
  clashes = sorted({n for n in names if names.count(n) > 1})
  if clashes:
    raise ValueError(
        f"Latent layers must have distinct names (kernels are stored by "
        f"name); {clashes} occur more than once in {network.name!r}. "
        "lilnetx_tf.compressible renames the clashing layers of nested "
        "models; in a network built by hand, name them apart.")
  return layers


def check_objective(structure, norm, **weights):
  """Refuses a bad structure, norm or weight before anything is built."""
  sparsity.block_norms(tf.zeros((1, 1)), structure, norm)
  for name, value in weights.items():
    if not (value >= 0 and math.isfinite(value)):
      raise ValueError(f"`{name}` must be finite and >= 0, got {value}.")


def sparsity_groups(names, positions):
  """The sorted groups under the sparsity term (default: k x k, k > 1)."""
  present = sorted(positions)
  if names is None:
    names = [g for g in present if positions[g] > 1]
  unknown = sorted(set(names) - set(present))
  if unknown:
    raise ValueError(f"sparsity_groups {unknown} are not in this model; "
                     f"its groups are {present}.")
  return sorted(names)


def checked_counts(**counts):
  """The step counts as ints: at least 1 for the interval, else 0."""
  checked = []
  for name, value in counts.items():
    least = 1 if name == "compression_interval" else 0
    if isinstance(value, bool) or int(value) != value or value < least:
      raise ValueError(
          f"`{name}` must be an integer >= {least}, got {value!r}.")
    checked.append(int(value))
  return checked

