"""Knowledge distillation: a student learns from a frozen teacher inside the trainer's step.

Loss of each example = `alpha` x the task loss + `(1 - alpha)` x `T^2` x KL(teacher || student),
both distributions softened by the temperature `T` (Hinton, Vinyals and Dean 2015): over the
classes of a classifier, or over the vocabulary at each target position of a token model
(averaged over the example's real positions, as its task loss is).

Keras 3.12+ ships `keras.distillation` (`Distiller`, `LogitsDistillation`). It is not the loop
here: `Distiller` trains through `fit`, which cannot run multi-worker (the trainer owns the
loop), and `LogitsDistillation.compute_loss` returns the batch's mean, where the trainer needs
each example's loss (scaled by the global batch under every strategy) and token models need
padding left out position by position. Its formula is the same; `tests/test_distillation.py`
checks this module against it. (A trap there: Keras 3.15 resolves its default
`loss="kl_divergence"` to the plain function, not a `KLDivergence` instance, so its softmax
branch is skipped and the KL divergence is taken of the scaled logits themselves; pass
`loss=keras.losses.KLDivergence()`.)
"""

import os

import tensorflow as tf
from keras import ops

from zoo import workdir as workdirs
from zoo.config import ConfigError


def kl_per_example(teacher_logits, student_logits, temperature, mask=None):
    """`T^2` x KL(softmax(teacher / T) || softmax(student / T)) of each example, `[batch]`.

    Args:
        teacher_logits, student_logits: `[batch, classes]`, or `[batch, positions, vocabulary]`.
        temperature: `T` > 0.
        mask: for token logits, `[batch, positions]` of 0/1: the mean is over the 1s.

    Example:
        >>> import numpy as np
        >>> t, s = np.log([[0.5, 0.5]]), np.log([[0.25, 0.75]])
        >>> round(float(kl_per_example(t, s, 1.0)[0]), 4)  # 0.5 ln 2 + 0.5 ln(2/3)
        0.1438
    """
    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    teacher_log_p = ops.log_softmax(t, axis=-1)
    kl = ops.sum(ops.exp(teacher_log_p) * (teacher_log_p - ops.log_softmax(s, axis=-1)), axis=-1)
    if mask is not None:
        kl = ops.sum(kl * mask, -1) / ops.maximum(ops.sum(mask, -1), 1.0)
    return temperature * temperature * kl


def check_settings(config):
    if not 0.0 <= config.distill_alpha <= 1.0:
        raise ConfigError(f"--config distill_alpha={config.distill_alpha}: expected a weight in [0, 1].")
    if config.distill_temperature <= 0:
        raise ConfigError(f"--config distill_temperature={config.distill_temperature}: expected a value > 0.")


def check_teacher(path, cls, model_config):
    """The teacher workdir's `(entry class, model config)`, checked to fit a `cls` student.

    Raises:
        ConfigError: naming `--teacher`, the teacher's model and the student's, or the key that differs.
    """
    if not workdirs.exists(path):
        raise ConfigError(f"--teacher={path}: not a zoo workdir (no zoo.json); train the teacher there first.")
    teacher_cls, record, teacher_config, _ = workdirs.read(path)
    if teacher_cls is not cls:
        raise ConfigError(f"--teacher={path} holds a {record['model']!r} model; the student is a {cls.name!r}: a "
                          f"teacher must be a {cls.name!r} model trained for the same task.")
    if not cls.distillable():
        raise ConfigError(f"--teacher: {cls.name!r} predicts no class or token distribution to distill; models "
                          f"that do: bert_classifier, translator, t5, lstm_lm.")
    for key in cls.teacher_keys:
        have, want = getattr(teacher_config, key), getattr(model_config, key)
        if have != want:
            raise ConfigError(f"--teacher={path}: trained with {key}={have}, the student has {want}; the student "
                              f"reads the teacher's vocabulary, so set --config {key}={have}.")
    if tf.train.latest_checkpoint(os.path.join(path, "checkpoints")) is None:
        raise ConfigError(f"--teacher={path}: no checkpoint in {path}/checkpoints; train the teacher first.")
    return teacher_cls, teacher_config


class Teacher:
    """A frozen teacher model (built under the caller's strategy scope) and the distilled loss.

    It is not part of the student's model, checkpoint or exports: a resumed run reads the
    teacher's latest checkpoint again.

    Args:
        entry: the student's `ZooEntry` (its `static_shapes`, `batch_size` set by the trainer).
        config: the `TrainerConfig` (`teacher`, `distill_alpha`, `distill_temperature`).
    """

    def __init__(self, entry, config):
        check_settings(config)
        cls, model_config = check_teacher(config.teacher, type(entry), entry.config)
        self.entry = cls(model_config, config.teacher)
        self.entry.load_assets()
        self.entry.static_shapes, self.entry.batch_size = entry.static_shapes, entry.batch_size
        self.model = self.entry.build_model()
        self.checkpoint = tf.train.latest_checkpoint(os.path.join(config.teacher, "checkpoints"))
        tf.train.Checkpoint(model=self.model).read(self.checkpoint).expect_partial()
        self.model.trainable = False
        self.alpha, self.temperature = float(config.distill_alpha), float(config.distill_temperature)
        self.student = entry

    def loss(self, model, batch, training):
        """The distilled loss of each example (the task loss alone when not training)."""
        task, logits, mask = self.student.loss_and_logits(model, batch, training)
        if not training:
            return task
        _, teacher_logits, _ = self.entry.loss_and_logits(self.model, batch, False)
        if teacher_logits.shape[-1] != logits.shape[-1]:
            raise ConfigError(f"--teacher={self.entry.workdir}: predicts over {teacher_logits.shape[-1]} outputs, "
                              f"the student over {logits.shape[-1]}.")
        kl = kl_per_example(ops.stop_gradient(teacher_logits), logits, self.temperature, mask)
        return self.alpha * task + (1.0 - self.alpha) * kl


def describe(teacher):
    return (f"Distilling from {teacher.checkpoint} (alpha={teacher.alpha:g}, temperature={teacher.temperature:g}; "
            f"teacher {teacher.model.count_params():,} parameters).")
