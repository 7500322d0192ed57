"""Knowledge distillation in the trainer (`trainers/distillation.py`, `--teacher`)."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import toy_entry
from tests.helpers import mirrored, softmax, zoo_cli
from trainers import Trainer, TrainerConfig, distillation
from zoo import commands, sources
from zoo import workdir as workdirs
from zoo.config import ConfigError


def test_kl_against_a_hand_computed_case_and_keras_distillation():
    teacher = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], "float32")
    student = np.array([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]], "float32")
    temperature = 2.0

    p, q = softmax(teacher / temperature), softmax(student / temperature)
    want = temperature ** 2 * (p * np.log(p / q)).sum(-1)
    got = np.asarray(distillation.kl_per_example(teacher, student, temperature))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # keras.distillation's LogitsDistillation is the batch mean of the same quantity (given a
    # KLDivergence instance: Keras 3.15's default, the string "kl_divergence", skips its softmax).
    reference = keras.distillation.LogitsDistillation(
        temperature=temperature, loss=keras.losses.KLDivergence()).compute_loss(teacher, student)
    np.testing.assert_allclose(got.mean(), float(reference), rtol=1e-4)
    # Token logits: the mean over each example's unmasked positions only.
    tokens_t, tokens_s = np.stack([teacher, teacher]), np.stack([student, student[::-1]])
    mask = np.array([[1, 0], [0, 1]], "float32")
    got = np.asarray(distillation.kl_per_example(tokens_t, tokens_s, temperature, mask))
    np.testing.assert_allclose(got, [want[0], temperature ** 2 * (p[1] * np.log(p[1] / softmax(student[0] / 2)[None])).sum()],
                               rtol=1e-5)


def _teacher(tmp_path, name="teacher", seed=0, data=None):
    path = str(tmp_path / name)
    if not workdirs.exists(path):
        commands.train("bert_classifier", path, preset="tiny", steps=4, batch_size=8, evaluate=False, data=data,
                       overrides=["checkpoint_every=100", f"seed={seed}"])
    return path


def _student_trainer(teacher, workdir, strategy=None, steps=4, alpha=0.3):
    cls = commands.registry.get("bert_classifier")
    config = cls.preset("tiny")
    config.num_layers = 1
    entry = cls(config, str(workdir))
    source = sources.parse("builtin:reviews")
    if not teacher:
        entry.prepare(source)
    elif not os.path.exists(os.path.join(str(workdir), "assets")):
        commands._take_teacher_assets(entry, teacher, source)
    else:
        entry.load_assets()
    trainer_config = TrainerConfig(steps=steps, batch_size=8, log_every=1, checkpoint_every=100, clipnorm=0.0,
                                   teacher=teacher, distill_alpha=alpha, distill_temperature=3.0,
                                   # float32: Mirrored == one device is compared at float32 tolerances
                                   # (bfloat16's in test_trainer; its exact resume in test_faults).
                                   mixed_precision="float32")
    return Trainer(entry, trainer_config, str(workdir), strategy=strategy), source


@pytest.mark.slow
def test_the_distilled_loss_is_alpha_task_plus_teacher_kl(tmp_path):
    teacher = _teacher(tmp_path)
    trainer, source = _student_trainer(teacher, tmp_path / "student")
    batch = next(iter(trainer.entry.dataset(source, "train", 8, training=True)))
    task, logits, _ = trainer.entry.loss_and_logits(trainer.model, batch, False)
    _, teacher_logits, _ = trainer.teacher.entries[0].loss_and_logits(trainer.teacher.models[0], batch, False)
    assert not np.allclose(np.asarray(logits), np.asarray(teacher_logits))
    kl = distillation.kl_per_example(teacher_logits, logits, 3.0)
    # The tiny preset has no dropout, so training=True computes the same forward pass.
    got = np.asarray(trainer.phases[0].loss(trainer.model, batch, training=True))
    np.testing.assert_allclose(got, 0.3 * np.asarray(task) + 0.7 * np.asarray(kl), rtol=1e-5)
    # Validation reports the task loss alone.
    assert trainer.validation_loss(source) == pytest.approx(
        float(np.mean([np.asarray(trainer.entry.loss(trainer.model, b, False)).mean()
                       for b in trainer.entry.dataset(source, "validation", 8, training=False)])), rel=0.05)


def test_an_ensemble_teaches_the_mean_of_its_distributions(tmp_path):
    teachers = [_teacher(tmp_path), _teacher(tmp_path, "teacher_seed1", seed=1)]
    trainer, source = _student_trainer(",".join(teachers), tmp_path / "student", alpha=0.0)
    assert [os.path.dirname(c) for c in trainer.teacher.checkpoints] == [os.path.join(t, "checkpoints")
                                                                         for t in teachers]
    batch = next(iter(trainer.entry.dataset(source, "train", 8, training=True)))
    members = [np.asarray(e.loss_and_logits(m, batch, False)[1], "float64")
               for e, m in zip(trainer.teacher.entries, trainer.teacher.models)]
    assert not np.allclose(members[0], members[1])  # two seeds: two different teachers
    _, logits, _ = trainer.entry.loss_and_logits(trainer.model, batch, False)

    # The ensemble's distribution at T is the mean of its members' (checked on logits far
    # apart: these 4-step teachers are close to uniform at T = 3).
    wide = [m * (6.0 / np.abs(m).max()) for m in members]
    p = (softmax(wide[0] / 3.0) + softmax(wide[1] / 3.0)) / 2
    np.testing.assert_allclose(softmax(np.asarray(distillation.ensemble_logits(wide, 3.0), "float64") / 3.0), p,
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(softmax((wide[0] + wide[1]) / 6.0), p, atol=1e-3)  # not the mean of the logits
    # The trainer's loss (alpha 0) is the KL from that ensemble.
    teacher_logits = trainer.teacher.logits(batch)
    np.testing.assert_allclose(np.asarray(teacher_logits), np.asarray(distillation.ensemble_logits(members, 3.0)),
                               rtol=1e-6)
    want = distillation.kl_per_example(teacher_logits, logits, 3.0)
    got = np.asarray(trainer.phases[0].loss(trainer.model, batch, training=True))
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5)
    # Teachers that read differently (another vocabulary) cannot form an ensemble.
    data = tmp_path / "other.csv"
    data.write_text("text,label\n" + "".join(f"word{i} text{i},{label}\n" for i in range(30)
                                             for label in ("negative", "neutral", "positive")))
    stranger = _teacher(tmp_path, "stranger", data=str(data))
    with pytest.raises(ConfigError, match=r"--teacher: .*stranger and .*teacher differ in assets/vocab.txt"):
        commands.train("bert_classifier", str(tmp_path / "s"), preset="tiny", steps=1,
                       overrides=[f"teacher={teachers[0]},{stranger}"])
    # Class weights only steer training: members may differ in them.
    twin = str(tmp_path / "twin")
    shutil.copytree(teachers[0], twin)
    with open(os.path.join(twin, "assets", "class_weights.json"), "w") as f:
        f.write('{"negative": 3.0, "neutral": 1.0, "positive": 1.0}')
    assert len(distillation.check_teachers(f"{teachers[0]}, {twin},", type(trainer.entry), trainer.entry.config)) == 2
    with pytest.raises(ConfigError, match="--teacher=,: expected a workdir"):
        commands.train("bert_classifier", str(tmp_path / "s2"), preset="tiny", steps=1, overrides=["teacher=,"])


@pytest.mark.slow
def test_distillation_resumes_exactly_mirrored_equals_one_device_and_keeps_the_teacher_out(tmp_path):
    teacher = _teacher(tmp_path)
    teacher_weights = [np.asarray(w) for w in workdirs.pretrained_model(
        teacher, *workdirs.read(teacher)[0:3:2])[0].weights]
    straight, source = _student_trainer(teacher, tmp_path / "straight")
    straight.train(source, evaluate=False)
    first, _ = _student_trainer(teacher, tmp_path / "resumed", steps=2)
    first.train(source, evaluate=False)
    resumed, _ = _student_trainer(teacher, tmp_path / "resumed")
    resumed.train(source, evaluate=False)
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    two, _ = _student_trainer(teacher, tmp_path / "mirrored", strategy=mirrored())
    two.train(source, evaluate=False)
    for a, b in zip(straight.model.weights, two.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5, err_msg=a.path)
    # The teacher stayed frozen and is not in the student's checkpoint.
    for a, b in zip(teacher_weights, straight.teacher.models[0].weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    alone, _ = _student_trainer("", tmp_path / "alone", steps=1)
    alone.train(source, evaluate=False)

    def stored(name):
        return sorted(tf.train.list_variables(tf.train.latest_checkpoint(str(tmp_path / name / "checkpoints"))))

    assert stored("straight") == stored("alone")
    assert straight.teacher.models[0].count_params() > straight.model.count_params()


def test_a_teacher_of_another_task_is_refused_naming_both(tmp_path):
    toy_entry.register()
    toy = str(tmp_path / "toy")
    commands.train(toy_entry.NAME, toy, preset="tiny", steps=1, batch_size=8, evaluate=False)
    with pytest.raises(ConfigError, match=r"--teacher=.*toy holds a 'toy_two_phase' model; the student is a "
                                          r"'bert_classifier'"):
        commands.train("bert_classifier", str(tmp_path / "s1"), preset="tiny", steps=1, batch_size=8,
                       overrides=[f"teacher={toy}"])
    with pytest.raises(ConfigError, match="'toy_two_phase' predicts no class or token distribution"):
        commands.train(toy_entry.NAME, str(tmp_path / "s2"), preset="tiny", steps=1, overrides=[f"teacher={toy}"])
    teacher = _teacher(tmp_path)  # trained on builtin:reviews: negative, neutral, positive
    data = tmp_path / "other.csv"
    data.write_text("text,label\n" + "a fine day,sunny\nrain again,rainy\n" * 20)
    with pytest.raises(ConfigError, match=r"predicts the labels \['negative', 'neutral', 'positive'\]; "
                                          r"--data=.*other.csv has \['rainy', 'sunny'\]"):
        commands.train("bert_classifier", str(tmp_path / "s3"), data=str(data), preset="tiny", steps=1,
                       overrides=[f"teacher={teacher}"])
    with pytest.raises(ConfigError, match="trained with lowercase=True, the student has False"):
        commands.train("bert_classifier", str(tmp_path / "s4"), preset="tiny", steps=1,
                       overrides=[f"teacher={teacher}", "lowercase=false"])


@pytest.mark.slow
def test_cli_teacher_flag_and_resume_with_another_teacher(tmp_path):
    teacher = _teacher(tmp_path)
    student = str(tmp_path / "student")
    zoo_cli("train", "--model=bert_classifier", f"--workdir={student}", "--preset=tiny", "--steps=2",
            "--batch_size=8", f"--teacher={teacher}", "--config=num_layers=1", "--config=eval_examples=16")
    assert workdirs.read(student)[3].teacher == os.path.abspath(teacher)
    with open(os.path.join(teacher, "assets", "vocab.txt")) as a, open(os.path.join(student, "assets", "vocab.txt")) as b:
        assert a.read() == b.read()
    proc = zoo_cli("train", "--model=bert_classifier", f"--workdir={student}", "--steps=3",
                   f"--teacher={tmp_path}", check=False)
    assert proc.returncode != 0 and "the teacher cannot change on resume" in proc.stderr
    # Serving and evaluating the student need no teacher.
    os.rename(teacher, teacher + ".moved")
    assert "accuracy" in commands.evaluate(student)


@pytest.mark.parametrize("name", ["translator", "lstm_lm", "t5"])
@pytest.mark.slow
def test_token_models_distill_per_position(name, tmp_path):
    """Token models distill over the vocabulary at each target position, padding left out."""
    from zoo import registry

    cls = registry.get(name)
    teacher = str(tmp_path / "teacher")
    commands.train(name, teacher, preset="tiny", steps=2, batch_size=8, evaluate=False)
    entry = cls(cls.preset("tiny"), str(tmp_path / "student"))
    source = sources.parse(cls.default_data)
    commands._take_teacher_assets(entry, teacher, source)
    config = TrainerConfig(steps=2, batch_size=8, log_every=1, teacher=teacher, distill_alpha=0.0,
                           distill_temperature=1.0)
    trainer = Trainer(entry, config, str(tmp_path / "student"))
    batch = next(iter(entry.dataset(source, "train", 8, training=True)))
    _, logits, mask = entry.loss_and_logits(trainer.model, batch, False)
    _, teacher_logits, _ = trainer.teacher.entries[0].loss_and_logits(trainer.teacher.models[0], batch, False)
    assert logits.shape == teacher_logits.shape and len(logits.shape) == 3 and mask.shape == logits.shape[:2]
    assert 0 < float(np.asarray(mask).mean()) <= 1
    # With alpha 0 and T 1, the validation-mode forward gives the masked mean KL per example.
    p = tf.nn.softmax(teacher_logits)
    kl = tf.reduce_sum(p * (tf.nn.log_softmax(teacher_logits) - tf.nn.log_softmax(logits)), -1).numpy()
    mask = np.asarray(mask)
    want = (kl * mask).sum(-1) / np.maximum(mask.sum(-1), 1)
    got = np.asarray(distillation.kl_per_example(teacher_logits, logits, 1.0, mask))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert (got > 0).all()
    result = trainer.train(source, evaluate=False)
    assert result["step"] == 2 and np.isfinite(result["loss"])
