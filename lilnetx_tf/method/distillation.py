"""Knowledge distillation from a float teacher into a LilNetX model.

Compressing a trained float model is a fine-tune; the float model it starts
from knows more than the labels say (how alike the classes look), and its
softened outputs are a richer target for the compressed student than the
labels alone (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
Network", 2015). `LilNetXModel.compile(distillation=Distillation(teacher))`
adds to the training loss

  weight * temperature**2 * KL(softmax(teacher / T) || softmax(student / T)),

a mean over the batch, with T the temperature. The term is added to the task
loss (not mixed with it), so `lambda_rate` keeps its meaning: nats of the
task loss per bit per latent. The `temperature**2` keeps the term's gradient
of the same scale at any temperature. Evaluation reports the task loss alone.

The teacher is an aid of training only: not tracked, saved or checkpointed
with the model. Pass it to `compile` again when resuming.
"""

import tensorflow as tf
from lilnetx_tf.compat import keras

__all__ = ["Distillation"]


class Distillation:
  """A distillation term: a frozen teacher, a weight and a temperature.

  Args:
    teacher: A Keras model mapping the student's inputs to logits of the same
      classes (e.g. the float model the student was converted from). Run in
      inference mode, never trained.
    weight: Weight of the term against the task loss (>= 0).
    temperature: Softening temperature T of both distributions (> 0).

  Raises:
    TypeError: if `teacher` is not a Keras model.
    ValueError: if `weight` < 0 or `temperature` <= 0.
  """

  def __init__(self, teacher, weight=1.0, temperature=4.0):
    if not isinstance(teacher, keras.Model):
      raise TypeError(f"`teacher` must be a Keras model, got "
                      f"{type(teacher).__name__}.")
    if not weight >= 0:
      raise ValueError(f"`weight` must be >= 0, got {weight!r}.")
    if not temperature > 0:
      raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
    # Not a Keras layer or tf.Module, so that a model holding this object
    # does not track the teacher's weights as its own (nor save them).
    self.teacher = teacher
    self.weight = float(weight)
    self.temperature = float(temperature)

  def loss(self, x, y_pred, sample_weight=None):
    """The weighted distillation term of one batch.

    Args:
      x: The batch's inputs (as the student saw them).
      y_pred: The student's logits, [batch, classes].
      sample_weight: Optional per-example weights, [batch] or [batch, 1].

    Returns:
      A scalar: weight * T^2 * the batch mean of the KL divergences (the sum
      of weighted divergences over the batch size, as Keras's losses
      reduce). Under a distribution strategy it is this replica's, which the
      training step scales as it scales its other terms.

    Raises:
      ValueError: if the teacher's output shape differs from `y_pred`'s.
    """
    teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
    if not teacher_logits.shape.is_compatible_with(y_pred.shape):
      raise ValueError(
          f"The teacher's outputs {teacher_logits.shape} do not match the "
          f"student's {y_pred.shape}.")
    t = self.temperature
    teacher_log_p = tf.nn.log_softmax(
        tf.cast(teacher_logits, tf.float32) / t)
    student_log_p = tf.nn.log_softmax(tf.cast(y_pred, tf.float32) / t)
    kl = tf.reduce_sum(
        tf.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1)
    if sample_weight is not None:
      kl *= tf.reshape(tf.cast(sample_weight, kl.dtype), [-1])
    mean = tf.reduce_sum(kl) / tf.cast(tf.size(kl), kl.dtype)
    return self.weight * t * t * mean
