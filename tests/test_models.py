"""Tests of the model zoo `lilnetx_tf.models`."""

import gzip

import numpy as np
import pytest

import lilnetx_tf  # pylint: disable=unused-import  (quiet TensorFlow import)
import tensorflow as tf

from lilnetx_tf import compat
from lilnetx_tf import models
from lilnetx_tf.models import ChannelPad
from lilnetx_tf.models import build_model
from lilnetx_tf.models import count_macs


# name -> (small input shape used in tests, num_classes).
SMALL_INPUTS = {
    "resnet20": ((32, 32, 3), 10),
    "resnet32": ((32, 32, 3), 10),
    "resnet44": ((32, 32, 3), 100),
    "resnet56": ((32, 32, 3), 10),
    "resnet110": ((32, 32, 3), 10),
    "vgg16": ((32, 32, 3), 10),
    "lenet_300_100": ((28, 28, 1), 10),
    "lenet5": ((28, 28, 1), 10),
    "resnet18": ((64, 64, 3), 200),
    "resnet50": ((32, 32, 3), 10),
    "mobilenet_v1": ((32, 32, 3), 10),
    "mobilenet_v2": ((64, 64, 3), 7),
}


def trainable_params(model):
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_registry_lists_every_model():
  assert models.model_names() == list(models.MODELS) == list(SMALL_INPUTS)


@pytest.mark.parametrize("name", list(SMALL_INPUTS))
def test_builds_plain_model_with_logits(name):
  input_shape, num_classes = SMALL_INPUTS[name]
  model = build_model(name, input_shape, num_classes)
  assert model.name == name
  assert model.input_shape == (None,) + input_shape
  assert model.output_shape == (None, num_classes)
  last = model.layers[-1]
  assert isinstance(last, tf.keras.layers.Dense) and last.name == "logits"
  assert last.activation is tf.keras.activations.linear
  # Only stock Keras layers (no Lambda) and ChannelPad, so that
  # `compressible` and serialisation handle every model.
  for layer in model.layers:
    assert not isinstance(layer, tf.keras.layers.Lambda), layer.name
    assert (isinstance(layer, ChannelPad)
            # The stack's Keras 2 package: keras (2.14) or tf_keras.
            or type(layer).__module__.split(".")[0]
            == compat.keras.__name__.split(".")[0]), layer.name
  x = np.random.default_rng(0).normal(size=(2,) + input_shape)
  logits = model(x.astype(np.float32), training=False).numpy()
  assert logits.shape == (2, num_classes)
  assert np.all(np.isfinite(logits))


def _cifar_resnet_params(depth, base, num_classes):
  """Trainable parameters of a CIFAR ResNet, derived layer by layer."""
  n = (depth - 2) // 6
  convs = 9 * 3 * base  # Stem.
  bn_channels = base
  for stage, width in enumerate((base, 2 * base, 4 * base)):
    in_width = width // 2 if stage else base
    convs += 9 * in_width * width + (2 * n - 1) * 9 * width * width
    bn_channels += 2 * n * width
  return convs + 2 * bn_channels + (4 * base + 1) * num_classes, bn_channels


def test_resnet20_parameter_count():
  model = build_model("resnet20", (32, 32, 3), 10)
  expected, bn_channels = _cifar_resnet_params(20, 16, 10)
  assert expected == 269_722
  assert trainable_params(model) == expected
  # Keras also stores BN moving mean and variance.
  assert model.count_params() == expected + 2 * bn_channels == 271_098
  assert abs(expected - 0.27e6) / 0.27e6 < 0.01
  wide = build_model("resnet20", (32, 32, 3), 10, width=4)
  assert wide.name == "resnet20_w4"
  assert trainable_params(wide) == _cifar_resnet_params(20, 64, 10)[0]


@pytest.mark.parametrize("name, input_shape, num_classes, expected", [
    ("lenet_300_100", (28, 28, 1), 10, 266_610),
    ("lenet5", (28, 28, 1), 10, 431_080),
    # The counts of torchvision / tf.keras.applications.
    ("resnet18", (224, 224, 3), 1000, 11_689_512),
    ("resnet50", (224, 224, 3), 1000, 25_557_032),
    ("mobilenet_v1", (224, 224, 3), 1000, 4_231_976),
    ("mobilenet_v2", (224, 224, 3), 1000, 3_504_872),
    # kuangliu/pytorch-cifar VGG16 (14,728,266) less its 4,224 conv biases.
    ("vgg16", (32, 32, 3), 10, 14_728_266 - 4_224),
])
def test_known_parameter_counts(name, input_shape, num_classes, expected):
  model = build_model(name, input_shape, num_classes)
  assert trainable_params(model) == expected


def _option_a_reference(x, channels_out):
  """x[:, ::2, ::2, :] with zero channels padded equally on both sides."""
  sub = x[:, ::2, ::2, :]
  extra = channels_out - x.shape[-1]
  before = extra // 2
  return np.pad(sub, [(0, 0), (0, 0), (0, 0), (before, extra - before)])


@pytest.mark.parametrize("size, channels, before, after",
                         [(32, 16, 8, 8), (7, 5, 2, 3)])
def test_channel_pad_and_subsample_match_numpy(size, channels, before, after):
  x = np.random.default_rng(1).normal(size=(2, size, size, channels))
  x = x.astype(np.float32)
  y = tf.keras.layers.AveragePooling2D(pool_size=1, strides=2)(x)
  y = ChannelPad(before, after)(y).numpy()
  np.testing.assert_array_equal(
      y, _option_a_reference(x, channels + before + after))


def test_resnet_option_a_shortcut_in_model():
  # Width 9/16 gives 9, 18, 36 channels: the padding is uneven (4 + 5).
  model = build_model("resnet20", (32, 32, 3), 10, width=9 / 16)
  block_in = model.get_layer("stage1_block3_out").output
  for prefix, c_in, c_out in (("stage2_block1", 9, 18),
                              ("stage3_block1", 18, 36)):
    pad = model.get_layer(f"{prefix}_shortcut_pad")
    assert (pad.before, pad.after) == ((c_out - c_in) // 2,
                                       c_out - c_in - (c_out - c_in) // 2)
  shortcut = tf.keras.Model(
      block_in, model.get_layer("stage2_block1_shortcut_pad").output)
  x = np.random.default_rng(2).normal(size=(1, 32, 32, 9)).astype(np.float32)
  np.testing.assert_array_equal(shortcut(x).numpy(),
                                _option_a_reference(x, 18))


def test_channel_pad_config_shape_and_errors():
  layer = ChannelPad(1, 2, name="pad")
  clone = ChannelPad.from_config(layer.get_config())
  assert (clone.before, clone.after, clone.name) == (1, 2, "pad")
  assert layer.compute_output_shape((None, 4, 4, 3)).as_list() == [
      None, 4, 4, 6]
  assert tf.keras.utils.get_registered_name(ChannelPad) == (
      "lilnetx_tf>ChannelPad")
  with pytest.raises(ValueError, match="before"):
    ChannelPad(-1, 0)
  with pytest.raises(ValueError, match="after"):
    ChannelPad(0, 1.5)


def test_keras_save_load_round_trip(tmp_path):
  tf.keras.utils.set_random_seed(3)
  model = build_model("resnet20", (32, 32, 3), 10, width=0.5)
  # Non-trivial BN statistics, so that they are checked too.
  for layer in model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      layer.moving_mean.assign(tf.random.normal(layer.moving_mean.shape))
      layer.moving_variance.assign(
          tf.random.uniform(layer.moving_variance.shape, 0.5, 2.0))
  path = tmp_path / "m.keras"
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  assert loaded.name == model.name
  assert any(isinstance(layer, ChannelPad) for layer in loaded.layers)
  x = np.random.default_rng(4).normal(size=(4, 32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                model(x, training=False).numpy())


def test_count_macs_by_hand():
  inputs = tf.keras.Input((8, 8, 3))
  x = tf.keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8x8x4.
  x = tf.keras.layers.DepthwiseConv2D(
      3, strides=2, padding="same", depth_multiplier=2)(x)  # 4x4x8.
  x = tf.keras.layers.Conv2D(6, 1, groups=2)(x)  # 4x4x6.
  x = tf.keras.layers.BatchNormalization()(x)
  x = tf.keras.layers.Flatten()(x)  # 96.
  outputs = tf.keras.layers.Dense(5)(x)
  model = tf.keras.Model(inputs, outputs)
  expected = (8 * 8 * 3 * 3 * 3 * 4      # conv: H W kh kw C_in C_out
              + 4 * 4 * 3 * 3 * 4 * 2    # depthwise: H W kh kw C_in mult
              + 4 * 4 * 1 * 1 * 4 * 6    # grouped: C_in / groups = 4
              + 96 * 5)                  # dense: in out
  assert expected == 8_928
  assert count_macs(model) == expected

  # Dense on a (T, in) input: T products of the weights; nested models count.
  seq_in = tf.keras.Input((3, 7))
  seq = tf.keras.Model(seq_in, tf.keras.layers.Dense(2)(seq_in))
  outer_in = tf.keras.Input((3, 7))
  assert count_macs(tf.keras.Model(outer_in, seq(outer_in))) == 3 * 7 * 2

  # LeNet-5: 24*24*25*20 + 8*8*25*20*50 + 800*500 + 500*10.
  assert count_macs(build_model("lenet5", (28, 28, 1), 10)) == 2_293_000


def test_count_macs_needs_fixed_input_size():
  inputs = tf.keras.Input((None, None, 3))
  model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(2, 3)(inputs))
  with pytest.raises(ValueError, match="undefined"):
    count_macs(model)


def test_registry_errors():
  with pytest.raises(ValueError, match="'resnet21'.*resnet20, resnet32"):
    build_model("resnet21", (32, 32, 3), 10)
  with pytest.raises(ValueError, match="'alpha'.*'resnet20'.*valid options: "
                                       "width"):
    build_model("resnet20", (32, 32, 3), 10, alpha=0.5)
  with pytest.raises(ValueError, match="'width'.*valid options: none"):
    build_model("lenet5", (28, 28, 1), 10, width=2)


@pytest.mark.parametrize("name, input_shape, num_classes, options, match", [
    ("resnet20", (32, 32, 3), 10, {"width": 0}, "width"),
    ("mobilenet_v2", (32, 32, 3), 10, {"alpha": -1.0}, "alpha"),
    ("resnet18", (32, 32, 3), 0, {}, "num_classes"),
    ("resnet50", (32, 32), 10, {}, "input_shape"),
    ("vgg16", (16, 16, 3), 10, {}, "at least 32"),
    ("lenet5", (28, 28, 1), 2.5, {}, "num_classes"),
])
def test_invalid_arguments(name, input_shape, num_classes, options, match):
  with pytest.raises(ValueError, match=match):
    build_model(name, input_shape, num_classes, **options)


def test_stable_layer_names():
  names = {layer.name for layer in build_model("resnet20", (32, 32, 3),
                                               10).layers}
  assert {"stem_conv", "stage2_block1_conv1", "stage2_block1_bn2",
          "stage2_block1_shortcut_pool", "stage2_block1_shortcut_pad",
          "stage3_block3_out", "avg_pool", "logits"} <= names
  names = {layer.name for layer in build_model("resnet50", (32, 32, 3),
                                               10).layers}
  assert {"stem_pool", "stage2_block1_shortcut_conv", "stage4_block3_conv3",
          "logits"} <= names
  names = {layer.name for layer in build_model("mobilenet_v2", (32, 32, 3),
                                               10).layers}
  assert {"block1_dwconv2", "block2_conv1", "block17_conv3", "block3_add",
          "head_conv"} <= names


def _read_idx(path, offset):
  with gzip.open(path, "rb") as f:
    return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def test_lenet5_short_fit_on_mnist_lowers_loss(data_dir):
  n = 2000
  images = _read_idx(data_dir / "mnist" / "train-images-idx3-ubyte.gz", 16)
  labels = _read_idx(data_dir / "mnist" / "train-labels-idx1-ubyte.gz", 8)
  x = images[:n * 784].reshape(n, 28, 28, 1).astype(np.float32) / 255.0
  y = labels[:n].astype(np.int32)
  assert set(np.unique(y)) == set(range(10))

  tf.keras.utils.set_random_seed(0)
  model = build_model("lenet5", (28, 28, 1), 10)
  model.compile(
      optimizer=tf.keras.optimizers.Adam(1e-3),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = model.evaluate(x, y, batch_size=500, verbose=0)
  model.fit(x, y, batch_size=100, epochs=1, shuffle=False, verbose=0)
  after = model.evaluate(x, y, batch_size=500, verbose=0)
  assert before > 2.0  # About ln(10) for an untrained model.
  assert after < 0.5 * before
