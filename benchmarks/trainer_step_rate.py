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
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 300, "Timed steps per step-rate run.")
flags.DEFINE_integer("long_steps", 2000, "Steps of the memory run.")
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
    entry, source = _entry("small")
    rows = {
        "fit (defaults: spe=1, no XLA on CPU)": fit_rate(entry, source),
        "fit (spe=10, XLA)": fit_rate(entry, source, steps_per_execution=10, jit_compile=True),
        "zoo Trainer (spe=1, no XLA)": trainer_rate(entry, source, steps_per_execution=1),
        "zoo Trainer (spe=10, XLA)": trainer_rate(entry, source, steps_per_execution=10, jit_compile=True),
    }
    print(f"\n== Step rate, translator small on builtin:dates, batch {BATCH}, {FLAGS.steps} timed steps (examples/s)")
    base = rows["fit (spe=10, XLA)"]
    for name, value in rows.items():
        print(f"{name:40s} {value:9.1f}   ratio to fit(spe=10, XLA) {value / base:.2f}")

    real = trainer_rate(entry, source, steps_per_execution=10, jit_compile=True)
    cached = trainer_rate(_Cached(entry, WARMUP + FLAGS.steps), source, steps_per_execution=10, jit_compile=True)
    print("\n== Input pipeline (trainer, spe=10, XLA), examples/s")
    print(f"{'real tf.data pipeline':40s} {real:9.1f}")
    print(f"{'cached in-memory batches':40s} {cached:9.1f}   real is {100 * (1 - real / cached):.1f}% slower")

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
