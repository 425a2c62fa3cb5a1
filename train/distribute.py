"""`tf.distribute` strategies by name, and where each worker writes.

`make_strategy(config)` must run before any other TensorFlow op: splitting
the CPU into logical devices and connecting to a cluster are only possible
while the runtime is still uninitialised.

Under `MultiWorkerMirroredStrategy` every worker runs the same program and
takes part in every collective (including the variable reads of a save), so
every worker saves; only the chief saves into the run's directory, the others
into a private temporary directory that is deleted afterwards (the standard
Keras multi-worker pattern).
"""

import json
import os
import shutil
import tempfile

from absl import logging
import tensorflow as tf

__all__ = ["STRATEGIES", "barrier", "is_chief", "make_strategy", "WorkerDirs"]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def _split_cpu(num_devices):
  """Splits the first CPU into `num_devices` logical devices (for testing)."""
  cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def _tpu_strategy(tpu):
  """Connects to a TPU; raises a clear error on machines without one."""
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    raise RuntimeError(
        f"strategy='tpu' but no TPU was found ({e}). On a TPU VM leave "
        "--config.tpu empty; elsewhere pass --config.tpu=NAME_OR_GRPC_ADDRESS,"
        " or choose another --config.strategy from "
        f"{', '.join(STRATEGIES)}.") from e
  return tf.distribute.TPUStrategy(resolver)


def make_strategy(strategy="default", cpu_devices=0, tpu=""):
  """Creates the distribution strategy of a run.

  Args:
    strategy: One of `STRATEGIES`.
    cpu_devices: If > 1, split the CPU into that many logical devices first
      (lets `mirrored` run on a CPU-only machine, e.g. in tests); `mirrored`
      then uses them when there is no GPU.
    tpu: TPU name or grpc:// address for `tpu` (empty: the local TPU VM).

  Returns:
    A `tf.distribute.Strategy`.

  Raises:
    ValueError: For an unknown strategy name or a missing TF_CONFIG.
    RuntimeError: For `tpu` without a reachable TPU.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"Unknown strategy {strategy!r}; valid strategies: "
                     f"{', '.join(STRATEGIES)}.")
  cpus = _split_cpu(cpu_devices) if cpu_devices > 1 else []
  if strategy == "default":
    return tf.distribute.get_strategy()
  if strategy == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy(
        devices=None if gpus or not cpus else cpus)
  if strategy == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError(
          "strategy='multi_worker' needs the TF_CONFIG environment variable "
          "(cluster and this task), e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
          "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": "
          "\"worker\", \"index\": 0}}'.")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
      raise ValueError(f"TF_CONFIG is not valid JSON: {e}.") from e
    return tf.distribute.MultiWorkerMirroredStrategy()
  return _tpu_strategy(tpu)


def is_chief(strategy):
  """True unless this process is a non-chief worker of a multi-worker run."""
  resolver = getattr(strategy, "cluster_resolver", None)
  task_type = getattr(resolver, "task_type", None)
  if task_type is None or isinstance(strategy, tf.distribute.TPUStrategy):
    return True
  if "chief" in resolver.cluster_spec().as_dict():
    return task_type == "chief"
  return task_type == "worker" and resolver.task_id == 0


def barrier(strategy):
  """Returns once every worker of a multi-worker run has called it.

  Keeps workers alive until the chief has written its outputs: a worker that
  exits early makes the chief's coordination service report it as failed.
  """
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM,
                    strategy.run(lambda: tf.ones(())), axis=None)


class WorkerDirs:
  """Where this process writes: the run's directory, or a private one.

  Args:
    workdir: The run's directory.
    chief: Whether this process is the chief (writes the real outputs).

  Attributes:
    workdir: The run's directory (every worker reads checkpoints from it).
    output: `workdir` for the chief, else a private temporary directory.
  """

  def __init__(self, workdir, chief):
    self.workdir = workdir
    self.chief = chief
    self.output = workdir if chief else tempfile.mkdtemp(prefix="worker_")

  def path(self, *parts):
    """A path under this process's output directory, which it creates.

    Created on first use, so that a run refused before it writes anything
    (e.g. for a bad config) leaves no directory behind.
    """
    os.makedirs(self.output, exist_ok=True)
    return os.path.join(self.output, *parts)

  def cleanup(self):
    """Deletes a non-chief worker's private directory."""
    if not self.chief:
      shutil.rmtree(self.output, ignore_errors=True)
      logging.info("Removed worker scratch directory %s.", self.output)
