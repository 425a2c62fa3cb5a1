"""LeNet models for MNIST: LeNet-300-100 and LeNet-5 (Caffe variant).

These are the two MNIST networks of the pruning and compression literature
(Han et al. 2015 onwards), with their usual parameter counts for 28x28x1
inputs and 10 classes: 266,610 and 431,080. Inputs are expected already
scaled (e.g. to [0, 1]); the models contain no preprocessing.
"""

from lilnetx_tf.compat import keras

from lilnetx_tf.models import _common

__all__ = ["lenet_300_100", "lenet5"]


def lenet_300_100(input_shape=(28, 28, 1), num_classes=10):
  """Builds LeNet-300-100: Flatten -> Dense 300 ReLU -> Dense 100 ReLU -> Dense.

  Args:
    input_shape: Shape of one example, any rank; it is flattened.
    num_classes: Number of logits.

  Returns:
    A `keras.Model` named `lenet_300_100` with dense layers `fc1`, `fc2`
    and `logits`.

  Raises:
    ValueError: For invalid arguments.
  """
  name = "lenet_300_100"
  input_shape = _common.check_input_shape(name, input_shape, rank=None)
  _common.check_positive(name, "num_classes", num_classes, integer=True)
  inputs = keras.Input(input_shape, name="image")
  x = keras.layers.Flatten(name="flatten")(inputs)
  x = keras.layers.Dense(300, name="fc1")(x)
  x = keras.layers.ReLU(name="fc1_relu")(x)
  x = keras.layers.Dense(100, name="fc2")(x)
  x = keras.layers.ReLU(name="fc2_relu")(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)


def lenet5(input_shape=(28, 28, 1), num_classes=10):
  """Builds LeNet-5 as in Caffe's MNIST example.

  Conv 5x5 20 -> MaxPool 2 -> Conv 5x5 50 -> MaxPool 2 -> Flatten -> Dense 500
  ReLU -> Dense. As in Caffe, the convolutions are "valid", have biases and no
  activation (the max pooling is the only nonlinearity before `fc1`).

  Args:
    input_shape: (height, width, channels) of one example; height and width
      must be at least 16.
    num_classes: Number of logits.

  Returns:
    A `keras.Model` named `lenet5` with conv layers `conv1`, `conv2` and
    dense layers `fc1`, `logits`.

  Raises:
    ValueError: For invalid arguments.
  """
  name = "lenet5"
  input_shape = _common.check_input_shape(name, input_shape, min_size=16)
  _common.check_positive(name, "num_classes", num_classes, integer=True)
  inputs = keras.Input(input_shape, name="image")
  x = keras.layers.Conv2D(20, 5, name="conv1")(inputs)
  x = keras.layers.MaxPooling2D(2, name="pool1")(x)
  x = keras.layers.Conv2D(50, 5, name="conv2")(x)
  x = keras.layers.MaxPooling2D(2, name="pool2")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  x = keras.layers.Dense(500, name="fc1")(x)
  x = keras.layers.ReLU(name="fc1_relu")(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)
