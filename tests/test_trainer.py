"""The trainer on its own: phases, precision, XLA, schedules, faults, early stopping, logs."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers, toy_entry
from trainers import Trainer, TrainerConfig, TrainingError
from trainers.schedules import WarmupDecay
from trainers.strategy import StrategyError, make_strategy
from zoo import registry, sources
from zoo.config import ConfigError
from zoo.entry import Phase, TrainingLength

TOY = sources.parse("builtin:toy")


@pytest.fixture
def toy(tmp_path):
    cls = toy_entry.register()
    yield cls(cls.config_class(), str(tmp_path))
    registry.unregister(toy_entry.NAME)


def test_two_phases_each_update_only_their_variables(toy, tmp_path):
    trainer = Trainer(toy, TrainerConfig(steps=3, batch_size=16, log_every=1), str(tmp_path))
    disc = [np.array(v) for v in trainer.model.discriminator.trainable_variables]
    gen = [np.array(v) for v in trainer.model.generator.trainable_variables]
    result = trainer.train(TOY, evaluate=False)
    assert result["step"] == 3
    assert [o.iterations.numpy() for o in trainer.optimizers] == [3, 3]
    assert all(not np.array_equal(a, np.array(b)) for a, b in zip(disc, trainer.model.discriminator.trainable_variables))
    assert all(not np.array_equal(a, np.array(b)) for a, b in zip(gen, trainer.model.generator.trainable_variables))


@pytest.mark.parametrize("policy,rtol", [("float32", 1e-5), ("mixed_bfloat16", 2e-4)])
def test_two_phases_under_mirrored_match_one_device(policy, rtol, toy, tmp_path):
    config = TrainerConfig(steps=4, batch_size=16, log_every=2, seed=3, mixed_precision=policy)
    one = Trainer(toy, config, str(tmp_path / "one"))
    one.train(TOY, evaluate=False)
    two = Trainer(toy, config, str(tmp_path / "two"), strategy=helpers.mirrored())
    two.train(TOY, evaluate=False)
    assert two.model.compute_dtype == policy.split("_")[-1]
    for a, b in zip(one.model.weights, two.model.weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=rtol, atol=rtol / 10)


@pytest.mark.parametrize("name", sorted(set(registry.names()) - {toy_entry.NAME}))
@pytest.mark.slow
def test_every_entry_trains_under_xla(name, tmp_path):
    entry, source = helpers.tiny_entry(name, tmp_path)
    config = TrainerConfig(steps=2, batch_size=8, jit_compile=True, steps_per_execution=2, log_every=2)
    result = Trainer(entry, config, str(tmp_path)).train(source, evaluate=False)
    assert result["step"] == 2 and np.isfinite(result["loss"])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_steps(policy, tmp_path):
    import keras

    entry, source = helpers.tiny_entry("translator", tmp_path)
    trainer = Trainer(entry, TrainerConfig(steps=2, batch_size=8, mixed_precision=policy, log_every=1),
                      str(tmp_path))
    result = trainer.train(source, evaluate=False)
    assert np.isfinite(result["loss"])
    assert trainer.model.source_embedding.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
    # The trainer's policy does not leak into models built after it.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert keras.layers.Dense(2).compute_dtype == "float32"


def test_auto_precision_is_the_default_and_is_said(tmp_path, capsys):
    from trainers import precision

    entry, source = helpers.tiny_entry("translator", tmp_path)
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8), str(tmp_path))
    trainer.train(source, evaluate=False)
    policy, reason = precision.choose("auto")
    assert trainer.policy == policy and reason.startswith("auto: ")
    assert trainer.model.source_embedding.compute_dtype == policy.split("_")[-1]
    assert f"Precision: {policy} ({reason}" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"mixed_precision=bf16: expected one of auto, float32"):
        Trainer(entry, TrainerConfig(steps=1, mixed_precision="bf16"), str(tmp_path / "bad"))


def test_adamw_with_warmup_and_decay(toy, tmp_path):
    config = TrainerConfig(steps=10, batch_size=16, optimizer="adamw", warmup_steps=4, lr_schedule="cosine",
                           learning_rate=0.01, log_every=2)
    trainer = Trainer(toy, config, str(tmp_path))
    trainer.train(TOY, evaluate=False)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    rates = [r["learning_rate"] for r in rows]
    assert rates[0] == pytest.approx(0.005) and rates[1] == pytest.approx(0.01, rel=0.05)
    assert rates[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(a > b for a, b in zip(rates[1:], rates[2:])), rates  # decays after the warmup
    assert type(trainer.optimizers[0]).__name__ == "AdamW"


def test_gradients_are_clipped_as_one_or_in_the_phases_groups_each_on_its_own():
    a, b, c = (tf.Variable([0.0]) for _ in range(3))
    grads = [tf.constant([3.0]), tf.constant([4.0]), tf.constant([0.5])]
    trainer = Trainer.__new__(Trainer)  # _clip reads only the config and the model
    trainer.config, trainer.model = TrainerConfig(clipnorm=1.0), None
    whole = trainer._clip(grads, [a, b, c], Phase("main", None, None), None)
    np.testing.assert_allclose([g.numpy()[0] for g in whole], np.array([3.0, 4.0, 0.5]) / np.sqrt(25.25),
                               rtol=1e-6)
    # Groups (an ensemble's members): the first (norm 5) is cut to norm 1, the second (0.5) is left alone.
    phase = Phase("main", None, None, clip_groups=lambda m: [[a, b], [c]])
    grouped = trainer._clip(grads, [a, b, c], phase, None)
    np.testing.assert_allclose([g.numpy()[0] for g in grouped], [0.6, 0.8, 0.5], rtol=1e-6)


def test_schedules():
    cosine = WarmupDecay(1.0, warmup_steps=0, total_steps=100, decay="cosine")
    assert float(cosine(0)) == pytest.approx(1.0) and float(cosine(50)) == pytest.approx(0.5)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
    linear = WarmupDecay(2.0, warmup_steps=10, total_steps=20, decay="linear")
    assert [float(linear(s)) for s in (5, 10, 15)] == pytest.approx([1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="lr_schedule=step"):
        WarmupDecay(1.0, 0, 10, "step")
    # A warmup that is a share of a planned length the trainer moves (a time budget).
    planned = tf.Variable(100, dtype=tf.int64)
    scaled = WarmupDecay(1.0, warmup_steps=0, total_steps=planned, decay="linear", warmup_fraction=0.1)
    assert [float(scaled(s)) for s in (5, 10, 55, 100)] == pytest.approx([0.5, 1.0, 0.5, 0.0])
    planned.assign(200)
    assert [float(scaled(s)) for s in (10, 20, 110, 200)] == pytest.approx([0.5, 1.0, 0.5, 0.0])
    # At a fixed length the curves are Keras's own: CosineDecay with its linear warmup, and
    # PolynomialDecay (power 1) after the warmup.
    import keras

    steps = range(0, 131, 7)
    ours = WarmupDecay(3e-4, warmup_steps=20, total_steps=130, decay="cosine")
    keras_cosine = keras.optimizers.schedules.CosineDecay(0.0, 110, warmup_target=3e-4, warmup_steps=20)
    np.testing.assert_allclose([float(ours(s)) for s in steps], [float(keras_cosine(s)) for s in steps],
                               rtol=1e-5, atol=1e-10)
    ours = WarmupDecay(3e-4, warmup_steps=20, total_steps=130, decay="linear")
    keras_linear = keras.optimizers.schedules.PolynomialDecay(3e-4, 110, end_learning_rate=0.0, power=1.0)
    np.testing.assert_allclose([float(ours(s)) for s in steps if s >= 20],
                               [float(keras_linear(s - 20)) for s in steps if s >= 20], rtol=1e-5, atol=1e-10)


def test_length_is_picked_from_the_data_size_and_printed(toy, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(type(toy), "training_length", TrainingLength(steps=10, min_epochs=1, max_epochs=5))
    # 512 examples at batch 128: 4 steps an epoch, so 3 epochs come closest to about 10 steps.
    result = Trainer(toy, TrainerConfig(batch_size=128, log_every=4), str(tmp_path), source=TOY).train(
        TOY, evaluate=False)
    assert result["step"] == 12
    assert ("Training length: 3 epochs of 4 steps = 12 steps (picked for 512 training examples at batch 128"
            in capsys.readouterr().out)
    assert TrainingLength(steps=6000, min_epochs=2, max_epochs=20).epochs(67349, 32) == 3
    assert TrainingLength(steps=6000, min_epochs=2, max_epochs=20).epochs(100, 32) == 20


def test_a_time_budget_fits_the_decay_and_stops_training(toy, tmp_path):
    config = TrainerConfig(steps=10**7, batch_size=16, learning_rate=1e-3, lr_schedule="linear",
                           warmup_fraction=0.05, max_seconds=4, log_every=50, checkpoint_every=10**6)
    trainer = Trainer(toy, config, str(tmp_path))
    result = trainer.train(TOY, evaluate=False)
    assert 50 < result["step"] < 10**7
    assert int(trainer.planned_steps.numpy()) == result["step"]  # the plan ended where the budget did
    rates = [r["learning_rate"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if r["kind"] == "train"]
    assert max(rates) > 5e-4  # warmed up to near the peak ...
    assert rates[-1] < 1e-5  # ... and decayed to 0 at the last step, not cut off halfway
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith(f"ckpt-{result['step']}")


def test_early_stopping_on_the_task_metric(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(type(toy), "validation_metric", ("mean_gap", "min"))
    config = TrainerConfig(epochs=2, batch_size=128, early_stopping_metric="task", log_every=4)
    trainer = Trainer(toy, config, str(tmp_path))
    assert trainer.early_stopping_target() == ("mean_gap", "min")
    trainer.train(TOY)
    assert json.load(open(tmp_path / "checkpoints" / "best" / "best.json"))["metric"] == "mean_gap"
    # Other names keep the old rule: min for losses and distances, else max.
    for name, mode in (("val_loss", "min"), ("frechet_distance", "min"), ("chrf", "max")):
        other = Trainer(toy, TrainerConfig(early_stopping_metric=name), str(tmp_path / name))
        assert other.early_stopping_target() == (name, mode)


def test_non_finite_loss_names_step_and_keeps_last_checkpoint(tmp_path):
    cls = toy_entry.register()
    try:
        entry = cls(toy_entry.ToyConfig(poison_step=7), str(tmp_path))
        # Step 7 inside a chunk of steps 5-8: the error names step 7, where it happened.
        config = TrainerConfig(steps=20, batch_size=16, checkpoint_every=4, log_every=4, steps_per_execution=4)
        with pytest.raises(TrainingError, match=r"Non-finite loss .*at step 7; the last good checkpoint .*ckpt-4"):
            Trainer(entry, config, str(tmp_path)).train(TOY, evaluate=False)
        assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    finally:
        registry.unregister(toy_entry.NAME)


def test_early_stopping_keeps_best_and_plots(toy, tmp_path):
    # Learning rate 0: the metric never improves after the first evaluation.
    config = TrainerConfig(epochs=10, batch_size=128, learning_rate=0.0, early_stopping_metric="mean_gap",
                           early_stopping_patience=2, log_every=4, checkpoint_every=100)
    result = Trainer(toy, config, str(tmp_path)).train(TOY)
    assert result["step"] == 12  # 4 steps an epoch: best at epoch 1, two more without improvement
    best = json.load(open(tmp_path / "checkpoints" / "best" / "best.json"))
    assert best["step"] == 4 and best["metric"] == "mean_gap" and best["bad_evaluations"] == 2
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "best")).endswith("best-4")
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-12")
    assert (tmp_path / "training_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_run_killed_between_evaluations_stops_early_where_one_never_killed_does(toy, tmp_path):
    # Early stopping's state is in the checkpoint: evaluations after the last checkpoint are
    # replayed on resume, not counted twice (once they were, from a best.json on disk).
    config = TrainerConfig(epochs=10, batch_size=128, learning_rate=0.0, early_stopping_metric="mean_gap",
                           early_stopping_patience=3, log_every=4, checkpoint_every=8)
    assert Trainer(toy, config, str(tmp_path / "straight")).train(TOY)["step"] == 16

    class Killed(Exception):
        pass

    trainer = Trainer(toy, config, str(tmp_path / "killed"))
    track = trainer._track_best

    def track_then_die(metrics, step, manager):
        stop = track(metrics, step, manager)
        if step == 12:  # evaluated, not yet checkpointed (ckpt-8 is the latest)
            raise Killed
        return stop

    trainer._track_best = track_then_die
    with pytest.raises(Killed):
        trainer.train(TOY)
    assert tf.train.latest_checkpoint(str(tmp_path / "killed" / "checkpoints")).endswith("ckpt-8")
    assert Trainer(toy, config, str(tmp_path / "killed")).train(TOY)["step"] == 16
    best = json.load(open(tmp_path / "killed" / "checkpoints" / "best" / "best.json"))
    assert best["step"] == 4 and best["bad_evaluations"] == 3


def test_unknown_early_stopping_metric(toy, tmp_path):
    config = TrainerConfig(epochs=1, batch_size=128, early_stopping_metric="bleu")
    with pytest.raises(TrainingError, match="early_stopping_metric=bleu: not a validation metric; metrics: mean_gap, val_loss"):
        Trainer(toy, config, str(tmp_path)).train(TOY)


def test_strategies_by_name(monkeypatch):
    assert make_strategy("cpu").num_replicas_in_sync == 1
    assert make_strategy("auto").num_replicas_in_sync == 1  # no TPU, no GPU here
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StrategyError, match="--strategy=multi_worker: set TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StrategyError, match="TF_CONFIG must be JSON"):
        make_strategy("multi_worker")
    with pytest.raises(StrategyError, match="--strategy=gpu_farm: expected one of"):
        make_strategy("gpu_farm")


def test_batch_must_split_over_replicas(toy, tmp_path):
    with pytest.raises(TrainingError, match="--batch_size=15 does not split evenly over 2 replicas"):
        Trainer(toy, TrainerConfig(batch_size=15), str(tmp_path), strategy=helpers.mirrored())


def test_profile_steps_trace_the_chosen_steps_and_name_their_ops(toy, tmp_path, capsys):
    from trainers import profiling

    config = TrainerConfig(steps=12, batch_size=16, log_every=4, steps_per_execution=4, profile_steps="6-9")
    trainer = Trainer(toy, config, str(tmp_path))
    trainer.train(TOY, evaluate=False)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("Profile of steps 6-9"))
    times = profiling.op_times(str(tmp_path / "logs" / "profile"))
    # The toy's step: dense layers (MatMul, oneDNN's _MklMatMul or a fused form) and Adam's updates.
    assert any("MatMul" in op for op in times), times
    assert any(op in line for op in times) and "% " in line, line
    assert not trainer.profiler.running
    # Chunks were cut at 6 and 9 (log rows stay at their own steps).
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [4, 8, 12]
    with pytest.raises(ConfigError, match=r"profile_steps=9-6: expected FIRST-LAST"):
        Trainer(toy, TrainerConfig(steps=1, profile_steps="9-6"), str(tmp_path / "bad"))


def test_profile_self_times_leave_out_nested_events():
    from trainers.profiling import _self_times

    events = [(0, 100, "loop:While"), (10, 40, "a:MatMul"), (50, 60, "b:AddV2"), (55, 58, "c:Mul"),
              (200, 210, "d:MatMul")]
    assert sorted(_self_times(events)) == sorted([("loop:While", 60), ("a:MatMul", 30), ("b:AddV2", 7),
                                                  ("c:Mul", 3), ("d:MatMul", 10)])


def test_every_worker_cuts_its_chunks_at_the_profiled_steps_but_only_the_chief_traces(tmp_path):
    from trainers.profiling import StepProfiler

    worker = StepProfiler((5, 9), str(tmp_path / "w"), trace=False)
    assert worker.boundaries(0) == [5, 9] and worker.boundaries(6) == [9] and worker.boundaries(9) == []
    worker.before_chunk(5)
    assert not worker.running and not (tmp_path / "w").exists()
    assert worker.describe_start(12, 20) is None
    chief = StepProfiler((5, 9), str(tmp_path / "c"))
    assert chief.describe_start(0, 20) is None
    assert "trains steps 12-20; nothing is traced" in chief.describe_start(12, 20)
    assert "trains steps 0-4" in chief.describe_start(0, 4)
