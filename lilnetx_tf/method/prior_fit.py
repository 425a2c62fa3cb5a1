"""Fitting the priors to the latents: their own objective and steps.

The priors do not learn from the training loss: its rate term's gradient to
them would scale with `lambda_rate` (and vanish at 0 or during a warm-up).
They fit the rounded latents by maximum likelihood instead: their objective
is the bits per latent of the latents' per-position histograms under them
(`prior_fit_bits`, the evaluation estimate of the model's size), minimised
by their own optimizer (`LilNetXModel.prior_optimizer`). `LilNetXModel`
takes `prior_steps` of those steps on each step that computes the
compression terms (`prior_steps`, inside its train function), and
`fit_priors` runs `initial_prior_steps` of them before and after `fit`.
"""

import functools
import weakref

import tensorflow as tf

__all__ = ["fit_priors", "prior_fit_bits", "prior_steps"]

# The traced prior steps by model: (prior optimizer, step, fit step). Not a
# model attribute, which SavedModel export would try to save.
_PRIOR_FITS = weakref.WeakKeyDictionary()


def _histograms(model):
  # pylint: disable-next=protected-access
  return {g: model.priors[g].histogram(model._group_positions(g))
          for g in model.group_layers}


def _histogram_bits(model, histograms):
  bits = [model.priors[g].histogram_bits_of(h) for g, h in histograms.items()]
  return tf.add_n(bits) / model.num_latents


def prior_fit_bits(model):
  """The priors' objective: bits per latent of the rounded latents.

  Args:
    model: A `LilNetXModel`.

  Returns:
    A scalar tensor, differentiable with respect to the priors only.
  """
  return _histogram_bits(model, _histograms(model))


def _prior_step(model, histograms):
  """One prior optimizer step on `histograms`; returns the objective before."""
  prior_vars = model.prior_variables()
  with tf.GradientTape() as tape:
    bits = _histogram_bits(model, histograms)
  grads = tape.gradient(bits, prior_vars)
  model.prior_optimizer.apply_gradients(zip(grads, prior_vars))
  return bits


def _functions(model):
  """`(step, fit)`: the model's traced prior step and `fit_priors` step.

  Traced once per model and prior optimizer: the step's trace (the density
  network, its gradient and an optimizer update of every prior variable)
  takes seconds. `step` takes the histograms, so that the training step's
  prior steps call the graph `fit_priors` traced before training instead of
  tracing their own copies (LeNet-300-100, under cProfile: 3.5 of the
  compression step's 5.6 s of tracing).
  """
  optimizer, step, fit = _PRIOR_FITS.get(model, (None, None, None))
  if optimizer is not model.prior_optimizer:
    ref = weakref.ref(model)
    step = tf.function(lambda histograms: _prior_step(ref(), histograms),
                       reduce_retracing=True)
    # One step per call: a graph loop around the optimizer step is refused
    # under MirroredStrategy (its gradient all-reduce in control flow).
    fit = tf.function(lambda: prior_steps(ref(), 1))
    _PRIOR_FITS[model] = (model.prior_optimizer, step, fit)
  return step, fit


def prior_steps(model, steps):
  """`steps` (>= 1) prior optimizer steps on one histogram of the latents.

  Args:
    model: A compiled `LilNetXModel`.
    steps: Number of steps.

  Returns:
    The objective before the last step.
  """
  histograms = _histograms(model)
  if tf.distribute.has_strategy():
    # A strategy's gradient all-reduce (a merge call) is refused inside a
    # nested tf.function: the steps are traced inline.
    step = functools.partial(_prior_step, model)
  else:
    step, _ = _functions(model)
  for _ in range(steps):
    bits = step(histograms)
  return bits


def fit_priors(model, steps):
  """`steps` prior optimizer steps, each on the latents' current histogram.

  Args:
    model: A compiled `LilNetXModel`.
    steps: Number of steps (>= 0).

  Returns:
    The bits per latent of the rounded latents before the last step (under
    the priors as they are, with no step).

  Raises:
    RuntimeError: if the model is not compiled.
  """
  if model.prior_optimizer is None:
    raise RuntimeError("Compile the model before fitting its priors.")
  _, function = _functions(model)
  bits = None
  for _ in range(steps):
    bits = model.distribute_strategy.run(function)
  if bits is None:
    bits = prior_fit_bits(model)
  return float(model.distribute_strategy.experimental_local_results(bits)[0])
