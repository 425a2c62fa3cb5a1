"""Checks of exported TFLite models: outputs and latency.

* `TFLiteRunner` runs a flatbuffer with the TFLite interpreter (XNNPACK is
  its default CPU backend) on float inputs, quantizing and dequantizing int8
  I/O: LiteRT's (`ai-edge-litert`) where installed, else `tf.lite`'s, which
  TensorFlow 2.18+ deprecates (`lilnetx_tf.compat.lite_interpreter`;
  `lilnetx_tf.compat.lite_runtime_name()` says which one runs).
* `verify` compares an exported model's logits with the trained model's: top-1
  agreement, both accuracies and max |delta logit|, judged as float32 parity
  or as a bounded accuracy loss for quantized models.
* `measure_latency` times several models at batch 1 in interleaved rounds
  (so load from other processes hits them alike) and reports medians.

What the flatbuffer stores (sparse weights, XNNPACK sparse-inference
eligibility) is read by `lilnetx_tf.deploy.tflite_sparse`.
"""

import collections
import dataclasses
import time

import numpy as np
from lilnetx_tf import compat

__all__ = [
    "TFLiteRunner",
    "Verification",
    "keras_logits",
    "measure_latency",
    "verify",
]


class TFLiteRunner:
  """Runs a TFLite flatbuffer on float inputs and returns float outputs.

  One interpreter is kept per batch size, each resized before its tensors are
  first allocated: re-allocating after a resize crashes TF 2.14's XNNPACK
  delegate on sparse float16 models.

  Where the XNNPACK delegate fails to prepare the model, it runs on the
  builtin kernels alone, and `xnnpack` becomes False: LiteRT 2.3's delegate
  takes the int8 fully connected layers stored sparse (`--quantize=int8
  --sparse`) and then fails on them, where `tf.lite`'s (TensorFlow 2.14 and
  2.21) runs the same file.

  Args:
    content: The flatbuffer (`bytes`).
    num_threads: Interpreter threads.

  Attributes:
    interpreter: The interpreter of the last batch size.
    xnnpack: Whether every interpreter so far runs with the XNNPACK delegate.
  """

  def __init__(self, content, num_threads=1):
    self._content = content
    self._num_threads = num_threads
    self._interpreters = {}
    self.interpreter = None
    self.xnnpack = True

  def _new_interpreter(self, batch, **options):
    interpreter = compat.lite_interpreter(model_content=self._content,
                                          num_threads=self._num_threads,
                                          **options)
    details = interpreter.get_input_details()[0]
    if batch != details["shape"][0]:
      interpreter.resize_tensor_input(
          details["index"], [batch] + list(details["shape"][1:]))
    interpreter.allocate_tensors()
    return interpreter

  def _use(self, batch):
    if batch not in self._interpreters:
      try:
        interpreter = self._new_interpreter(batch)
      except RuntimeError as error:
        if "XNNPack" not in str(error):
          raise
        interpreter = self._new_interpreter(
            batch, experimental_op_resolver_type=compat.lite_builtin_kernels())
        self.xnnpack = False
      self._interpreters[batch] = interpreter
    self.interpreter = self._interpreters[batch]

  def set_input(self, x):
    """Sets the input (float, [batch, ...]), quantizing it for int8 models."""
    x = np.asarray(x, np.float32)
    self._use(len(x))
    details = self.interpreter.get_input_details()[0]
    dtype = details["dtype"]
    if np.issubdtype(dtype, np.integer):
      scale, zero_point = details["quantization"]
      info = np.iinfo(dtype)
      x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    self.interpreter.set_tensor(details["index"], x.astype(dtype))

  def invoke(self):
    self.interpreter.invoke()

  def output(self):
    """The output as float32, dequantized for int8 models."""
    details = self.interpreter.get_output_details()[0]
    y = self.interpreter.get_tensor(details["index"])
    if np.issubdtype(y.dtype, np.integer):
      scale, zero_point = details["quantization"]
      return (y.astype(np.float32) - zero_point) * np.float32(scale)
    return y.astype(np.float32)

  def __call__(self, x, batch_size=256):
    """Outputs for all of `x`, in batches of `batch_size`."""
    outputs = []
    for start in range(0, len(x), batch_size):
      self.set_input(x[start:start + batch_size])
      self.invoke()
      outputs.append(self.output())
    return np.concatenate(outputs)


def keras_logits(model, x, batch_size=256):
  """Inference-mode outputs of a Keras model, as float32 NumPy."""
  return np.concatenate([
      np.asarray(model(x[i:i + batch_size], training=False), np.float32)
      for i in range(0, len(x), batch_size)])


@dataclasses.dataclass(frozen=True)
class Verification:
  """An exported model's outputs against the trained model's.

  Accuracies and agreement are fractions; `max_accuracy_drop` is in
  percentage points. `relative_dlogit` is max |delta logit| divided by the
  largest |reference logit|.
  """
  samples: int
  criterion: str
  agreement: float
  accuracy_reference: float
  accuracy_exported: float
  max_abs_dlogit: float
  relative_dlogit: float
  passed: bool
  failure: str

  def to_dict(self):
    return dataclasses.asdict(self)


def verify(reference_logits, exported_logits, labels, *, float_parity,
           tolerance=1e-4, max_accuracy_drop=1.0):
  """Compares exported logits with the trained model's on the same inputs.

  Args:
    reference_logits: [N, classes] outputs of the trained model.
    exported_logits: [N, classes] outputs of the exported model.
    labels: [N] integer labels.
    float_parity: Judge as a float32 export: pass only with 100% top-1
      agreement and max |delta logit| <= `tolerance` times the largest
      |reference logit|. Otherwise (quantized exports) pass when the accuracy
      drops by at most `max_accuracy_drop` percentage points.
    tolerance: Relative logit tolerance of float32 parity.
    max_accuracy_drop: Allowed accuracy loss of a quantized export, in
      percentage points.

  Returns:
    A `Verification`.

  Raises:
    ValueError: If the shapes do not match or there are no samples.
  """
  ref = np.asarray(reference_logits, np.float64)
  out = np.asarray(exported_logits, np.float64)
  labels = np.asarray(labels)
  if ref.shape != out.shape or ref.ndim != 2 or len(labels) != len(ref):
    raise ValueError(f"Logits {ref.shape} and {out.shape} and labels "
                     f"{labels.shape} do not match.")
  if not len(ref):
    raise ValueError("verify needs at least one sample.")
  agreement = float(np.mean(ref.argmax(1) == out.argmax(1)))
  acc_ref = float(np.mean(ref.argmax(1) == labels))
  acc_out = float(np.mean(out.argmax(1) == labels))
  max_abs = float(np.max(np.abs(ref - out)))
  relative = max_abs / max(float(np.max(np.abs(ref))), 1e-30)
  drop = 100 * (acc_ref - acc_out)
  if float_parity:
    criterion = (f"float32 parity: 100% agreement, relative dlogit <= "
                 f"{tolerance:g}")
    failures = []
    if agreement < 1:
      failures.append(f"top-1 agreement {100 * agreement:.2f}% < 100%")
    if not relative <= tolerance:  # Also catches NaN.
      failures.append(f"max |dlogit| {max_abs:.3g} is {relative:.3g} of the "
                      f"logit scale > {tolerance:g}")
  else:
    criterion = f"accuracy drop <= {max_accuracy_drop:g} points"
    failures = [] if drop <= max_accuracy_drop else [
        f"accuracy drops {drop:.2f} points ({100 * acc_ref:.2f}% -> "
        f"{100 * acc_out:.2f}%) > {max_accuracy_drop:g}"]
  return Verification(
      samples=len(ref), criterion=criterion, agreement=agreement,
      accuracy_reference=acc_ref, accuracy_exported=acc_out,
      max_abs_dlogit=max_abs, relative_dlogit=relative, passed=not failures,
      failure="; ".join(failures))


def measure_latency(models, sample, *, threads=(1, 2), rounds=50,
                    warmup=5, max_seconds=60.0):
  """Median batch-1 latency of several TFLite models, interleaved.

  Each round invokes every model once, alternating the order between rounds,
  so that load from other processes falls on all models alike; medians over
  rounds discard the outliers it causes.

  Args:
    models: Name -> flatbuffer.
    sample: One input, float [1, ...] (quantized for int8 models).
    threads: Interpreter thread counts to measure.
    rounds: Rounds per thread count.
    warmup: Untimed invocations of each model first.
    max_seconds: Stop a thread count's rounds early after this long (at
      least 3 rounds are kept).

  Returns:
    `{threads: {"rounds": n, name: median milliseconds, ...}}`, plus
    `"without_xnnpack": [name, ...]` in a row where a model ran on the
    builtin kernels alone (see `TFLiteRunner`).
  """
  results = {}
  names = list(models)
  for num_threads in threads:
    runners = {}
    for name in names:
      runners[name] = TFLiteRunner(models[name], num_threads=num_threads)
      runners[name].set_input(sample)
      for _ in range(warmup):
        runners[name].invoke()
    times = collections.defaultdict(list)
    start = time.perf_counter()
    done = 0
    while done < rounds and (done < 3 or
                             time.perf_counter() - start < max_seconds):
      for name in names if done % 2 == 0 else names[::-1]:
        tic = time.perf_counter()
        runners[name].invoke()
        times[name].append(time.perf_counter() - tic)
      done += 1
    results[num_threads] = {"rounds": done, **{
        name: 1e3 * float(np.median(times[name])) for name in names}}
    slow = [name for name in names if not runners[name].xnnpack]
    if slow:
      results[num_threads]["without_xnnpack"] = slow
  return results
