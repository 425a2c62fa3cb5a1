"""Properties of the LilNetX building blocks: layers, decoders, priors, codec."""

import numpy as np
import pytest
import tensorflow as tf

import by_hand
import lilnetx_tf
from lilnetx_tf import compat
from lilnetx_tf.compressed import codec
from lilnetx_tf.method import groups
from lilnetx_tf.method import prior_fit
from lilnetx_tf.method import priors
from lilnetx_tf.method import sparsity
from lilnetx_tf.method.decoders import decode_kernel
from lilnetx_tf.models import build_model


def _small_net():
  inputs = tf.keras.Input((8, 8, 3))
  h = tf.keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
  h = tf.keras.layers.DepthwiseConv2D(3, padding="same")(h)
  h = tf.keras.layers.Conv2D(5, 1)(h)
  h = tf.keras.layers.GlobalAveragePooling2D()(h)
  outputs = tf.keras.layers.Dense(4)(h)
  return tf.keras.Model(inputs, outputs, name="small")


def _compiled(model, **kwargs):
  lilnetx = lilnetx_tf.compressible(model, seed=0, **kwargs)
  lilnetx.compile(
      tf.keras.optimizers.Adam(1e-2),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return lilnetx


def test_slices_round_trip_and_layout():
  kernel = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
  slices = groups.to_slices(kernel)
  assert slices.shape == (8, 9)
  # Row i * out + o holds the k x k slice of (input i, output o).
  np.testing.assert_array_equal(slices[1 * 4 + 3], kernel[:, :, 1, 3].ravel())
  np.testing.assert_array_equal(groups.from_slices(slices, kernel.shape),
                                kernel)
  np.testing.assert_array_equal(
      groups.from_slices(groups.to_slices(tf.constant(kernel)),
                         kernel.shape).numpy(), kernel)
  # The priors' position-major view is the transposed slice matrix.
  np.testing.assert_array_equal(groups.to_positions(kernel), slices.T)
  np.testing.assert_array_equal(
      groups.to_positions(tf.constant(kernel)).numpy(), slices.T)
  dense = np.arange(6, dtype=np.float32).reshape(2, 3)
  np.testing.assert_array_equal(groups.to_positions(dense),
                                groups.to_slices(dense).T)
  np.testing.assert_array_equal(groups.to_slices(dense), dense.reshape(6, 1))
  # A Conv1D kernel (k, in, out): row i * out + o holds the k taps.
  conv1d = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
  slices = groups.to_slices(conv1d)
  np.testing.assert_array_equal(slices[1 * 3 + 2], conv1d[:, 1, 2])
  np.testing.assert_array_equal(groups.from_slices(slices, conv1d.shape),
                                conv1d)
  np.testing.assert_array_equal(
      groups.from_slices(groups.to_slices(tf.constant(conv1d)),
                         conv1d.shape).numpy(), conv1d)
  np.testing.assert_array_equal(groups.to_positions(conv1d), slices.T)
  assert [groups.group_name("conv", (5,)), groups.group_name("conv", (3, 1)),
          groups.group_name("depthwise", (3, 3))] == [
              "conv5", "conv3x1", "depthwise3x3"]


def test_zero_latent_slice_decodes_to_exact_zero():
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  for layer in model.latent_layers:
    latent = layer.latent.numpy()
    if latent.ndim == 4:
      latent[:, :, 0, :] = 0.3  # Rounds to zero.
      latent[:, :, 1, 0] = -0.2
    else:
      latent[0, :] = 0.0
    layer.latent.assign(latent)
    kernel = layer.decoded_kernel().numpy()
    if kernel.ndim == 4:
      assert np.all(kernel[:, :, 0, :] == 0) and np.all(kernel[:, :, 1, 0] == 0)
      assert np.count_nonzero(kernel[:, :, 2:, :]) > 0
    else:
      assert np.all(kernel[0] == 0)
  # Decoders have no shift: any decoder matrix maps zero slices to zero.
  matrix = tf.random.normal((9, 9))
  latent = np.random.default_rng(0).integers(-3, 4, (3, 3, 4, 5))
  latent[:, :, 2, 3] = 0
  decoded = decode_kernel(tf.constant(latent, tf.float32), matrix).numpy()
  assert np.all(decoded[:, :, 2, 3] == 0)


def test_decoder_mixes_kernel_positions_per_slice():
  matrix = np.random.default_rng(1).normal(size=(9, 9)).astype(np.float32)
  latent = np.random.default_rng(2).integers(-4, 5, (3, 3, 2, 3)).astype(
      np.float32)
  decoded = decode_kernel(latent, matrix).numpy()
  expected = groups.from_slices(groups.to_slices(latent) @ matrix,
                                latent.shape)
  np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=1e-5)


def test_decoded_kernel_is_decoder_of_rounded_latent():
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  for layer in model.latent_layers:
    matrix = model.decoders[layer.group].matrix
    expected = decode_kernel(np.round(layer.latent.numpy()), matrix).numpy()
    np.testing.assert_array_equal(layer.decoded_kernel().numpy(), expected)


@pytest.mark.parametrize("input_shape", [(5, 6), (2, 3, 6)])
def test_dense_scales_its_outputs_as_the_decoded_kernel_would(input_shape):
  """In training `LatentDense` computes `(x @ q) * s`: the values and
  gradients of `x @ (q * s) + b`, with the rounding's straight-through
  gradient; outside training, `x @ (q * s) + b` itself."""
  inputs = tf.keras.Input(input_shape[1:])
  outputs = tf.keras.layers.Dense(4, activation="tanh")(inputs)
  model = lilnetx_tf.compressible(tf.keras.Model(inputs, outputs), seed=0)
  layer, = model.latent_layers
  decoder = model.decoders["dense"]
  decoder.unit_matrix.assign([[1.37]])
  layer.bias_variable.assign([0.25, -0.5, 0.0, 1.0])
  x = tf.constant(np.random.default_rng(0).normal(size=input_shape),
                  tf.float32)
  weights = [layer.latent, decoder.unit_matrix, layer.bias_variable]
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    got = layer(x, training=True)
    # By hand: the decoded kernel, a plain product, the latent's gradient
    # passed through the rounding.
    latent = layer.latent + tf.stop_gradient(
        tf.round(layer.latent) - layer.latent)
    kernel = latent * decoder.matrix[0, 0]
    expected = tf.tanh(tf.tensordot(x, kernel, 1) + layer.bias)
  np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5,
                             atol=1e-6)
  for target in weights + [x]:
    np.testing.assert_allclose(
        tape.gradient(got, target).numpy(),
        tape.gradient(expected, target).numpy(), rtol=1e-4, atol=1e-6)
  # Outside training: the decoded kernel's op itself, bit for bit.
  kernel = layer.decoded_kernel()
  np.testing.assert_array_equal(
      layer(x, training=False).numpy(),
      tf.tanh(tf.nn.bias_add(tf.tensordot(x, kernel, 1), layer.bias)).numpy())


def test_groups_and_decoders_are_shared_per_kernel_shape():
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  assert sorted(model.decoders) == ["conv1x1", "conv3x3", "dense",
                                    "depthwise3x3"]
  assert model.decoders["conv3x3"].matrix.shape == (9, 9)
  assert model.decoders["conv1x1"].matrix.shape == (1, 1)
  assert model.decoders["dense"].matrix.shape == (1, 1)
  assert model.sparsity_groups == ["conv3x3", "depthwise3x3"]
  resnet = lilnetx_tf.compressible(build_model("resnet20", (32, 32, 3), 10))
  # 19 conv3x3 layers share one decoder and one prior.
  assert len(resnet.group_layers["conv3x3"]) == 19
  assert len(resnet.decoders) == 2 and len(resnet.priors) == 2
  decoder_ids = {id(l.decoder) for l in resnet.group_layers["conv3x3"]}
  assert decoder_ids == {id(resnet.decoders["conv3x3"])}


def test_initialisation_matches_standard_init_scale():
  model = lilnetx_tf.compressible(build_model("resnet20", (32, 32, 3), 10),
                                  seed=0)
  for layer in model.latent_layers:
    if layer.group != "conv3x3":
      continue
    std = np.std(layer.decoded_kernel().numpy())
    fan_in = np.prod(layer.latent.shape[:-1])
    expected = np.sqrt(2.0 / fan_in)  # he_normal in the zoo models.
    assert 0.6 * expected < std < 1.6 * expected, layer.name


def test_gradients_reach_latents_decoders_and_priors():
  """The loss trains latents and decoders; their own objective the priors."""
  model = _compiled(_small_net(), lambda_rate=1.0, lambda_sparsity=1e-3)
  x = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
  y = np.array([0, 1, 2, 3])
  with tf.GradientTape(persistent=True) as tape:
    logits = model(x, training=True)
    loss = tf.reduce_mean(
        tf.keras.losses.sparse_categorical_crossentropy(y, logits,
                                                        from_logits=True))
    loss += model.compression_loss(training=True)[0]
    prior_objective = model.prior_fit_bits()
  variables = ([l.latent for l in model.latent_layers] +
               [d.unit_matrix for d in model.decoders.values()])
  for var, grad in zip(variables, tape.gradient(loss, variables)):
    assert grad is not None, var.name
    assert np.any(grad.numpy() != 0), var.name
  priors = model.prior_variables()
  assert all(g is None for g in tape.gradient(loss, priors))
  for var, grad in zip(priors, tape.gradient(prior_objective, priors)):
    assert grad is not None, var.name
    assert np.any(grad.numpy() != 0), var.name


def test_priors_train_on_their_own_optimizer():
  model = _compiled(_small_net(), lambda_rate=1e-2, prior_steps=2,
                    initial_prior_steps=3)
  model.compile(tf.keras.optimizers.Adam(1e-2),
                prior_optimizer=tf.keras.optimizers.Adam(1e-4),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  x = np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)
  y = np.arange(8) % 4
  before = [v.numpy() for v in model.prior_variables()]
  model.fit(x, y, epochs=1, batch_size=8, verbose=0)
  after = [v.numpy() for v in model.prior_variables()]
  assert any(np.any(a != b) for a, b in zip(before, after))
  # 3 fitting steps before training, 2 per training step, 3 after.
  assert int(model.prior_optimizer.iterations) == 3 + 2 + 3
  assert int(model.optimizer.iterations) == 1
  # The prior optimizer moves prior weights by at most ~its learning rate.
  assert max(np.abs(a - b).max() for a, b in zip(before, after)) < 8 * 1.5e-4


def test_priors_fit_the_latents_at_zero_rate_weight():
  """Fitting moves the priors' bits to the latents' entropy, lambda_I = 0."""
  tf.keras.utils.set_random_seed(0)
  model = _compiled(build_model("lenet5", (28, 28, 1), 10), lambda_rate=0.0)
  model.compile(prior_optimizer=tf.keras.optimizers.Adam(1e-2))
  # A peaked, heavy-tailed distribution like trained latents'.
  rng = np.random.default_rng(1)
  for layer in model.latent_layers:
    shape = layer.latent.shape
    value = np.where(rng.random(shape) < 0.9, 0.0,
                     np.round(rng.laplace(0, 1.5, shape)))
    layer.latent.assign(value.astype(np.float32))
  entropy = by_hand.group_entropy_bits(model)
  assert not np.isclose(model.total_bits(False).numpy(),
                        sum(entropy.values()), rtol=0.2)  # Unfitted.
  model.fit_priors(1500)
  # One trace for the 1,500 steps: `compile` created the optimizer's slots;
  # a first step that creates variables makes `tf.function` trace it twice.
  _, step, fit = prior_fit._PRIOR_FITS[model]  # pylint: disable=protected-access
  assert fit.experimental_get_tracing_count() == 1
  assert step.experimental_get_tracing_count() == 1
  for g, prior in model.priors.items():
    rows = tf.constant(by_hand.group_rows(model)[g], tf.float32)
    bits = prior.bits(rows, training=False).numpy()
    assert entropy[g] <= bits + 1e-3 * entropy[g], g  # The entropy bounds it.
    assert bits <= 1.03 * entropy[g] + 64, g  # 8 bytes of slack.


def test_eager_and_tf_function_agree():
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  x = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
  eager = model(x, training=False).numpy()
  graph = tf.function(lambda t: model(t, training=False))(x).numpy()
  np.testing.assert_allclose(eager, graph, rtol=1e-6, atol=1e-6)
  bits_eager = model.total_bits(training=False).numpy()
  bits_graph = tf.function(lambda: model.total_bits(training=False))().numpy()
  np.testing.assert_allclose(bits_eager, bits_graph, rtol=1e-6)


def _mixture_prob_by_hand(prior, x):
  """The prior's probabilities of `(n, positions)` values, independently.

  The deep factorized part written out in NumPy (`by_hand`), on copies of
  the weights, and the logistic tail in NumPy.
  """
  deep = by_hand.noisy_deep_factorized_prob(
      *[[v.numpy() for v in part]
        for part in prior.deep_factorized_parameters()], np.asarray(x))
  t = prior.tail_logit.numpy()[:, 0].astype(np.float64)
  loc = prior.tail_loc.numpy()[:, 0]
  # The documented parameterisation: scale softplus(s) + 1, weight
  # sigmoid(t) / 2.
  scale = np.log1p(np.exp(prior.tail_scale.numpy()[:, 0])) + 1.0
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  x = np.asarray(x, np.float64)
  tail = sigmoid((x + .5 - loc) / scale) - sigmoid((x - .5 - loc) / scale)
  weight = sigmoid(t) / 2
  return (1 - weight) * deep + weight * tail


def test_eval_bits_are_self_information_of_rounded_latents():
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  layer = model.group_layers["conv3x3"][0]
  prior = model.priors["conv3x3"]
  prior.tail_logit.assign(tf.fill(prior.tail_logit.shape, -1.0))
  prior.tail_loc.assign(tf.fill(prior.tail_loc.shape, 0.3))
  values = groups.to_positions(layer.latent)
  bits = prior.bits(values, training=False).numpy()
  probs = _mixture_prob_by_hand(prior, tf.round(tf.transpose(values)))
  np.testing.assert_allclose(bits, -np.log2(probs).sum(), rtol=1e-4)
  # The histogram path gives the same figure.
  np.testing.assert_allclose(prior.histogram_bits(values).numpy(), bits,
                             rtol=1e-5)
  # Noisy training bits are a (loose) upper bound-like estimate, close by.
  assert abs(prior.bits(values, training=True).numpy() - bits) < 0.2 * bits


def test_range_coding_round_trip_and_size():
  model = lilnetx_tf.compressible(build_model("resnet20", (32, 32, 3), 10),
                                  seed=0)
  coded = codec.compress_latents(model)
  decoded = codec.decompress_latents(coded)
  for name, latent in codec.rounded_latents(model).items():
    np.testing.assert_array_equal(decoded[name], latent)
  entropy = by_hand.group_entropy_bits(model)
  for c in coded:  # Tables fitted to the latents: about their entropy.
    assert entropy[c.group] <= 8 * len(c.data) + 64, c.group
    assert len(c.data) <= 1.03 * entropy[c.group] / 8 + 16, c.group


def test_range_coding_handles_outliers_beyond_the_tables():
  model = lilnetx_tf.compressible(_small_net(), seed=0)
  layer = model.group_layers["conv3x3"][0]
  latent = layer.latent.numpy()
  latent[0, 0, 0, 0] = 5000.0  # A table 5,000 values wide, mostly empty.
  layer.latent.assign(latent)
  decoded = codec.decompress_latents(codec.compress_latents(model))
  np.testing.assert_array_equal(decoded[layer.name], np.round(latent))


@pytest.mark.parametrize("structure,shape,axes", [
    ("slice", (3, 3, 4, 5), (0, 1)),
    ("out_channel", (3, 3, 4, 5), (0, 1, 2)),
    ("in_channel", (3, 3, 4, 5), (0, 1, 3)),
    ("slice", (5, 4, 6), (0,)),  # Conv1D kernels.
    ("out_channel", (5, 4, 6), (0, 1)),
    ("in_channel", (5, 4, 6), (0, 2)),
    ("slice", (4, 6), ()),  # Dense kernels: single weights.
    ("out_channel", (4, 6), (0,)),
    ("in_channel", (4, 6), (1,)),
])
def test_block_norms(structure, shape, axes):
  latent = tf.random.normal(shape)
  value = latent.numpy()
  l2 = sparsity.block_norms(latent, structure, "l2").numpy()
  np.testing.assert_allclose(
      l2, np.sqrt(np.sum(value ** 2, axis=axes)), rtol=1e-5)
  l1 = sparsity.block_norms(latent, structure, "l1").numpy()
  np.testing.assert_allclose(l1, np.abs(value).sum(axis=axes), rtol=1e-5)
  linf = sparsity.block_norms(latent, structure, "linf").numpy()
  np.testing.assert_allclose(linf, np.abs(value).max(axis=axes) if axes
                             else np.abs(value))
  with tf.GradientTape() as tape:
    zero = tf.Variable(tf.zeros(shape))
    total = tf.reduce_sum(sparsity.block_norms(zero, structure, "l2"))
  assert np.all(np.isfinite(tape.gradient(total, zero).numpy()))


def test_combined_structures_add_both_terms_by_hand():
  value = np.random.default_rng(3).normal(size=(3, 3, 4, 5)).astype(np.float32)
  norms = sparsity.block_norms(tf.constant(value), "slice+out_channel").numpy()
  slices = np.sqrt(np.sum(value ** 2, axis=(0, 1))).ravel()
  channels = np.sqrt(np.sum(value ** 2, axis=(0, 1, 2)))
  np.testing.assert_allclose(norms, np.concatenate([slices, channels]),
                             rtol=1e-5)
  model = lilnetx_tf.compressible(_small_net(), lambda_sparsity=1.0,
                                  sparsity_structure="out_channel+slice")
  by_hand = sum(
      np.sum(np.sqrt(np.sum(l.latent.numpy() ** 2, axis=axes)))
      for l in model.latent_layers if l.group in model.sparsity_groups
      for axes in ((0, 1), (0, 1, 2)))
  np.testing.assert_allclose(model.block_norm_sum().numpy(), by_hand,
                             rtol=1e-4)
  for bad in ("slice+slice", "slice+rows", "slice,out_channel"):
    with pytest.raises(ValueError, match="joined by '\\+'"):
      sparsity.check_structure(bad)


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match="in_channel"):
    lilnetx_tf.compressible(_small_net(), sparsity_structure="rows")
  with pytest.raises(ValueError, match="linf"):
    lilnetx_tf.compressible(_small_net(), sparsity_norm="l3")
  with pytest.raises(ValueError, match="conv3x3"):
    lilnetx_tf.compressible(_small_net(), sparsity_groups=["conv5x5"])
  with pytest.raises(ValueError, match="lambda_rate"):
    lilnetx_tf.compressible(_small_net(), lambda_rate=-1.0)
  with pytest.raises(ValueError, match="no Conv1D, Conv2D"):
    inputs = tf.keras.Input((4,))
    lilnetx_tf.compressible(
        tf.keras.Model(inputs, tf.keras.layers.ReLU()(inputs)))
  with pytest.raises(RuntimeError, match="no decoder"):
    layer = lilnetx_tf.LatentDense(3)
    layer(np.ones((1, 2), np.float32))


def _without_tail(prior):
  """The prior with a negligible tail weight (about 1e-13)."""
  prior.build()
  prior.tail_logit.assign(tf.fill(prior.tail_logit.shape, -30.0))
  return prior


def _stock_deep_factorized(prior):
  return compat.stock_noisy_deep_factorized(
      *prior.deep_factorized_parameters(), prior.num_filters,
      prior.init_scale)


@pytest.mark.needs_tfc
def test_prior_bits_equal_tensorflow_compression_entropy_model():
  """GroupPrior.bits gives ContinuousBatchedEntropyModel's figures."""
  tf.keras.utils.set_random_seed(0)
  prior = _without_tail(lilnetx_tf.GroupPrior(9, init_scale=4.0))
  slices = tf.random.stateless_uniform((3000, 9), seed=(3, 4), minval=-9,
                                       maxval=9)
  entropy_model = compat.tfc.ContinuousBatchedEntropyModel(
      _stock_deep_factorized(prior), coding_rank=2, compression=False,
      offset_heuristic=False)
  _, expected = entropy_model(slices, training=False)
  ours = prior.bits(tf.transpose(slices), training=False)
  np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-5)
  with pytest.raises(ValueError, match=r"position-major values of shape \(9, n\)"):
    prior.bits(slices, training=False)  # The slice layout, not transposed.
  # Training bits: the same density at noisy points, so close on average.
  _, noisy = entropy_model(slices, training=True)
  ours = prior.bits(tf.transpose(slices), training=True)
  np.testing.assert_allclose(ours.numpy(), noisy.numpy(), rtol=0.01)


def test_training_bits_from_the_table_match_the_density_network():
  """The tabulated training bound against the network on every latent.

  Priors fitted to peaked latents (their densities are sharpest then), the
  same noise. The bits must match `GroupPrior.log_prob` at each noisy latent,
  the direct evaluation the table replaces; the gradient of each latent must
  be the secant of that direct evaluation over its table cell (1/64 wide,
  grid on the integers), the derivative of the interpolation.
  """
  model = _compiled(_small_net(), lambda_rate=0.0)
  rng = np.random.default_rng(1)
  for layer in model.latent_layers:
    shape = layer.latent.shape
    layer.latent.assign(np.where(rng.random(shape) < 0.9, 0.0, np.round(
        rng.laplace(0, 3, shape))).astype(np.float32))
  model.fit_priors(300)
  steps = 64
  for g, prior in model.priors.items():
    parts = model._group_positions(g)  # pylint: disable=protected-access
    values = tf.concat(parts, axis=1)
    # The parts are counted as their concatenation.
    np.testing.assert_allclose(prior.histogram_bits(parts).numpy(),
                               prior.histogram_bits(values).numpy(),
                               rtol=1e-6)
    # A far latent, read from the table's edge extrapolated (the tails are
    # logistic: their log is linear); the table stops at +-128. Its bits
    # dominate the sum, and the edge cell's rise (a difference of float32
    # bits near 100) is known to about 1e-3 over 20,000 units.
    far = tf.tensor_scatter_nd_update(values, [[0, 0]], [-20000.0])
    for latents, tolerance in ((values, 2e-3), (far, 5e-3)):
      tf.random.set_seed(5)
      with tf.GradientTape() as tape:
        tape.watch(latents)
        bits = prior.bits(latents, training=True)
      gradient = tape.gradient(bits, latents).numpy()
      tf.random.set_seed(5)
      noisy = (latents + priors.uniform_noise(tf.shape(latents))).numpy()

      def direct(points):
        return prior.log_prob(tf.constant(points, tf.float32)).numpy() / (
            -np.log(2))

      expected_bits = direct(noisy).sum()
      # The interpolation error, relative, and at most a thousandth of a
      # bit per latent where a group has few.
      assert abs(float(bits) - expected_bits) <= (
          tolerance * abs(expected_bits) + 1e-3 * latents.shape[1]), g
      low = np.floor(max(noisy.min(), -128.0))
      high = max(np.ceil(min(noisy.max(), 128.0)), low + 1)
      cell = np.clip(np.floor((noisy - low) * steps), 0,
                     (high - low) * steps - 1)
      left = (low + cell / steps).astype(np.float32)
      right = (low + (cell + 1) / steps).astype(np.float32)
      secant = (direct(right) - direct(left)) * steps
      np.testing.assert_allclose(gradient, secant, rtol=1e-3,
                                 atol=1e-3 * np.abs(secant).max())
    for bad in (np.nan, np.inf):
      broken = tf.tensor_scatter_nd_update(values, [[0, 0]], [bad])
      assert not np.isfinite(prior.bits(broken, training=True).numpy()), g


def test_deep_factorized_log_prob_by_hand():
  """The deep factorized component against a float64 NumPy network."""
  tf.keras.utils.set_random_seed(0)
  prior = lilnetx_tf.GroupPrior(9, init_scale=6.0)
  prior.build()
  for bias in prior.deep_factorized_parameters()[1]:  # Off the symmetric start.
    bias.assign(bias + tf.random.uniform(bias.shape, -2.0, 2.0))
  x = np.random.default_rng(0).uniform(-25, 25, (2000, 9)).astype(np.float32)
  expected = np.log(by_hand.noisy_deep_factorized_prob(
      *[[v.numpy() for v in part]
        for part in prior.deep_factorized_parameters()], x))
  ours = prior.deep_factorized_log_prob(tf.transpose(x)).numpy().T
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.needs_tfc
def test_prior_log_prob_equals_tensorflow_compression():
  """The one-pass log-prob equals tfc's UniformNoiseAdapter, values and grads."""
  tf.keras.utils.set_random_seed(0)  # The prior's random initial biases.
  prior = _without_tail(lilnetx_tf.GroupPrior(9))
  # Stock tfc throughout: its own density network, on copies of the weights.
  reference = _stock_deep_factorized(prior)
  ours = lambda x: tf.transpose(prior.deep_factorized_log_prob(tf.transpose(x)))
  # The two networks' variables share names (matrix_0, bias_0, ...).
  short = lambda v: v.name.split(":")[0].split("/")[-1]
  stock = {short(v): v for v in reference.trainable_variables}
  pairs = [(v, stock[short(v)])
           for part in prior.deep_factorized_parameters() for v in part]
  assert len(stock) == len(pairs) == 8
  x = tf.random.stateless_uniform((4000, 9), seed=(1, 2), minval=-60,
                                  maxval=60)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    a = tf.reduce_sum(ours(x))
    b = tf.reduce_sum(reference.log_prob(x))
  # The position-major path the training step uses gives the same values.
  np.testing.assert_allclose(
      tf.transpose(prior.log_prob(tf.transpose(x))).numpy(),
      reference.log_prob(x).numpy(), rtol=1e-6, atol=1e-6)
  # The same formula; XLA-free float32 kernels may still round differently.
  np.testing.assert_allclose(ours(x).numpy(),
                             reference.log_prob(x).numpy(), rtol=1e-6,
                             atol=1e-6)
  np.testing.assert_allclose(tape.gradient(a, x).numpy(),
                             tape.gradient(b, x).numpy(), rtol=1e-6,
                             atol=1e-6)
  grads = tape.gradient(a, [v for v, _ in pairs])
  ref_grads = tape.gradient(b, [c for _, c in pairs])
  for g, r in zip(grads, ref_grads):
    # Sums over 36,000 terms of both signs in another order: float32
    # rounding reaches ~1e-4 relative here.
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-3, atol=1e-5)


def test_reference_mode_loss_by_hand():
  """`reference=True` is the official implementation's objective, by hand."""
  inputs = tf.keras.Input((6, 6, 2))
  h = tf.keras.layers.Conv2D(3, 3)(inputs)
  h = tf.keras.layers.Flatten()(tf.keras.layers.GlobalAveragePooling2D()(h))
  net = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(h))
  lam, lam_rho, decay, b, warmup = 2.0, 0.01, 1e-3, 3.0, 2
  model = lilnetx_tf.compressible(
      net, lambda_rate=lam, lambda_sparsity=lam_rho, weight_decay=decay,
      latent_init_bound=b, reference=True, seed=0)
  conv, dense = model.group_layers["conv3x3"][0], model.group_layers["dense"][0]

  # Initialisation: var from the widest layer (4 outputs), bounds per fan-out.
  var = 24 / 4 / ((2 * b + 1)**2 - 1)
  for layer, fan in ((conv, 3 * 9), (dense, 4)):
    bound = (np.sqrt(24 / (var * fan) + 1) - 1) / 2
    latent = np.abs(layer.latent.numpy())
    assert latent.max() <= bound and latent.max() > 0.7 * bound, layer.name
  decoder = model.decoders["conv3x3"]
  assert float(decoder.scale.numpy()) == 1.0  # A raw matrix.
  assert 0.6 < np.std(decoder.unit_matrix.numpy()) / np.sqrt(var) < 1.5

  # Warm-up: lambda * (min(e, W) + 1) / (W + 1).
  callback = lilnetx_tf.RateWarmup(warmup, formula="reference")
  callback.set_model(model)
  for epoch, fraction in enumerate([1 / 3, 2 / 3, 1, 1]):
    callback.on_epoch_begin(epoch)
    np.testing.assert_allclose(model.lambda_rate.numpy(), lam * fraction,
                               rtol=1e-6)
  callback.on_epoch_begin(0)

  # The loss: rate per kernel slice (2 x 3 conv slices, 3 x 4 dense ones),
  # L2 norms of the conv slices, squared L2 of all latents.
  bits = 0.0
  for layer in (conv, dense):
    values = np.round(groups.to_positions(layer.latent.numpy()).T)
    bits -= np.log2(_mixture_prob_by_hand(model.priors[layer.group],
                                          values)).sum()
  latent = conv.latent.numpy().astype(np.float64)
  norms = np.sqrt((latent**2).sum(axis=(0, 1))).sum()
  squares = sum((l.latent.numpy().astype(np.float64)**2).sum()
                for l in (conv, dense))
  expected = lam / 3 * bits / (6 + 12) + lam_rho * norms + decay * squares
  loss = model.compression_loss(training=False)[0].numpy()
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  # The library's own normalisation divides by the latents (54 + 12).
  model.reference = False
  model.rate_normalizer = model.num_latents
  np.testing.assert_allclose(
      model.compression_loss(training=False)[0].numpy(),
      lam / 3 * bits / 66 + lam_rho * norms + decay * squares, rtol=1e-4)


def test_prior_fit_objective_survives_non_finite_and_huge_latents():
  """NaN bits for a NaN latent (no crash); huge latents cost no huge memory."""
  prior = lilnetx_tf.GroupPrior(1)
  values = np.zeros((1, 100), np.float32)
  values[0, 0] = 1e30
  assert np.isfinite(prior.histogram_bits(values).numpy())
  values[0, 1] = np.nan
  assert np.isnan(prior.histogram_bits(values).numpy())
  assert np.isnan(tf.function(prior.histogram_bits)(values).numpy())


def test_rate_gradient_matches_a_finite_difference():
  """The rate term's gradient to a latent, against a difference quotient.

  The training bound adds uniform noise, drawn layer by layer after the
  global seed is set (here, a group of one layer); drawing it again the same
  way makes the term a function of the latents, linear over each cell of the
  priors' table (1/64 wide, grid on the integers). The quotient is taken
  over the latent's cell of the direct evaluation `GroupPrior.log_prob`. The
  prior is factorized, so one latent's change moves only its own term: the
  difference is taken on that term alone, without cancellation against the
  rest of the sum.
  """
  lambda_rate = 3.0
  model = lilnetx_tf.compressible(_small_net(), seed=0, lambda_rate=lambda_rate,
                                  lambda_sparsity=0.0, weight_decay=0.0)
  layer = model.latent_layers[0]
  first_group = next(iter(model.group_layers))
  assert model.group_layers[first_group][0] is layer
  tf.random.set_seed(11)
  with tf.GradientTape() as tape:
    loss = model.compression_loss(training=True)[0]
  gradient = tape.gradient(loss, layer.latent).numpy()
  # The noise of the group's first layer, drawn as `GroupPrior.bits` draws
  # it; the table's lower end is the floor of the group's noisy values.
  assert len(model.group_layers[first_group]) == 1
  start = layer.latent.numpy()  # (3, 3, in, out): position kh * 3 + kw.
  tf.random.set_seed(11)
  value = start.reshape(9, -1) + priors.uniform_noise((9, start[0, 0].size))
  value = value.numpy()
  low = np.floor(value.min())
  prior = model.priors[first_group]
  rng = np.random.default_rng(3)
  for kh, kw, i, o in zip(*(rng.integers(0, n, 6) for n in start.shape)):
    position, column = kh * 3 + kw, i * start.shape[3] + o
    left = low + np.floor((value[position, column] - low) * 64) / 64

    def log_prob(point):
      shifted = value.copy()
      shifted[position, column] = point
      return float(prior.log_prob(shifted).numpy()[position, column])

    derivative = (log_prob(left + 1 / 64) - log_prob(left)) * 64
    numeric = lambda_rate / model.num_latents * -derivative / np.log(2)
    assert numeric == pytest.approx(gradient[kh, kw, i, o], rel=1e-3), (
        kh, kw, i, o)
  assert np.abs(gradient).max() > 0


def test_compression_stats_against_a_hand_built_zero_pattern():
  # Float32 decoders: integer combinations of grid entries may cancel to an
  # exact zero weight, which the count below leaves out.
  model = lilnetx_tf.compressible(_small_net(), seed=0, grid_bits=0)
  conv, depthwise, pointwise, dense = model.latent_layers
  rng = np.random.default_rng(0)

  def nonzero(shape):  # Integers in +-[1, 3]: no slice decodes to zero.
    return (rng.integers(1, 4, shape) * rng.choice([-1, 1], shape)).astype(
        np.float32)

  # conv (3, 3, 3, 6): input channel 0, output channels 4 and 5, and the
  # slice (1, 2) zero.
  latent = nonzero((3, 3, 3, 6))
  latent[:, :, 0, :] = 0
  latent[:, :, :, 4:] = 0
  latent[:, :, 1, 2] = 0
  conv.latent.assign(latent)
  # depthwise (3, 3, 6, 1): channel 3 zero.
  latent = nonzero((3, 3, 6, 1))
  latent[:, :, 3, :] = 0
  depthwise.latent.assign(latent)
  pointwise.latent.assign(nonzero((1, 1, 6, 5)))
  latent = nonzero((5, 4))
  latent[0, 0] = latent[2, 3] = 0
  dense.latent.assign(latent)

  stats = lilnetx_tf.compression_stats(model, coded=False)
  # By hand: zero slices of conv: input 0 (6 slices), outputs 4, 5 on inputs
  # 1, 2 (4 slices), and (1, 2): 11 of 18. Depthwise: 1 of 6. Pointwise: 0
  # of 30. Dense is not counted in the structured figures (there are convs).
  total = stats["total"]
  assert total["slice_sparsity"] == pytest.approx((11 + 1) / (18 + 6 + 30))
  # Channels, counted on each kernel's (in, out) axes: conv in 1 of 3, out 2
  # of 6; depthwise (6, multiplier 1) in 1 of 6, out 0 of 1; pointwise none.
  assert total["in_channel_sparsity"] == pytest.approx((1 + 1) / (3 + 6 + 6))
  assert total["out_channel_sparsity"] == pytest.approx((2 + 0) / (6 + 1 + 5))
  zero_weights = 11 * 9 + 1 * 9 + 0 + 2
  weights = 162 + 54 + 30 + 20
  assert total["weights"] == weights
  assert total["weight_sparsity"] == pytest.approx(zero_weights / weights)
  # MACs on 8 x 8 outputs: conv 64 * 9 * 3 * 6, depthwise 64 * 9 * 6,
  # pointwise 64 * 6 * 5, dense 5 * 4; effective: the nonzero slices only.
  dense_macs = [64 * 9 * 3 * 6, 64 * 9 * 6, 64 * 6 * 5, 20]
  effective = [64 * 9 * 7, 64 * 9 * 5, 64 * 6 * 5, 18]
  assert [s["macs_dense"] for s in stats["layers"].values()] == dense_macs
  assert [s["macs_effective"] for s in stats["layers"].values()] == effective
  assert total["macs_ratio"] == pytest.approx(sum(effective) / sum(dense_macs))
