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
    """`peak * step / warmup_steps` during warmup, then `decay` down to 0 at `total_steps`.

    `total_steps` is an int, or a variable the trainer moves when the run has a time budget
    (the decay then ends where the budget does). With `warmup_steps` 0, the warmup is
    `warmup_fraction` of `total_steps`, so it scales with the run's length.

    At a fixed length the curves are Keras's `CosineDecay` (with `warmup_target`) and
    `PolynomialDecay` (power 1) after the warmup (`tests/test_trainer.py` checks this). The
    zoo keeps its own class because the end of the decay moves during training (a time budget
    re-fits `total_steps` to the measured speed, and the warmup share follows it); Keras's
    schedules take their step counts as fixed numbers when they are built.
    """

    def __init__(self, peak, warmup_steps, total_steps, decay="constant", warmup_fraction=0.0):
        if decay not in DECAYS:
            raise ValueError(f"--config lr_schedule={decay}: expected one of {', '.join(DECAYS)}.")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"--config warmup_fraction={warmup_fraction}: expected 0 <= value < 1.")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.total_steps = total_steps if hasattr(total_steps, "assign") else int(total_steps)
        self.decay = decay

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.warmup_steps or not self.warmup_fraction:
            warmup = ops.cast(self.warmup_steps, "float32")
        else:
            warmup = ops.round(self.warmup_fraction * ops.cast(self.total_steps, "float32"))
        span = ops.maximum(ops.cast(self.total_steps, "float32") - warmup, 1.0)
        progress = ops.clip((step - warmup) / span, 0.0, 1.0)
        if self.decay == "linear":
            decayed = self.peak * (1.0 - progress)
        elif self.decay == "cosine":
            decayed = self.peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            decayed = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps == 0 and self.warmup_fraction == 0:
            return decayed
        return ops.where(step < warmup, self.peak * step / ops.maximum(warmup, 1.0), decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "warmup_fraction": self.warmup_fraction,
                "total_steps": int(ops.convert_to_numpy(self.total_steps)), "decay": self.decay}
