"""One trainer for every zoo model, on `tf.distribute`."""

from trainers.config import TrainerConfig
from trainers.trainer import Trainer, TrainingError

__all__ = ["Trainer", "TrainerConfig", "TrainingError"]
