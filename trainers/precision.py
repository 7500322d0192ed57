"""Which Keras mixed-precision policy a run trains with (`--config mixed_precision=...`).

"auto" picks bfloat16 compute with float32 variables ("mixed_bfloat16") where the hardware has
bfloat16 units: a TPU, GPUs of compute capability 8.0 or newer (Ampere, Hopper), or a CPU
with AVX512_BF16 or AMX-BF16 (and TensorFlow's oneDNN kernels on, which use them); float32
elsewhere. "float32" (or "") turns it off; "mixed_bfloat16" and "mixed_float16" (GPUs, with
loss scaling) force a policy.

Example:
    >>> choose("float32", flags=set(), gpus=[], tpu=False)[0]
    'float32'
    >>> choose("auto", flags={"avx512f", "avx512_bf16"}, gpus=[], tpu=False, env={})[0]
    'mixed_bfloat16'
    >>> choose("auto", flags={"avx2"}, gpus=[(7, 5)], tpu=False)[0]  # a T4: no bfloat16 units
    'float32'
"""

import contextlib
import os

from zoo.config import ConfigError

POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@contextlib.contextmanager
def policy_scope(policy):
    """Keras's global dtype policy set to `policy` inside the block and put back after it, so
    a trainer's choice does not leak into models built later in the same process.

    Example:
        >>> import keras
        >>> with policy_scope("mixed_bfloat16"):
        ...     keras.layers.Dense(2).compute_dtype
        'bfloat16'
        >>> keras.mixed_precision.global_policy().name
        'float32'
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def cpu_flags(path="/proc/cpuinfo"):
    """The processor's feature flags (an empty set where /proc/cpuinfo is absent)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_capabilities():
    """[(major, minor)] compute capability of each visible GPU."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def onednn_enabled(env):
    """Whether TensorFlow's oneDNN kernels are on (its default on x86 Linux)."""
    return env.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def choose(setting, flags=None, gpus=None, tpu=False, env=None):
    """(Keras policy name, why) for `setting` on this machine.

    Args:
        setting: the config value; "" means float32.
        flags, gpus: the machine's CPU flags and GPU capabilities (read when None).
        tpu: whether the run is on a TPU strategy.
        env: the environment (`os.environ` when None): `TF_ENABLE_ONEDNN_OPTS=0` means float32
            on a CPU.

    Raises:
        ConfigError: naming `mixed_precision` and the accepted values.

    Example:
        >>> choose("auto", flags={"avx512_bf16"}, gpus=[], tpu=False, env={})[1]
        'auto: this CPU has bfloat16 units (avx512_bf16)'
        >>> choose("auto", flags={"avx512_bf16"}, gpus=[], env={"TF_ENABLE_ONEDNN_OPTS": "0"})[0]
        'float32'
    """
    env = os.environ if env is None else env
    setting = setting or "float32"
    if setting not in POLICIES:
        raise ConfigError(f"--config mixed_precision={setting}: expected one of {', '.join(POLICIES)}.")
    if setting != "auto":
        return setting, "--config mixed_precision"
    if tpu:
        return "mixed_bfloat16", "auto: a TPU"
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        names = ", ".join(f"{major}.{minor}" for major, minor in gpus)
        if all(tuple(c) >= (8, 0) for c in gpus):
            return "mixed_bfloat16", f"auto: GPUs of compute capability {names} have bfloat16 units"
        return "float32", f"auto: GPUs of compute capability {names}: not all have bfloat16 units (8.0 or newer)"
    flags = cpu_flags() if flags is None else flags
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if found and not onednn_enabled(env):
        # TensorFlow's own (Eigen) bfloat16 kernels emulate it: BERT ran 9x slower.
        return "float32", f"auto: TF_ENABLE_ONEDNN_OPTS={env['TF_ENABLE_ONEDNN_OPTS']} turns off the oneDNN " \
                          f"kernels that use this CPU's bfloat16 units ({', '.join(found)})"
    if found:
        return "mixed_bfloat16", f"auto: this CPU has bfloat16 units ({', '.join(found)})"
    return "float32", f"auto: this CPU has no bfloat16 units ({' or '.join(CPU_BF16_FLAGS)})"
