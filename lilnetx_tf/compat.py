"""What differs between the supported stacks, and every private name we use.

Two stacks run the same code: TensorFlow 2.14 with tensorflow-compression
(the pinned one), and TensorFlow 2.16+ with tf-keras (the current one, where
`tf.keras` is Keras 3 unless `TF_USE_LEGACY_KERAS=1`). This module is the one
place that knows the difference, and the one place that touches private
names of TensorFlow, Keras or tensorflow-compression: each helper below says
why it needs one. `tests/test_layout.py` fails on a private name of another
package used anywhere else, and `tests/test_compat.py` runs every helper.

Usage:

```python
from lilnetx_tf.compat import keras   # Keras 2 (tf.keras or tf-keras)
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
```
"""

import sys

import tensorflow as tf

__all__ = [
    "KERAS_3_MESSAGE",
    "TF_VERSION",
    "applications_layers",
    "check_keras_model",
    "cluster_coordinator",
    "flatten_layers",
    "is_graph_network",
    "keras",
    "keras_history_layer",
    "lite_builtin_kernels",
    "lite_interpreter",
    "lite_runtime_name",
    "nodes_by_depth",
    "steps_per_execution",
    "stock_noisy_deep_factorized",
    "tfc",
]

TF_VERSION = tuple(int(p) for p in tf.__version__.split(".")[:2])


def _keras_2():
  """Keras 2: tf.keras up to TF 2.15, the tf-keras package from 2.16 on.

  From TF 2.16, `tf.keras` is Keras 3 unless the user set
  `TF_USE_LEGACY_KERAS=1` before TensorFlow loaded; the library must not
  depend on that, so it imports tf-keras itself (as
  tensorflow-model-optimization's compat module does).
  """
  if TF_VERSION >= (2, 16):
    try:
      import tf_keras  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError(
          f"lilnetx_tf needs tf-keras (Keras 2) with TensorFlow "
          f"{tf.__version__}: pip install "
          f"'tf-keras=={TF_VERSION[0]}.{TF_VERSION[1]}.*'") from None
    return tf_keras
  return tf.keras


keras = _keras_2()

try:
  import tensorflow_compression as tfc  # pylint: disable=g-import-not-at-top
except ImportError:  # The current stack: tensorflow-compression stops at 2.14.
  tfc = None

KERAS_3_MESSAGE = (
    "lilnetx_tf works on Keras 2 models: on TensorFlow 2.16 and later build "
    "the model with tf-keras (`import tf_keras as keras`, or "
    "`from lilnetx_tf.compat import keras`), or set TF_USE_LEGACY_KERAS=1 "
    "before importing TensorFlow so that `tf.keras` is tf-keras.")


def _is_keras_3(thing):
  """Whether `thing` is an object of Keras 3 (the `keras` package, 3.x).

  The module name alone does not tell: on TensorFlow 2.14 the `keras`
  package is Keras 2 itself, where `tf.keras`'s classes live.
  """
  if type(thing).__module__.split(".")[0] != "keras":
    return False
  version = getattr(sys.modules.get("keras"), "__version__", "2")
  return int(version.split(".")[0]) >= 3


def check_keras_model(model, what="model"):
  """Raises a clear `TypeError` unless `model` is a Keras 2 model.

  Args:
    model: What the user passed.
    what: How the message names it.

  Raises:
    TypeError: for a Keras 3 model, or anything that is not a Keras model.
  """
  if isinstance(model, keras.Model):
    return
  module = type(model).__module__
  if _is_keras_3(model):
    raise TypeError(f"The {what} {getattr(model, 'name', '')!r} is a Keras 3 "
                    f"model ({module}.{type(model).__name__}). "
                    + KERAS_3_MESSAGE)
  raise TypeError(f"The {what} must be a Keras model, got "
                  f"{type(model).__name__}.")


# The layer classes `keras.applications` models are built of that neither
# Keras exports: public application function -> the classes its module defines.
_APPLICATIONS_LAYERS = (("ConvNeXtTiny", ("LayerScale", "StochasticDepth")),
                        ("InceptionResNetV2", ("CustomScaleLayer",)))


def applications_layers():
  """The applications' own helper layers: class name -> class.

  ConvNeXt's `LayerScale` and `StochasticDepth` and Inception-ResNet-V2's
  `CustomScaleLayer` live in the applications' private modules
  (`keras.src.applications.convnext` in Keras 2.14,
  `tf_keras.src.applications.convnext` in tf-keras) and are exported by
  neither Keras; the module of the public application function is where
  they are, whichever the stack. A Keras without one of them leaves it out:
  models made of it are then refused as any unregistered class is.
  """
  found = {}
  for function, names in _APPLICATIONS_LAYERS:
    function = getattr(keras.applications, function, None)
    module = sys.modules.get(getattr(function, "__module__", None))
    for name in names:
      cls = getattr(module, name, None)
      if isinstance(cls, type) and issubclass(cls, keras.layers.Layer):
        found[name] = cls
  return found


def flatten_layers(model, include_self=True):
  """Every layer and nested layer of `model`, each once, in tracking order.

  Keras' `_flatten_layers` also finds layers held by other layers (a
  LatentSeparableConv2D's parts, wrapped layers); the public `layers`
  property lists only the top-level ones.
  """
  return list(model._flatten_layers(include_self=include_self))  # pylint: disable=protected-access


def is_graph_network(model):
  """Whether `model` is a functional (or Sequential) graph of layers.

  Keras has no public test: a subclassed model is also a `Functional`
  subclass sometimes, and only `_is_graph_network` tells them apart.
  """
  return bool(getattr(model, "_is_graph_network", False))


def nodes_by_depth(model):
  """The functional model's nodes by depth (`{depth: [node, ...]}`).

  The graph walker needs the nodes in dependency order; Keras exposes them
  only through `_nodes_by_depth`.
  """
  return model._nodes_by_depth  # pylint: disable=protected-access


def keras_history_layer(tensor):
  """The layer that produced a symbolic Keras tensor.

  Keras records it in `_keras_history`; there is no public accessor.
  """
  return tensor._keras_history.layer  # pylint: disable=protected-access


def cluster_coordinator(model):
  """The model's parameter-server coordinator, or None.

  `Model.make_train_function` branches on it; a replacement train function
  must do the same, and Keras keeps it in `_cluster_coordinator`.
  """
  return getattr(model, "_cluster_coordinator", None)


def steps_per_execution(model):
  """The model's `steps_per_execution` as an int, or None before compile.

  Keras stores it as the variable `_steps_per_execution`; the public
  `compile` argument is not kept.
  """
  steps = getattr(model, "_steps_per_execution", None)
  return None if steps is None else int(steps.numpy().item())


def lite_runtime_name():
  """`"ai_edge_litert"` where LiteRT is installed, else `"tf.lite"`."""
  try:
    import ai_edge_litert.interpreter  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return "tf.lite"
  return "ai_edge_litert"


def lite_interpreter(**kwargs):
  """A TFLite interpreter: LiteRT's where installed, else `tf.lite`'s.

  `tf.lite.Interpreter` is deprecated from TensorFlow 2.18 on in favour of
  the `ai-edge-litert` package, which runs the same flatbuffers through the
  same calls.

  Args:
    **kwargs: `Interpreter` arguments (`model_content`, `num_threads`, ...).
  """
  if lite_runtime_name() == "ai_edge_litert":
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    return Interpreter(**kwargs)
  return tf.lite.Interpreter(**kwargs)


def lite_builtin_kernels():
  """The op resolver of the builtin kernels alone, without XNNPACK.

  For `lite_interpreter(experimental_op_resolver_type=...)`: LiteRT and
  `tf.lite` each have their own `OpResolverType` enum, and each interpreter
  accepts only its own.
  """
  if lite_runtime_name() == "ai_edge_litert":
    from ai_edge_litert.interpreter import OpResolverType  # pylint: disable=g-import-not-at-top
  else:
    OpResolverType = tf.lite.experimental.OpResolverType  # pylint: disable=invalid-name
  return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def stock_noisy_deep_factorized(matrices, biases, factors, num_filters,
                                init_scale):
  """tensorflow-compression's own `NoisyDeepFactorized` on given parameters.

  A second implementation to test `GroupPrior`'s density against (pinned
  stack only). `tfc.DeepFactorized` makes its variables in its constructor
  and exposes them only as `_matrices`, `_biases` and `_factors`.

  Args:
    matrices: The density network's matrices, `(positions, out, in)` each.
    biases: Its biases.
    factors: Its nonlinearity factors.
    num_filters: Hidden widths.
    init_scale: Initial scale (it does not matter once values are copied).

  Returns:
    A `tfc.NoisyDeepFactorized`-equivalent distribution over `(..., positions)`.
  """
  base = tfc.DeepFactorized(batch_shape=(int(matrices[0].shape[0]),),
                            num_filters=tuple(num_filters),
                            init_scale=init_scale)
  for value, copy in zip(list(matrices) + list(biases) + list(factors),
                         base._matrices + base._biases + base._factors):  # pylint: disable=protected-access
    copy.assign(value)
  return tfc.UniformNoiseAdapter(base)
