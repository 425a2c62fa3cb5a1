"""What export says of the zeros left in kept channels."""

import numpy as np
import tensorflow as tf

from lilnetx_tf.deploy.remaining_zeros import remaining_zeros


def test_zero_slices_and_weights_counted_by_hand():
  inputs = tf.keras.Input((8, 8, 2))
  h = tf.keras.layers.Conv2D(3, 3, name="conv")(inputs)
  h = tf.keras.layers.SeparableConv2D(4, 3, name="sep")(h)
  h = tf.keras.layers.Flatten()(h)
  outputs = tf.keras.layers.Dense(5, name="fc")(h)
  model = tf.keras.Model(inputs, outputs)
  conv = model.get_layer("conv")
  kernel = np.ones((3, 3, 2, 3), np.float32)
  kernel[:, :, 0, 1] = 0  # One whole slice of 6.
  kernel[0, 0, 1, 2] = 0  # One weight of a slice that stays.
  conv.set_weights([kernel, np.zeros(3, np.float32)])
  fc = model.get_layer("fc")
  dense = np.ones(fc.kernel.shape, np.float32)
  dense[:, 0] = 0
  fc.set_weights([dense, np.zeros(5, np.float32)])
  sep = model.get_layer("sep")
  sep.set_weights([np.ones(w.shape, np.float32) for w in sep.weights])
  rows = {(r["layer"], r["kernel"]): r for r in remaining_zeros(model)}
  assert list(rows) == [("conv", "kernel"), ("sep", "depthwise"),
                        ("sep", "pointwise"), ("fc", "kernel")]
  row = rows[("conv", "kernel")]
  assert row["zero_slices"] == 1 / 6
  assert row["zero_weights"] == 10 / 54
  assert row["statement"] == ("16.7% of its 3x3 slices are zero (18.5% of "
                              "weights); no TFLite kernel skips them")
  assert rows[("sep", "depthwise")]["statement"] == "no zero weights"
  assert rows[("fc", "kernel")]["zero_weights"] == 1 / 5
  assert rows[("fc", "kernel")]["statement"].startswith(
      "20.0% of weights are zero; only XNNPACK's sparse inference")
