"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay.

Example:
    >>> schedule = WarmupDecay(1e-3, warmup_steps=10, total_steps=110, decay="linear")
    >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 60, 110)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
"""

import math

import keras
from keras import ops

DECAYS = ("constant", "linear", "cosine")


@keras.saving.register_keras_serializable(package="zoo")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`peak * step / warmup_steps` during warmup, then `decay` down to 0 at `total_steps`."""

    def __init__(self, peak, warmup_steps, total_steps, decay="constant"):
        if decay not in DECAYS:
            raise ValueError(f"--config lr_schedule={decay}: expected one of {', '.join(DECAYS)}.")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.decay = decay

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.cast(self.warmup_steps, "float32")
        span = float(self.total_steps - self.warmup_steps)
        progress = ops.clip((step - warmup) / span, 0.0, 1.0)
        if self.decay == "linear":
            decayed = self.peak * (1.0 - progress)
        elif self.decay == "cosine":
            decayed = self.peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            decayed = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps == 0:
            return decayed
        return ops.where(step < warmup, self.peak * step / warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}
