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

from zoo import fileio
from zoo import workdir as workdirs
from zoo.config import ConfigError
from zoo.ensemble import ensemble_logits


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


def teacher_paths(value):
    """The teacher workdirs of `--teacher=A[,B...]` (several: an ensemble)."""
    return [path.strip() for path in value.split(",") if path.strip()]


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


def check_teachers(value, cls, model_config):
    """`[(path, entry class, model config)]` of `--teacher=A[,B...]`, each checked by
    `check_teacher`; the members of an ensemble must read and predict alike (the same assets:
    vocabularies, labels; not `training_only_assets`), since the student takes the first one's.

    Raises:
        ConfigError: naming the teacher and what differs.
    """
    paths = teacher_paths(value)
    if not paths:
        raise ConfigError(f"--teacher={value.strip()}: expected a workdir, or several separated by commas.")
    checked = [(path, *check_teacher(path, cls, model_config)) for path in paths]
    first = _asset_files(paths[0], cls.training_only_assets)
    for path in paths[1:]:
        other = _asset_files(path, cls.training_only_assets)
        differ = sorted(name for name in set(first) | set(other) if first.get(name) != other.get(name))
        if differ:
            raise ConfigError(f"--teacher: {path} and {paths[0]} differ in assets/{differ[0]}: the teachers of an "
                              f"ensemble must share their vocabulary and labels (train them on the same --data "
                              f"with the same model settings).")
    return checked


def _asset_files(workdir, leave_out=()):
    """{relative path: bytes} of the files under `workdir/assets`, but those in `leave_out`."""
    root = fileio.join(workdir, "assets")
    files = {}
    for folder, _, names in fileio.walk(root):
        for name in names:
            path = fileio.join(folder, name)
            relative = os.path.relpath(path, root)
            if relative not in leave_out:
                files[relative] = fileio.read_bytes(path)
    return files


class Teacher:
    """The frozen teacher models (built under the caller's strategy scope) and the distilled loss.

    `--teacher=A,B,...` names an ensemble: the student learns the mean of their distributions
    at the temperature (`ensemble_logits`). Teachers are not part of the student's model,
    checkpoint or exports: a resumed run reads each teacher's latest checkpoint again.

    Args:
        entry: the student's `ZooEntry` (its `static_shapes`, `batch_size` set by the trainer).
        config: the `TrainerConfig` (`teacher`, `distill_alpha`, `distill_temperature`).
    """

    def __init__(self, entry, config):
        check_settings(config)
        self.entries, self.models, self.checkpoints = [], [], []
        for path, cls, model_config in check_teachers(config.teacher, type(entry), entry.config):
            teacher = cls(model_config, path)
            teacher.load_assets()
            teacher.static_shapes, teacher.batch_size = entry.static_shapes, entry.batch_size
            model = teacher.build_model()
            checkpoint = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
            tf.train.Checkpoint(model=model).read(checkpoint).expect_partial()
            model.trainable = False
            self.entries.append(teacher)
            self.models.append(model)
            self.checkpoints.append(checkpoint)
        self.alpha, self.temperature = float(config.distill_alpha), float(config.distill_temperature)
        self.student = entry

    def logits(self, batch):
        """The teachers' logits of `batch` (one teacher's own; an ensemble's by `ensemble_logits`)."""
        logits = [entry.loss_and_logits(model, batch, False)[1] for entry, model in zip(self.entries, self.models)]
        return ensemble_logits(logits, self.temperature)

    def loss(self, model, batch, training):
        """The distilled loss of each example (the task loss alone when not training)."""
        task, logits, mask = self.student.loss_and_logits(model, batch, training)
        if not training:
            return task
        teacher_logits = self.logits(batch)
        if teacher_logits.shape[-1] != logits.shape[-1]:
            raise ConfigError(f"--teacher={self.entries[0].workdir}: predicts over {teacher_logits.shape[-1]} "
                              f"outputs, the student over {logits.shape[-1]}.")
        kl = kl_per_example(ops.stop_gradient(teacher_logits), logits, self.temperature, mask)
        return self.alpha * task + (1.0 - self.alpha) * kl


def describe(teacher):
    params = " + ".join(f"{model.count_params():,}" for model in teacher.models)
    return (f"Distilling from {', '.join(teacher.checkpoints)} (alpha={teacher.alpha:g}, "
            f"temperature={teacher.temperature:g}; teacher parameters {params}).")
