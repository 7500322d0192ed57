"""Training with the workdir on TensorFlow's in-memory `ram://` filesystem against the local disk.

    python benchmarks/storage.py [--steps=300] [--repeats=3]

Every workdir file goes through `tf.io.gfile` (`zoo/fileio.py`); this measures what that costs
where it matters, in training: the translator (preset small, `builtin:dates`, batch 64, the
entry's defaults) for `--steps` steps with a checkpoint, a log row and a `metrics.jsonl` line
every 50 steps, the workdir on the local disk or on `ram://` (what `gs://` goes through, minus
the network). Wall-clock examples/s of `Trainer.train` (checkpoints and logs included, the
vocabulary learned beforehand), interleaved repeats, the median reported.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 300, "Training steps of each run.")
flags.DEFINE_integer("repeats", 3, "Interleaved repeats.")
BATCH = 64


def _run(workdir):
    from trainers import Trainer, TrainerConfig
    from zoo import registry, sources

    cls = registry.get("translator")
    entry = cls(cls.preset("small"), workdir)
    source = sources.parse("builtin:dates")
    entry.prepare(source)
    config = TrainerConfig(**{**cls.trainer_defaults, "steps": FLAGS.steps, "batch_size": BATCH, "log_every": 50,
                              "checkpoint_every": 50})
    trainer = Trainer(entry, config, workdir, source=source)
    start = time.perf_counter()
    trainer.train(source, evaluate=False)
    return FLAGS.steps * BATCH / (time.perf_counter() - start)


def main(argv):
    del argv
    from zoo import fileio

    rates = {"local disk": [], "ram://": []}
    for _ in range(FLAGS.repeats):
        local = tempfile.mkdtemp(prefix="bench-storage-")
        rates["local disk"].append(_run(local))
        shutil.rmtree(local, ignore_errors=True)
        ram = f"ram://bench-storage-{uuid.uuid4().hex[:8]}"
        rates["ram://"].append(_run(ram))
        fileio.rmtree(ram)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n== Training examples/s (translator small, batch {BATCH}, {FLAGS.steps} steps, a checkpoint every 50; "
          f"median of {FLAGS.repeats})")
    print("  ".join(f"{k} {v:.1f}" for k, v in medians.items())
          + f"  ratio ram:// / local {medians['ram://'] / medians['local disk']:.3f}")


if __name__ == "__main__":
    app.run(main)
