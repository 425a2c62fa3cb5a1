"""Grids and Rice codes: the float weights that ship beside the latents."""

import json

import numpy as np
import pytest
import tensorflow as tf

import by_hand
import lilnetx_tf
from lilnetx_tf.compressed import architecture
from lilnetx_tf.compressed import rice
from lilnetx_tf.method import grid
from lilnetx_tf.models import build_model


def test_rice_code_of_a_few_values_by_hand():
  # k = 1. Zigzag: 0 -> 0, -1 -> 1, 2 -> 4, -3 -> 5. Quotients 0, 0, 2, 2
  # (unary 0 | 0 | 110 | 110), then the low bits 0, 1, 0, 1, then padding.
  k, data = rice.encode([0, -1, 2, -3], k=1)
  assert k == 1
  assert data == bytes([0b00110110, 0b01010000])
  np.testing.assert_array_equal(rice.decode(data, 4, 1), [0, -1, 2, -3])


@pytest.mark.parametrize("scale", [0, 1, 30, 5000])
def test_rice_round_trips_and_matches_a_bitwise_reading(scale):
  q = np.round(np.random.default_rng(scale).laplace(0, scale, 300)).astype(int)
  k, data = rice.encode(q)
  np.testing.assert_array_equal(rice.decode(data, q.size, k), q)
  np.testing.assert_array_equal(by_hand.rice_decode(data, q.size, k), q)
  # The chosen parameter is the best: no other codes these values shorter.
  for other in range(0, 20):
    assert len(rice.encode(q, k=other)[1]) >= len(data)


@pytest.mark.parametrize("data, count, k, problem", [
    (b"", 1, 0, "fewer than 1"),
    (bytes([0b11111111]), 1, 0, "fewer than 1"),
    (bytes([0b00000000]), 1, 8, "inside the low bits"),
    (bytes([0b00000001]), 1, 0, "do not end"),
    (bytes([0, 0]), 1, 0, "do not end"),
    (bytes([0b00000000]), 1, 40, "outside"),
])
def test_rice_refuses_bits_that_are_not_a_code(data, count, k, problem):
  with pytest.raises(rice.RiceError, match=problem):
    rice.decode(data, count, k)


def test_to_grid_finds_the_coarsest_grid():
  q, e = grid.to_grid(np.float32([0.75, -0.5, 0.125, 0]))
  assert e == -3 and q.tolist() == [6, -4, 1, 0]  # Multiples of 1/8.
  assert grid.to_grid(np.zeros(3, np.float32))[0].tolist() == [0, 0, 0]
  # 1 + 2**-20 needs 20 places below its leading bit: over the limit of 16.
  assert grid.to_grid(np.float32([1 + 2**-20])) is None
  assert grid.to_grid(np.float32([1 + 2**-20]), max_bits=20)[1] == -20
  assert grid.to_grid(np.float32([np.nan])) is None


def test_grid_ste_rounds_exactly_with_an_identity_gradient():
  x = tf.constant(np.random.default_rng(0).normal(0, 0.3, 500), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = grid.grid_ste(x, 6)
    loss = tf.reduce_sum(y * tf.range(500, dtype=tf.float32))
  np.testing.assert_array_equal(y.numpy(), by_hand.on_grid(x.numpy(), 6))
  np.testing.assert_array_equal(tape.gradient(loss, x).numpy(),
                                np.arange(500, dtype=np.float32))
  q, e = grid.to_grid(y.numpy())
  assert e == np.floor(np.log2(np.abs(x.numpy()).max())) - 6
  assert 2**6 <= np.abs(q).max() <= 2**7
  assert grid.grid_ste(x, 0) is x


def test_grid_ste_at_the_edges_of_its_exponent_rule():
  rng = np.random.default_rng(1)
  arrays = [rng.normal(0, 0.3, 200), rng.uniform(-8, 8, 50),
            np.array([1.0, -0.5, 0.25, 0.3]),  # Largest magnitude 2**0.
            np.array([-4.0, 3.999, 1e-3])]
  for values in arrays:
    values = values.astype(np.float32)
    for bits in (1, 6, 8):
      np.testing.assert_array_equal(grid.grid_ste(values, bits).numpy(),
                                    by_hand.on_grid(values, bits))
  np.testing.assert_array_equal(
      grid.grid_ste(np.zeros(3, np.float32), 6).numpy(), np.zeros(3))


def test_decoders_and_biases_train_on_their_grid_and_ship_exactly(tmp_path):
  tf.keras.utils.set_random_seed(0)
  model = lilnetx_tf.compressible(
      build_model("lenet5", (28, 28, 1), 10), initial_prior_steps=0)
  rng = np.random.default_rng(1)
  for layer in model.latent_layers:
    layer.bias_variable.assign(rng.normal(0, 0.3, layer.bias_variable.shape))
  for layer in model.latent_layers:
    bias = layer.bias.numpy()
    np.testing.assert_array_equal(
        bias, by_hand.on_grid(layer.bias_variable.numpy(), 6))
    assert not np.array_equal(bias, layer.bias_variable.numpy())
  for decoder in model.decoders.values():
    np.testing.assert_array_equal(
        decoder.matrix.numpy(),
        decoder.scale.numpy() * by_hand.on_grid(decoder.unit_matrix.numpy(), 6))
  x = rng.random((3, 28, 28, 1), np.float32)
  lilnetx_tf.save_compressed(model, tmp_path / "m.lnx")
  loaded = lilnetx_tf.load_compressed(tmp_path / "m.lnx")
  np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
  for layer in model.latent_layers:
    np.testing.assert_array_equal(
        loaded.get_layer(layer.name).bias.numpy(),
        by_hand.on_grid(layer.bias_variable.numpy(), 6))
  info = lilnetx_tf.inspect_compressed(tmp_path / "m.lnx")
  # 1,205 decoder entries and biases: about a byte each instead of four.
  floats = sum(s["bytes"] for s in info["sections"] if s["tag"] == "FLTS")
  decoders = sum(g["decoder_bytes"] for g in info["groups"])
  assert floats + decoders < 1.2 * (580 + 626)
  # Without grids the same weights are float32.
  plain = lilnetx_tf.LilNetXModel.from_config(
      dict(model.get_config(), grid_bits=0))
  plain.set_weights(model.get_weights())
  lilnetx_tf.save_compressed(plain, tmp_path / "plain.lnx")
  info = lilnetx_tf.inspect_compressed(tmp_path / "plain.lnx")
  assert [g["decoder_bytes"] for g in info["groups"]] == [4 * 625, 4]
  assert [s["bytes"] for s in info["sections"] if s["tag"] == "FLTS"] == [
      16 + 4 * 580]


@pytest.mark.parametrize("name, shape", [
    ("lenet5", (28, 28, 1)), ("resnet20", (32, 32, 3)),
    ("mobilenet_v2", (32, 32, 3))])
def test_compact_architecture_rebuilds_the_same_model(name, shape):
  full = json.loads(build_model(name, shape, 10).to_json())
  compact = architecture.compact_architecture(full)
  assert architecture.architecture_problem(compact) is None
  text = json.dumps(compact)
  assert len(text) < 0.7 * len(json.dumps(full))
  assert "_initializer" not in text and "build_config" not in text
  rebuilt = json.loads(tf.keras.models.model_from_json(text).to_json())

  def without_initializers(config):
    if isinstance(config, dict):
      return {k: without_initializers(v) for k, v in config.items()
              if not k.endswith("_initializer")}
    if isinstance(config, list):
      return [without_initializers(v) for v in config]
    return config

  assert without_initializers(rebuilt) == without_initializers(full)
