"""How many threads TensorFlow runs its ops on: chosen for the machine, not left to chance.

TensorFlow sizes both of its thread pools from the CPUs in the process's affinity mask and
ignores a container's CPU quota: a pod limited to 2 CPUs on a 64-core host gets 64 threads per
pool, and they fight over the 2 CPUs. `zoo train` instead uses:

- intra-op threads (the pool oneDNN and Eigen split one kernel over) = the usable cores: the
  CPUs this process may run on (its affinity mask) capped by the CPU quota of the cgroup at
  /sys/fs/cgroup (a container's own one; a quota on a parent cgroup, such as a systemd
  slice seen without a cgroup namespace, is not read);
- inter-op threads (ops run side by side) = the usable cores too: one inter-op thread was
  tried and lost 10-32% (BERT 183 against 203 examples/s, the translator 354 against 523 at
  2 cores: `benchmarks/threads.py`, WORKSPACE_NOTES.md "Thread settings").

`TF_NUM_INTRAOP_THREADS` / `TF_NUM_INTEROP_THREADS` set by the user win; `ZOO_THREADS=tf`
leaves TensorFlow's own choice. oneDNN stays on (TensorFlow's default on x86; its bfloat16
kernels are the ones that use the processor's bfloat16 units).
"""

import math
import os

from zoo.config import ConfigError


def usable_cores(root="/sys/fs/cgroup"):
    """The CPUs this process may use: its affinity mask, capped by a cgroup (v2 or v1) quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(root)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(root):
    """CPUs granted by the cgroup quota (a float), or None where there is no quota."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:  # v2: "max 100000" or "200000 100000"
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:  # v1: -1 means none
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def choose(env=None, cores=None):
    """(intra-op threads, inter-op threads, why); (None, None, why) where TensorFlow chooses.

    Example:
        >>> choose(env={}, cores=2)
        (2, 2, 'intra-op and inter-op 2 (the usable cores)')
        >>> choose(env={"TF_NUM_INTRAOP_THREADS": "4"}, cores=2)[:2]
        (4, 2)
        >>> choose(env={"ZOO_THREADS": "tf"}, cores=2)[:2]
        (None, None)
    """
    env = os.environ if env is None else env
    if env.get("ZOO_THREADS") == "tf":
        return None, None, "TensorFlow's own choice (ZOO_THREADS=tf)"
    cores = usable_cores() if cores is None else cores
    intra = _from_env(env, "TF_NUM_INTRAOP_THREADS")
    inter = _from_env(env, "TF_NUM_INTEROP_THREADS")
    if not intra and not inter:
        return cores, cores, f"intra-op and inter-op {cores} (the usable cores)"
    why = (f"intra-op {intra} (TF_NUM_INTRAOP_THREADS)" if intra else f"intra-op {cores} (the usable cores)") + ", " + \
          (f"inter-op {inter} (TF_NUM_INTEROP_THREADS)" if inter else f"inter-op {cores} (the usable cores)")
    return intra or cores, inter or cores, why


def _from_env(env, name):
    value = env.get(name, "")
    if not value:
        return 0
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name}={value}: expected a whole number of threads, 1 or more.")
    return int(value)


_chosen = []  # the reason, once `configure` has set the pools


def configure():
    """Sets TensorFlow's thread pools (see the module docstring), where its runtime has not
    started yet in this process (its pools cannot change after that); `describe` says which."""
    import tensorflow as tf

    intra, inter, why = choose()
    if intra is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the runtime started earlier in this process
        return
    _chosen[:] = [why]


def describe():
    """The line training prints about the thread pools."""
    import tensorflow as tf

    if _chosen:
        return f"Threads: {_chosen[0]}."
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return (f"Threads: intra-op {intra or 'TensorFlow default'}, inter-op {inter or 'TensorFlow default'} "
            "(not chosen by the zoo: TensorFlow had started before `zoo.threads.configure`, or ZOO_THREADS=tf).")
