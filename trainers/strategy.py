"""Picks the `tf.distribute` strategy named by `--strategy`.

Example:
    >>> make_strategy("cpu").num_replicas_in_sync
    1
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "cpu", "one_device", "mirrored", "multi_worker", "tpu")


class StrategyError(ValueError):
    """A strategy that cannot be built here; names the flag and what is missing."""


def _tpu(tpu):
    if not tpu and (os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")):
        tpu = "local"  # a Cloud TPU VM: the TPU is attached to this host
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as e:
        raise StrategyError(f"--strategy=tpu --tpu={tpu or ''}: no TPU could be resolved ({e}).") from None
    return tf.distribute.TPUStrategy(resolver)


def _tpu_configured(tpu):
    """Whether a TPU is named or this host is a Cloud TPU VM."""
    return bool(tpu or os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0"))


def make_strategy(name="auto", tpu=None):
    """Returns the strategy for `name` (one of `STRATEGIES`); call it before any TF op.

    `auto`: a TPU when one resolves, MirroredStrategy over all GPUs when there are several,
    otherwise the default strategy. `multi_worker` reads the cluster from `TF_CONFIG`.
    """
    # Listing devices starts the TensorFlow context, after which MultiWorkerMirroredStrategy
    # fails ("Collective ops must be configured at program startup"): only list them here.
    def gpus():
        return tf.config.list_logical_devices("GPU")

    if name == "auto":
        if _tpu_configured(tpu):
            try:
                return _tpu(tpu)
            except StrategyError:
                pass
        if len(gpus()) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "one_device":
        devices = gpus()
        return tf.distribute.OneDeviceStrategy(devices[0].name if devices else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise StrategyError("--strategy=multi_worker: set TF_CONFIG to the cluster and this worker's task.")
        try:
            json.loads(config)["cluster"]["worker"]
        except (ValueError, KeyError, TypeError):
            raise StrategyError(
                "--strategy=multi_worker: TF_CONFIG must be JSON with cluster.worker and task "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}).'
            ) from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu(tpu)
    raise StrategyError(f"--strategy={name}: expected one of {', '.join(STRATEGIES)}.")


def is_chief(strategy):
    """Whether this process writes the shared checkpoints and logs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                            and "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0
    return int(resolver.task_id or 0)
