"""The developer data each benchmark trains on (`../shared/data`, never copied into the
project), with the flags the README gives for it, and what a `zoo train` run reports."""

import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
# model: (file under SHARED, `zoo train` flags the README names for it)
DATA = {"bert_classifier": ("classification/sst2_train.tsv",
                            ["--config=validation_data=" + os.path.join(SHARED, "classification", "sst2_dev.tsv")]),
        "vae": ("images/mnist_train.npz", []),
        "gan": ("images/mnist_train.npz", []),
        "translator": ("translation/eng_fra.tsv", []),
        "lstm_lm": ("text/tinyshakespeare_train.txt", []),
        "t5": ("text2text/e2e.tsv", [])}
# model: `--config` overrides that give the zoo entry its peer's exact sizes (the throughput
# comparisons: the same model on both sides; each entry's preset `small` otherwise)
PEER_SIZES = {
    "vae": ["latent_dim=2", "filters=32,64", "dense_units=16", "kernel_size=3", "res_blocks=0",
            "iaf_steps=0"],
    "gan": ["latent_dim=128", "generator_filters=128,256", "discriminator_filters=64,128,128",
            "kernel_size=4", "output_kernel_size=5", "batch_norm=false"],
    "translator": ["attention=none", "bidirectional=false", "embedding_dim=256", "units=256", "dropout=0",
                   "num_layers=1"],
}


def path(name):
    """The data file of `name`, or None (with a message) where the shared folder lacks it."""
    data = os.path.join(SHARED, DATA[name][0])
    if not os.path.exists(data):
        print(f"skipped {name}: {data} not found (the shared data folder is absent)")
        return None
    return data


def train_rate(workdir):
    """The median training examples/s of a run's log (`metrics.jsonl`), leaving out the first
    line, which includes tracing."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rates = [row["examples_per_sec"] for row in map(json.loads, f)
                 if row.get("kind") == "train" and "examples_per_sec" in row]
    return statistics.median(rates[1:] or rates)


def precision_line(stdout):
    """The "Precision: <policy> (...)" line `zoo train` printed."""
    return next(line for line in stdout.splitlines() if line.startswith("Precision: "))


def timed_run(name, data, extra, workdir, seconds, env=None):
    """`zoo train` of `name` with its defaults for `seconds` (the trainer's time budget);
    returns (median training examples/s, the run's stdout). `env`, where given, replaces any
    thread settings of this environment (benchmarks/threads.py sets its own)."""
    command = [sys.executable, "-m", "zoo.cli", "train", f"--model={name}", f"--workdir={workdir}", f"--data={data}",
               f"--config=max_seconds={seconds:g}", "--config=log_every=20", *extra]
    base = {k: v for k, v in os.environ.items()
            if env is None or k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**base, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    return train_rate(workdir), proc.stdout
