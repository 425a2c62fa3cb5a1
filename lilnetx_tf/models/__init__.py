"""Model zoo: plain Keras models to be made compressible by LilNetX.

Every builder has the signature `build(input_shape, num_classes, **options)`
and returns a functional `keras.Model` made of stock layers (plus
`ChannelPad`) whose last layer, `logits`, outputs logits (no softmax).
`lilnetx_tf.compressible(model)` turns any of them into its LilNetX form.

| name                   | data            | options |
|------------------------|-----------------|---------|
| resnet20 ... resnet110 | CIFAR, 32x32x3  | width   |
| vgg16                  | CIFAR, 32x32x3  | width   |
| lenet_300_100, lenet5  | MNIST, 28x28x1  |         |
| resnet18, resnet50     | ImageNet        |         |
| mobilenet_v1/_v2       | ImageNet        | alpha   |

ImageNet models default to 224x224x3 inputs and 1000 classes but accept small
inputs too. Example:

  model = build_model("resnet20", (32, 32, 3), 10, width=4)
"""

import inspect

from lilnetx_tf.channel_pad import ChannelPad
from lilnetx_tf.method.stats import count_macs
from lilnetx_tf.models.cifar_resnet import resnet110
from lilnetx_tf.models.cifar_resnet import resnet20
from lilnetx_tf.models.cifar_resnet import resnet32
from lilnetx_tf.models.cifar_resnet import resnet44
from lilnetx_tf.models.cifar_resnet import resnet56
from lilnetx_tf.models.lenet import lenet5
from lilnetx_tf.models.lenet import lenet_300_100
from lilnetx_tf.models.mobilenet import mobilenet_v1
from lilnetx_tf.models.mobilenet import mobilenet_v2
from lilnetx_tf.models.resnet import resnet18
from lilnetx_tf.models.resnet import resnet50
from lilnetx_tf.models.vgg import vgg16

__all__ = [
    "ChannelPad",
    "MODELS",
    "build_model",
    "count_macs",
    "model_names",
]

MODELS = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "vgg16": vgg16,
    "lenet_300_100": lenet_300_100,
    "lenet5": lenet5,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
}


def model_names():
  """Returns the names of the registered models, in registry order."""
  return list(MODELS)


def _options(builder):
  """Names of a builder's options (its keyword-only parameters)."""
  return [p.name for p in inspect.signature(builder).parameters.values()
          if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_model(name, input_shape, num_classes, **options):
  """Builds a registered model.

  Args:
    name: One of `model_names()`.
    input_shape: (height, width, channels) of one example.
    num_classes: Number of logits.
    **options: Options of that model (e.g. `width` for CIFAR ResNets).

  Returns:
    The `keras.Model`.

  Raises:
    ValueError: For an unknown model name or option (the message lists the
      valid ones), or invalid argument values.
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; valid names: "
                     f"{', '.join(MODELS)}.")
  builder = MODELS[name]
  valid = _options(builder)
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise ValueError(f"Unknown option(s) {', '.join(map(repr, unknown))} for "
                     f"model {name!r}; valid options: "
                     f"{', '.join(valid) if valid else 'none'}.")
  return builder(input_shape, num_classes, **options)
