"""Which thread and kernel settings train fastest on this machine.

    python benchmarks/threads.py [--models=bert_classifier,translator,gan] [--seconds=45]

For each model, the README's command with the entry's defaults on the developer data, for
`--seconds` of training under each setting (environment variables that TensorFlow reads when
its runtime starts), one after the other on all the cores this process may use:

- `zoo`: what `zoo train` picks itself (`zoo/threads.py`: intra-op and inter-op threads =
  the usable cores; oneDNN on);
- `tf-default`: TensorFlow's own choice (`TF_NUM_INTRAOP_THREADS`/`TF_NUM_INTEROP_THREADS`
  unset and `ZOO_THREADS=tf` so the zoo leaves them alone);
- intra/inter pairs, and oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`, the Eigen kernels).

Reported: the median training examples/s of each (the trainer's own log, the lines after the
first, which includes tracing), as a ratio to TensorFlow's default. Reads `../shared/data`; a
model whose data is absent is skipped with a message.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.developer_data import DATA, path  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["bert_classifier", "translator", "gan"], "Entries to measure.")
flags.DEFINE_float("seconds", 45.0, "Training wall time of each run (the trainer's time budget).")
flags.DEFINE_string("workroot", "", "Where the workdirs go (default: a temporary folder).")


def settings(cores):
    """(label, environment) of every setting measured."""
    rows = [("zoo", {}), ("tf-default", {"ZOO_THREADS": "tf"})]
    for intra, inter in sorted({(cores, 1), (cores, 2), (cores, cores), (1, 1)}):
        rows.append((f"intra={intra} inter={inter}", {"TF_NUM_INTRAOP_THREADS": str(intra),
                                                      "TF_NUM_INTEROP_THREADS": str(inter)}))
    rows.append(("zoo, oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}))
    return rows


def examples_per_sec(name, data, extra, workdir, env):
    command = [sys.executable, "-m", "zoo.cli", "train", f"--model={name}", f"--workdir={workdir}", f"--data={data}",
               f"--config=max_seconds={FLAGS.seconds:g}", "--config=log_every=20", *extra]
    base = {k: v for k, v in os.environ.items() if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**base, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rates = [row["examples_per_sec"] for row in map(json.loads, f)
                 if row.get("kind") == "train" and "examples_per_sec" in row]
    said = next((line for line in proc.stdout.splitlines() if line.startswith("Threads: ")), "")
    return statistics.median(rates[1:] or rates), said


def main(argv):
    del argv
    from zoo import threads

    cores = threads.usable_cores()
    workroot = FLAGS.workroot or tempfile.mkdtemp(prefix="zoo-threads-")
    print(f"usable cores: {cores}", flush=True)
    table = {}
    for name in FLAGS.models:
        data, extra = path(name), DATA[name][1]
        if data is None:
            continue
        for label, env in settings(cores):
            rate, said = examples_per_sec(name, data, extra, os.path.join(workroot, f"{name}-{len(table)}"), env)
            table[name, label] = rate
            print(f"{name} [{label}]: {rate:.1f} examples/s {said}", flush=True)
    labels = [label for label, _ in settings(cores)]
    models = [m for m in FLAGS.models if (m, "tf-default") in table]
    print("\n| setting | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for label in labels:
        cells = [f"{table[m, label]:.1f} ({table[m, label] / table[m, 'tf-default']:.2f}x)" for m in models]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
