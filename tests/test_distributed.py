"""Real distribution on one machine: two worker processes on localhost ports (TF_CONFIG)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ROOT, free_ports, zoo_cli

FLAGS = ["--model=translator", "--preset=tiny", "--batch_size=16", "--steps=8", "--config=deterministic=true",
         "--config=eval_examples=10", "--config=log_every=4", "--config=clipnorm=1.0",
         # Workers == one device is compared at float32 tolerances (bfloat16: test_trainer).
         "--config=mixed_precision=float32"]


def weights(workdir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n.startswith("model/")}


def start_workers(workdir, *extra, flags=FLAGS):
    """Two `zoo train` worker processes on localhost ports: `flags`, the workdir, then `extra`."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "zoo.cli", "train", *flags, f"--workdir={workdir}", "--strategy=multi_worker",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    return procs


@pytest.mark.slow
def test_multi_worker_matches_one_device(tmp_path):
    workdir = str(tmp_path / "multi")
    procs = start_workers(workdir)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    digests = [re.search(r"\[done\] worker=(\d) step=8 weights_sha256=(\w+)", out).groups() for out, _ in outs]
    assert sorted(d[0] for d in digests) == ["0", "1"]
    assert digests[0][1] == digests[1][1], "the two workers ended with different weights"
    assert not [d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.startswith(".worker")]

    single = str(tmp_path / "single")
    zoo_cli("train", *FLAGS, f"--workdir={single}")
    a, b = weights(single), weights(workdir)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_sigterm_to_one_worker_inside_a_long_chunk_stops_both_at_the_same_step(tmp_path):
    # At batch 2 an epoch of the 20,000 built-in dates is 10,000 steps in one call of the
    # training function (no log, checkpoint or evaluation inside): longer than a preemption
    # notice. The signal reaches one worker; the step's gradient all-reduce carries its stop
    # flag to the other.
    workdir = str(tmp_path / "multi")
    procs = start_workers(workdir, "--steps=100000", "--batch_size=2", "--config=log_every=100000",
                          "--config=steps_per_execution=100000", "--config=checkpoint_every=100000")
    for line in procs[0].stdout:
        if line.startswith("Training length"):
            break
    time.sleep(10)  # past the chunk's tracing, also beside other tests (the suite runs two at a time)
    sent = time.monotonic()
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=300) for p in procs]
    seconds = time.monotonic() - sent
    steps = []
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 75, err[-3000:]
        steps.append(int(re.search(r"Stopped on SIGTERM at step (\d+)", err).group(1)))
    assert seconds < 30, f"{seconds:.1f} s from SIGTERM to both exits"
    assert steps[0] == steps[1] and 0 < steps[0] < 10000, steps
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(f"ckpt-{steps[0]}")


@pytest.mark.slow
def test_two_workers_agree_on_early_stopping(tmp_path):
    # The chief's metric decides for both (a collective, not a file each reads): both save the
    # best checkpoint and stop at the same evaluation. "max" on val_loss never improves.
    from zoo.translator.entry import BUILTINS

    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{a}\t{b}\n" for a, b in BUILTINS["dates"]("train")[:320]))
    workdir = str(tmp_path / "multi")
    procs = start_workers(workdir, f"--data={data}", "--steps=1000", "--config=early_stopping_metric=val_loss",
                          "--config=early_stopping_mode=max", "--config=early_stopping_patience=2")
    outs = [p.communicate(timeout=600) for p in procs]
    stopped = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        stopped.append(int(re.search(r"Early stopping at step (\d+)", out + err).group(1)))
    # 288 training pairs at batch 16: 18 steps an epoch; best at epoch 1, two more without.
    assert stopped == [54, 54], stopped
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints", "best")).endswith("best-18")


@pytest.mark.slow
@pytest.mark.parametrize("model, outputs", [("bert_classifier", ["confusion_matrix.png"]),
                                            ("vae", ["images/epoch001-samples.png",
                                                     "images/epoch001-reconstructions.png"])])
def test_evaluation_side_outputs_with_two_workers(model, outputs, tmp_path):
    # The chief alone writes what a person looks at after an evaluation; once both workers
    # wrote it through one temporary name and the second rename killed its worker.
    workdir = str(tmp_path / "multi")
    procs = start_workers(workdir, flags=[f"--model={model}", "--preset=tiny", "--steps=4", "--batch_size=8",
                                          "--config=log_every=2"])
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    for name in outputs:
        assert os.path.getsize(os.path.join(workdir, name)) > 500, name
    leftovers = [f for _, _, files in os.walk(workdir) for f in files if ".tmp" in f]
    assert not leftovers, leftovers
