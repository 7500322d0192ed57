"""The trainer against Keras `model.fit`, its input pipeline, and its memory over a long run.

    python benchmarks/trainer_step_rate.py [--steps=300] [--long_steps=2000]

1. Step rate: the zoo Trainer and `model.fit` on the same model (translator, preset small,
   on `builtin:dates`), same batches, same loss, batch 64. `fit` at its defaults and at the
   trainer's settings (steps_per_execution=10, jit_compile=True); the trainer with both on.
2. Input pipeline overhead: the trainer on the real `tf.data` pipeline (tokenizing each
   batch) against the same steps on batches cached in memory.
3. Memory: peak RSS (ru_maxrss) of one long run at step 200 and at `--long_steps`.
Each figure is steady state: the first 20 steps (tracing, compiling) are not timed.
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 300, "Timed steps per step-rate run.")
flags.DEFINE_integer("long_steps", 2000, "Steps of the memory run.")
flags.DEFINE_bool("memory_only", False, "Run only the memory part (the benchmark runs it in a fresh "
                  "process, so that peak RSS is this run's alone).")
flags.DEFINE_integer("repeats", 3, "Interleaved repeats of each step-rate run; the median is reported.")
WARMUP = 20
BATCH = 64


def _entry(preset):
    from zoo import registry, sources

    cls = registry.get("translator")
    entry = cls(cls.preset(preset), tempfile.mkdtemp(prefix="bench-steprate-"))
    source = sources.parse("builtin:dates")
    entry.prepare(source)
    return entry, source


def trainer_rate(entry, source, **overrides):
    """Examples/s of the trainer between step WARMUP and WARMUP + steps."""
    from trainers import Trainer, TrainerConfig

    marks = {}
    config = TrainerConfig(steps=WARMUP + FLAGS.steps, batch_size=BATCH, log_every=WARMUP if WARMUP % 10 == 0 else 10,
                           checkpoint_every=10**9, clipnorm=0.0, **overrides)
    trainer = Trainer(entry, config, tempfile.mkdtemp(prefix="bench-run-"))
    log_row = trainer._log_row

    def timed(kind, row, writer):
        marks[row["step"]] = time.perf_counter()
        log_row(kind, row, writer)

    trainer._log_row = timed
    trainer.train(source, evaluate=False)
    return FLAGS.steps * BATCH / (marks[WARMUP + FLAGS.steps] - marks[WARMUP])


def fit_rate(entry, source, **compile_kwargs):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = entry.build_model()
    ds = entry.dataset(source, "train", BATCH, training=True).map(
        lambda b: ({"source": b["source"], "target_in": b["target_in"]}, b["labels"],
                   tf.cast(b["labels"] != 0, tf.float32)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_kwargs)

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == WARMUP:
                self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model.fit(ds, steps_per_epoch=WARMUP + FLAGS.steps, epochs=1, callbacks=[timer], verbose=0)
    return FLAGS.steps * BATCH / timer.seconds


class _Cached:
    """The entry with its training batches materialized in memory first."""

    def __init__(self, entry, count):
        self.entry, self.count = entry, count

    def __getattr__(self, name):
        return getattr(self.entry, name)

    def dataset(self, source, split, batch_size, training, seed=0):
        ds = self.entry.dataset(source, split, batch_size, training, seed)
        if not training:
            return ds
        ds = ds.take(self.count).cache()
        for _ in ds:  # fill the cache before timing
            pass
        return ds.repeat()


def main(argv):
    del argv
    if FLAGS.memory_only:
        return memory()
    step_rate()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--memory_only",
                    f"--long_steps={FLAGS.long_steps}"], check=True)


def step_rate():
    entry, source = _entry("small")
    runs = {
        "fit (defaults: spe=1, no XLA on CPU)": lambda: fit_rate(entry, source),
        "fit (spe=10, XLA)": lambda: fit_rate(entry, source, steps_per_execution=10, jit_compile=True),
        "zoo Trainer (spe=1, no XLA)": lambda: trainer_rate(entry, source, steps_per_execution=1),
        "zoo Trainer (spe=10, XLA)": lambda: trainer_rate(entry, source, steps_per_execution=10, jit_compile=True),
        "zoo Trainer (spe=10, XLA), cached batches": lambda: trainer_rate(
            _Cached(entry, WARMUP + FLAGS.steps), source, steps_per_execution=10, jit_compile=True),
    }
    # Interleaved, so that a slow spell of the machine does not fall on one contender only.
    samples = {name: [] for name in runs}
    for _ in range(FLAGS.repeats):
        for name, run in runs.items():
            samples[name].append(run())
    rows = {name: float(np.median(values)) for name, values in samples.items()}
    print(f"\n== Step rate, translator small on builtin:dates, batch {BATCH}, {FLAGS.steps} timed steps, "
          f"median of {FLAGS.repeats} interleaved runs (examples/s)")
    for reference in ("fit (spe=10, XLA)", "fit (defaults: spe=1, no XLA on CPU)"):
        print(f"-- ratios to {reference}")
        for name, value in rows.items():
            print(f"{name:45s} {value:9.1f}   ratio {value / rows[reference]:.2f}   runs {[round(v) for v in samples[name]]}")
    real, cached = rows["zoo Trainer (spe=10, XLA)"], rows["zoo Trainer (spe=10, XLA), cached batches"]
    print(f"\n== Input pipeline: real tf.data pipeline is {100 * (1 - real / cached):.1f}% slower than cached batches")



def memory():
    from trainers import Trainer, TrainerConfig

    tiny, tiny_source = _entry("tiny")
    peaks = {}
    trainer = Trainer(tiny, TrainerConfig(steps=FLAGS.long_steps, batch_size=BATCH, log_every=100,
                                          checkpoint_every=500), tempfile.mkdtemp(prefix="bench-mem-"))
    log_row = trainer._log_row

    def record(kind, row, writer):
        peaks[row["step"]] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log_row(kind, row, writer)

    trainer._log_row = record
    trainer.train(tiny_source, evaluate=False)
    print(f"\n== Memory (translator tiny, {FLAGS.long_steps} steps, checkpoints every 500): peak RSS MiB")
    print(f"after 200 steps {peaks[200]:.0f}, after {FLAGS.long_steps} steps {peaks[FLAGS.long_steps]:.0f}: "
          f"growth {100 * (peaks[FLAGS.long_steps] / peaks[200] - 1):.1f}%")


if __name__ == "__main__":
    app.run(main)
