"""Real distribution on one machine: two worker processes on localhost ports (TF_CONFIG)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ROOT, zoo_cli

FLAGS = ["--model=translator", "--preset=tiny", "--batch_size=16", "--steps=8", "--config=deterministic=true",
         "--config=eval_examples=10", "--config=log_every=4", "--config=clipnorm=1.0"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def weights(workdir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n.startswith("model/")}


def start_workers(workdir, *extra):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "zoo.cli", "train", *FLAGS, f"--workdir={workdir}", "--strategy=multi_worker",
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
def test_sigterm_to_one_worker_stops_both_at_the_same_step(tmp_path):
    workdir = str(tmp_path / "multi")
    procs = start_workers(workdir, "--steps=400", "--config=log_every=1", "--config=steps_per_execution=1",
                          "--config=checkpoint_every=1000")
    for line in procs[0].stdout:
        if line.startswith("[train] step=10"):
            break
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=300) for p in procs]
    steps = []
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 75, err[-3000:]
        steps.append(int(re.search(r"Stopped on SIGTERM at step (\d+)", err).group(1)))
    assert steps[0] == steps[1] and 10 <= steps[0] < 400
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(f"ckpt-{steps[0]}")
