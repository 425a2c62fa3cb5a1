"""Distillation from a float teacher: the term's value and its pull."""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf
from lilnetx_tf import data as data_lib
from lilnetx_tf import models


def _kl_by_hand(teacher_logits, student_logits, t, weights):
  """Batch mean of KL(softmax(teacher / t) || softmax(student / t)), float64."""
  def log_softmax(z):
    z = np.asarray(z, np.float64) / t
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  log_p, log_q = log_softmax(teacher_logits), log_softmax(student_logits)
  kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
  return float((kl * weights).sum() / len(kl))


def _teacher(seed):
  tf.keras.utils.set_random_seed(seed)
  return models.build_model("lenet_300_100", (8, 8, 1), 10)


def test_the_term_is_the_weighted_kl_divergence_at_the_temperature():
  teacher = _teacher(0)
  rng = np.random.default_rng(0)
  x = rng.random((6, 8, 8, 1), dtype=np.float32)
  student_logits = rng.normal(size=(6, 10)).astype(np.float32) * 3
  weights = np.array([1, 0, 2, 1, 0.5, 1], np.float32)
  teacher_logits = teacher(x, training=False).numpy()
  for weight, t in ((1.0, 1.0), (0.5, 3.0)):
    term = lilnetx_tf.Distillation(teacher, weight=weight, temperature=t)
    got = float(term.loss(x, tf.constant(student_logits)))
    assert got == pytest.approx(
        weight * t * t * _kl_by_hand(teacher_logits, student_logits, t,
                                     np.ones(6)), rel=1e-5)
    got = float(term.loss(x, tf.constant(student_logits), weights[:, None]))
    assert got == pytest.approx(
        weight * t * t * _kl_by_hand(teacher_logits, student_logits, t,
                                     weights), rel=1e-5)
  # The teacher's own logits are the minimum: zero divergence.
  term = lilnetx_tf.Distillation(teacher)
  assert abs(float(term.loss(x, tf.constant(teacher_logits)))) < 1e-6


def test_bad_arguments_are_refused():
  teacher = _teacher(0)
  with pytest.raises(TypeError, match="Keras model"):
    lilnetx_tf.Distillation(lambda x: x)
  with pytest.raises(ValueError, match="weight"):
    lilnetx_tf.Distillation(teacher, weight=-1.0)
  with pytest.raises(ValueError, match="temperature"):
    lilnetx_tf.Distillation(teacher, temperature=0.0)
  model = lilnetx_tf.compressible(_teacher(1))
  with pytest.raises(TypeError, match="Distillation"):
    model.compile("adam", loss="mse", distillation=teacher)
  wrong = models.build_model("lenet_300_100", (8, 8, 1), 7)
  model.compile("adam", loss="mse",
                distillation=lilnetx_tf.Distillation(wrong))
  with pytest.raises(ValueError, match="do not match"):
    model.fit(np.zeros((2, 8, 8, 1)), np.zeros((2, 10)), verbose=0)


def test_training_pulls_the_student_toward_the_teacher(tmp_path):
  """On real digits, a distilled student's outputs end nearer the teacher's.

  The teacher is an untrained network: its outputs are not the labels, so
  only the distillation term can bring the student nearer to them. Two
  students start from the same weights and see the same batches.
  """
  x, y, _ = data_lib.load_arrays("digits", "train", limit=512)
  x = x.astype(np.float32) / 255.0
  x_test, _, _ = data_lib.load_arrays("digits", "test", limit=256)
  x_test = x_test.astype(np.float32) / 255.0
  teacher = _teacher(0)
  teacher_logits = teacher.predict(x_test, verbose=0)
  divergences, weights = [], []
  for distil in (False, True):
    model = lilnetx_tf.compressible(_teacher(1), lambda_rate=0.1, seed=1)
    model.compile(
        tf.keras.optimizers.Adam(1e-2),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation=(lilnetx_tf.Distillation(teacher, weight=2.0,
                                              temperature=2.0)
                      if distil else None))
    model.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
    divergences.append(_kl_by_hand(teacher_logits,
                                   model.predict(x_test, verbose=0), 2.0,
                                   np.ones(len(x_test))))
    weights.append(len(model.weights))
    # The teacher is not part of the model: it is neither saved nor loaded.
    path = str(tmp_path / f"m{int(distil)}.keras")
    model.save(path)
    assert len(tf.keras.models.load_model(path).weights) == weights[0]
  assert weights[0] == weights[1]
  assert divergences[1] < 0.5 * divergences[0], divergences
