"""Gradual magnitude pruning in the trainer (`trainers/pruning.py`) and sparse exports."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests import toy_entry
from tests.helpers import mirrored
from trainers import Trainer, TrainerConfig
from trainers.pruning import PolynomialSparsity, Pruner, PruningError, magnitude_mask, two_four_mask
from zoo import commands, sources


@pytest.fixture(scope="module")
def toy():
    toy_entry.register()
    return toy_entry


def test_schedule_follows_zhu_and_gupta():
    target, begin, end, frequency = 0.9, 10, 70, 20
    schedule = PolynomialSparsity(target, begin, end, frequency)
    for step in range(0, 100):
        if step < begin:
            want = 0.0
        else:
            updated = min(end, begin + (step - begin) // frequency * frequency)
            want = target * (1 - (1 - (updated - begin) / (end - begin)) ** 3)
        assert float(schedule(step)) == pytest.approx(want, abs=1e-12), step
    updates = [s for s in range(100) if bool(schedule.updates_at(s))]
    assert updates == [10, 30, 50, 70]  # the grid, and the last step of the span
    assert [s for s in range(100) if bool(PolynomialSparsity(0.5, 0, 25, 10).updates_at(s))] == [0, 10, 20, 25]


def test_magnitude_mask_keeps_the_largest_weights():
    weights = tf.constant([[0.1, -5.0, 0.3], [2.0, -0.2, 0.05]])
    np.testing.assert_array_equal(magnitude_mask(weights, 0.5).numpy(), [[0, 1, 1], [1, 0, 0]])
    assert magnitude_mask(weights, 0.0).numpy().all()
    assert magnitude_mask(tf.zeros([4, 5]), 0.8).numpy().sum() == 4


def test_two_four_mask_keeps_two_of_every_four_input_weights():
    rng = np.random.RandomState(0)
    dense = rng.randn(8, 3).astype("float32")  # [in, out]: groups run down the input axis
    mask = two_four_mask(tf.constant(dense)).numpy()
    for out in range(3):
        for group in range(2):
            block, kept = dense[group * 4:(group + 1) * 4, out], mask[group * 4:(group + 1) * 4, out]
            assert kept.sum() == 2
            assert set(np.flatnonzero(kept)) == set(np.argsort(-np.abs(block))[:2])
    conv = rng.randn(3, 3, 8, 2).astype("float32")  # [h, w, in, out]: along the input channels
    mask = two_four_mask(tf.constant(conv)).numpy()
    np.testing.assert_array_equal(mask.reshape(3, 3, 2, 4, 2).sum(axis=3), 2)


def _config(**kwargs):
    settings = dict(steps=6, batch_size=8, log_every=1, checkpoint_every=100, clipnorm=0.0, prune_sparsity=0.75,
                    prune_begin_step=1, prune_end_step=5, prune_frequency=2)
    return TrainerConfig(**{**settings, **kwargs})


def _train(toy, workdir, strategy=None, **kwargs):
    cls = toy.registry.get(toy.NAME)
    entry = cls(cls.preset("tiny"), str(workdir))
    trainer = Trainer(entry, _config(**kwargs), str(workdir), strategy=strategy)
    trainer.train(sources.parse("builtin:toy"), evaluate=False)
    return trainer


def test_masks_hold_after_every_step_on_one_device_and_two_replicas(toy, tmp_path):
    for steps in (3, 4):  # mid-schedule: the sparsity the schedule says at the last update
        trainer = _train(toy, tmp_path / f"at{steps}", steps=steps)
        want = float(trainer.pruner.schedule(steps))
        assert 0 < want < 0.75
        for weight, mask in zip(trainer.pruner.weights, trainer.pruner.masks):
            w, m = np.asarray(weight.numpy()), mask.numpy()
            assert (m == 0).sum() == round(w.size * want), weight.path
            assert (w[m == 0] == 0).all(), weight.path  # the optimizer's last step was masked
    # Mirrored == one device at float32 tolerances, in float32 (bfloat16: test_trainer).
    one = _train(toy, tmp_path / "one", mixed_precision="float32")
    two = _train(toy, tmp_path / "two", strategy=mirrored(), mixed_precision="float32")
    paths = [w.path for w in one.pruner.weights]
    assert any("generator" in p for p in paths) and all(p.endswith("kernel") for p in paths)
    for weight, mask in zip(one.pruner.weights, one.pruner.masks):
        w = np.asarray(weight.numpy())
        assert (w == 0).sum() >= round(w.size * 0.75) and (mask.numpy() == 0).sum() == round(w.size * 0.75)
    for a, b in zip(one.model.weights, two.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5, err_msg=a.path)
    for a, b in zip(one.pruner.masks, two.pruner.masks):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert one.pruner.sparsity() == pytest.approx(0.75, abs=0.02)


def test_resume_mid_pruning_is_exact(toy, tmp_path):
    straight = _train(toy, tmp_path / "straight")
    _train(toy, tmp_path / "resumed", steps=3)
    resumed = _train(toy, tmp_path / "resumed")
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    for a, b in zip(straight.pruner.masks, resumed.pruner.masks):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_pruning_settings_name_their_key(toy, tmp_path):
    cls = toy.registry.get(toy.NAME)
    entry = cls(cls.preset("tiny"), str(tmp_path))
    model = entry.build_model()
    model.build()
    strategy = tf.distribute.get_strategy()
    with pytest.raises(PruningError, match="prune_sparsity=0.8: 2:4"):
        Pruner(model, _config(prune_sparsity=0.8, prune_structure="2:4"), 10, strategy)
    with pytest.raises(PruningError, match="prune_variables=nothing_like_this: matches no"):
        Pruner(model, _config(prune_variables="nothing_like_this"), 10, strategy)
    with pytest.raises(PruningError, match="prune_end_step=1: expected a step after prune_begin_step=1"):
        Pruner(model, _config(prune_end_step=1), 10, strategy)


@pytest.mark.slow
def test_pruned_classifier_exports_its_sparsity_and_smaller_sparse_files(tmp_path):
    workdir = str(tmp_path / "pruned")
    commands.train("bert_classifier", workdir, preset="tiny", steps=12, batch_size=16, evaluate=False,
                   overrides=["prune_sparsity=0.8", "prune_frequency=2", "prune_end_step=8",
                              "prune_variables=kernel$,embeddings$", "checkpoint_every=100"])
    manifest = commands.export(workdir, formats=("tflite",), quantize=("none", "sparse", "sparse_int8"), num_checks=16)
    sparsity = manifest["sparsity"]
    assert sparsity["target"] == 0.8 and abs(sparsity["pruned"] - 0.8) < 0.005
    assert any(p.endswith("token_embedding/embeddings") for p in sparsity["tensors"])
    for path, share in sparsity["tensors"].items():
        assert abs(share - 0.8) < 0.01, (path, share)
    files = {a["quantization"]: a for a in manifest["artifacts"] if a["signature"] == "classify_ids"}
    assert files["sparse"]["parity"]["mismatches"] == 0 and files["sparse"]["sparse_storage"]
    # The tiny model's file is mostly metadata; the SST-2 figures are in WORKSPACE_NOTES.md.
    assert files["sparse"]["size_bytes"] < 0.8 * files["none"]["size_bytes"]
    assert files["sparse_int8"]["size_bytes"] < 0.8 * files["none"]["size_bytes"]
    assert files["sparse_int8"]["parity"]["verified"] and files["sparse_int8"]["parity"]["metric"] == "accuracy"
    assert os.path.exists(files["sparse_int8"]["path"])
