"""`compression_interval`: the compression terms on one training step in k.

`LilNetXModel(compression_interval=k)` computes the rate, sparsity and decay
terms and runs the priors' steps on one training step in k, with the terms
multiplied by k (lazy regularization, as StyleGAN2's); the other steps train
on the task loss alone. Keras runs one train function per step, so the model
traces two, with and without the terms, and chooses one per step in Python:
a `tf.cond` in one graph would be simpler, but distribution strategies refuse
the priors' optimizer step (an all-reduce) inside control flow.
"""

from lilnetx_tf import compat

__all__ = ["IntervalTraining"]


class _StepChoice:
  """Which of the two train functions runs; plain Python state.

  Off Keras's attribute tracking: a Keras model's attribute write takes tens
  of microseconds, a step's worth of small ops.
  """

  def __init__(self):
    self.compression = True  # Whether the step computes the terms.
    self.next = None  # The next step's number; None: read the optimizer's.


class IntervalTraining:
  """Mixin of a Keras model with `compression_interval` and `train_step`.

  `train_step` reads `_traces_compression_step` while it traces: whether
  the function being traced computes the compression terms.
  """

  # A class default: Keras does not track class attributes.
  _step_choice = None

  @property
  def _traces_compression_step(self):
    return self._step_choice is None or self._step_choice.compression

  def make_train_function(self, force=False):
    """Keras's train function; with `compression_interval` > 1, two of them.

    One step in `compression_interval` (by the optimizer's step count, which
    a resumed run restores) runs the function traced with the compression
    terms and prior steps; the others, the one traced without.

    Raises:
      ValueError: with `compression_interval` > 1, for
        `steps_per_execution` > 1 or a parameter server strategy.
    """
    if self.train_function is not None and not force:
      if self._step_choice is not None:
        # Every Keras entry point (`fit`, `train_on_batch`, ...) comes here
        # first: the step count is read afresh, as a restored checkpoint or
        # a user may have changed it.
        self._step_choice.next = None
      return self.train_function
    interval = self.compression_interval
    if interval == 1:
      return super().make_train_function(force=force)
    steps = compat.steps_per_execution(self)
    if compat.cluster_coordinator(self) or (steps is not None and steps != 1):
      raise ValueError(
          f"compression_interval {interval} needs steps_per_execution 1 and "
          "no parameter servers (each step's function is chosen in Python).")
    make = super().make_train_function
    choice = self._step_choice = _StepChoice()
    functions = [make(force=True), make(force=True)]
    plain_traced = not hasattr(functions[1], "get_concrete_function")

    def train_function(iterator):
      nonlocal plain_traced
      if not plain_traced:
        # The first trace builds the compiled metrics, and tf.function traces
        # a function that creates variables twice: let that be the cheap
        # plain step, not the compression step (seconds of tracing).
        choice.compression = False
        functions[1].get_concrete_function(iterator)
        plain_traced = True
      if choice.next is None:
        choice.next = int(self.optimizer.iterations.numpy())
      # Counted here rather than read from the optimizer every step: the
      # read waits for the step before (0.3 ms of a 6 ms LeNet-300-100 step).
      step, choice.next = choice.next, choice.next + 1
      choice.compression = step % interval == 0
      return functions[0 if choice.compression else 1](iterator)

    self.train_function = train_function
    return train_function
