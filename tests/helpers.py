"""Shared checks that every zoo entry passes (keras-hub `tests/test_case.py` style).

`check_entry` runs, for any registered entry on its tiny preset: a config round-trip, a
`.keras` save/load with equal outputs, one training step under the default strategy and
under a two-replica MirroredStrategy, and a SavedModel + TFLite export with parity.
"""

import dataclasses
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from trainers import Trainer, TrainerConfig
from zoo import registry, sources
from zoo.config import from_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_MIRRORED = []


def mirrored():
    """One MirroredStrategy over the two logical CPUs, shared by every test in the process.

    Several MirroredStrategy objects over the same devices in one process collide in their
    collective instance keys ("Shape mismatch in the collective instance ..."), so the tests
    share one.
    """
    if not _MIRRORED:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
        assert len(devices) == 2, "conftest must configure two logical CPUs"
        _MIRRORED.append(tf.distribute.MirroredStrategy(devices))
    return _MIRRORED[0]


def zoo_cli(*args, check=True, timeout=600):
    """Runs the `zoo` command in a subprocess; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def free_ports(count):
    """`count` TCP ports free on localhost now (for TF_CONFIG clusters of worker processes)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def softmax(logits):
    """Probabilities (float64 numpy) of logits over the last axis."""
    logits = np.asarray(logits, "float64")
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def tiny_entry(name, workdir, data=None):
    cls = registry.get(name)
    entry = cls(cls.preset("tiny"), str(workdir))
    source = sources.parse(data or cls.default_data)
    entry.prepare(source)
    return entry, source


def first_batch(entry, source, batch_size=4):
    return next(iter(entry.dataset(source, "train", batch_size, training=True)))


def check_config_round_trip(entry):
    config = entry.config
    assert from_dict(type(config), dataclasses.asdict(config), "test") == config


def check_keras_round_trip(entry, source, tmp_path):
    model = entry.build_model()
    batch = first_batch(entry, source)
    before = entry.loss(model, batch, training=False)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    after = entry.loss(restored, batch, training=False)
    np.testing.assert_allclose(np.asarray(before), np.asarray(after), rtol=1e-6, atol=1e-6)
    assert restored.get_config() == model.get_config()


def train_weights(entry, source, workdir, strategy=None, steps=2):
    # float32: Mirrored == one device is compared at float32 tolerances (bfloat16 in
    # test_trainer.test_two_phases_under_mirrored_match_one_device).
    config = TrainerConfig(steps=steps, batch_size=8, log_every=1, checkpoint_every=100, seed=0, clipnorm=0.0,
                           mixed_precision="float32")
    trainer = Trainer(entry, config, str(workdir), strategy=strategy)
    before = [np.array(v) for v in trainer.model.trainable_variables]
    result = trainer.train(source, evaluate=False)
    after = [np.array(v) for v in trainer.model.trainable_variables]
    return result, before, after


def check_training_steps(entry, source, tmp_path):
    result, before, after = train_weights(entry, source, tmp_path / "default")
    assert result["step"] == 2 and np.isfinite(result["loss"])
    assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "no weight changed"
    result2, _, after2 = train_weights(entry, source, tmp_path / "mirrored", strategy=mirrored())
    assert result2["step"] == 2 and np.isfinite(result2["loss"])
    for a, b in zip(after, after2):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def check_export(entry, source, tmp_path, num_checks=20, custom_op_signatures=()):
    from export import exporter

    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8), str(tmp_path))
    manifest = exporter.export(entry, trainer.model, str(tmp_path), formats=("saved_model", "keras", "tflite"),
                               source=source, num_checks=num_checks)
    formats = {a["format"] for a in manifest["artifacts"]}
    assert formats == {"saved_model", "keras", "tflite"}
    assert manifest["keras_latency_ms_batch1"] > 0
    for artifact in manifest["artifacts"]:
        assert artifact["parity"]["checked"] == num_checks and artifact["parity"]["mismatches"] == 0
        assert os.path.exists(artifact["path"]) and artifact["size_bytes"] > 0
        if artifact["format"] == "tflite":
            assert artifact["ops"], artifact
            if artifact["signature"] in custom_op_signatures:
                assert artifact["custom_ops"] and not artifact["builtin_ops_only"], artifact
            else:
                assert artifact["builtin_ops_only"] and not artifact["custom_ops"], artifact
            assert len(artifact["sha256"]) == 64
        if artifact["format"] != "keras":
            assert artifact["latency_ms_batch1"] > 0
    return manifest


def check_entry(name, tmp_path, data=None, custom_op_signatures=()):
    """The shared checks; `custom_op_signatures` name TFLite models allowed custom (tf-text) ops."""
    entry, source = tiny_entry(name, tmp_path / "assets", data)
    check_config_round_trip(entry)
    check_keras_round_trip(entry, source, tmp_path)
    check_training_steps(entry, source, tmp_path)
    return check_export(entry, source, tmp_path / "export", custom_op_signatures=custom_op_signatures)
