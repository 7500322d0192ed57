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

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.developer_data import DATA, path, timed_run  # noqa: E402

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
            rate, out = timed_run(name, data, extra, os.path.join(workroot, f"{name}-{len(table)}"), FLAGS.seconds, env)
            said = next((line for line in out.splitlines() if line.startswith("Threads: ")), "")
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
