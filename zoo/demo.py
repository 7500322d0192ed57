"""The demo: train the translator on generated dates, export it, translate with TFLite.

    python -m zoo.demo [--workdir=workdirs/dates-demo] [--steps=1500]

Trains `translator` (preset `small`) on `builtin:dates`, exports a SavedModel and TFLite
models (each checked against Keras on 100 held-out inputs), then runs the TFLite beam-search
model on the 1,000 generated test dates it never saw and prints the exact-match accuracy.
Running it again on the same workdir resumes (or reuses) the training there.
"""

import json
import os
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "workdirs/dates-demo", "Where the demo's model and exports go.")
flags.DEFINE_integer("steps", 1000, "Training steps (batch 64).")
flags.DEFINE_string("signature", "beam_search_tokens", "TFLite model to translate with.")

MIN_ACCURACY = 0.95  # exact matches on the test dates that count as a working demo

EXAMPLES = [
    "3rd of March 2021", "march 3, 21", "03/03/2021", "Tuesday, July 4, 1995",
    "the 25th of december, 1999", "1 JANUARY 2000", "Feb. 29, 2024", "9.11.87",
]


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from export import tflite
    from zoo import commands
    from zoo.datasets import dates

    start = time.time()
    print(f"== Training translator (preset small) on builtin:dates into {FLAGS.workdir}", flush=True)
    commands.train("translator", FLAGS.workdir, data="builtin:dates", preset="small",
                   steps=FLAGS.steps, batch_size=64, overrides=["log_every=250", "checkpoint_every=500", "eval_examples=500"])
    print("== Exporting (SavedModel + TFLite), each checked against Keras on 100 held-out dates", flush=True)
    manifest = commands.export(FLAGS.workdir)
    entry, trainer, _ = commands.restore(FLAGS.workdir)
    servable = entry.serving_functions(trainer.model)[FLAGS.signature]
    path = next(a["path"] for a in manifest["artifacts"] if a.get("signature") == FLAGS.signature)

    def translate(texts):
        return servable.decode(tflite.run_rows(path, FLAGS.signature, servable.encode(texts))[0])

    print(f"\n== Translations by {path}")
    for text, out in zip(EXAMPLES, translate(EXAMPLES)):
        print(f"  {text:32s} -> {out}")
    test = dates.split("test")
    hyps = translate([p[0] for p in test])
    accuracy = sum(h == p[1] for h, p in zip(hyps, test)) / len(test)
    metrics = {"tflite_exact_match_test": accuracy, "test_examples": len(test),
               "minutes": round((time.time() - start) / 60, 2)}
    print("\n== Artifacts")
    for a in manifest["artifacts"]:
        ops = "builtin ops only" if a.get("builtin_ops_only") else ", ".join(a.get("signatures", []))
        print(f"  {a['format']:12s} {a['path']}  ({a['size_bytes']:,} bytes; {ops})")
    print(f"  manifest     {os.path.join(FLAGS.workdir, 'export', 'manifest.json')}")
    print("\n== Metrics")
    print(json.dumps(metrics))
    message = failure(accuracy, len(test))
    if message:
        print(f"\n{message}", file=sys.stderr)
        return 1
    return 0


def failure(accuracy, count):
    """Why the demo failed, in a sentence (None when the TFLite model's accuracy is as expected)."""
    if accuracy >= MIN_ACCURACY:
        return None
    return (f"Demo failed: the TFLite model translated {accuracy:.1%} of the {count:,} test dates exactly, below "
            f"the {MIN_ACCURACY:.0%} a trained translator reaches; training may have been cut short "
            f"(--steps={FLAGS['steps'].value}) or the workdir {FLAGS['workdir'].value} holds another run (delete it and run again).")


def run():
    from zoo.cli import quiet_native_logs

    quiet_native_logs()
    try:
        return app.run(main)
    except Exception as e:  # noqa: BLE001  (one clear line; the traceback with TF_CPP_MIN_LOG_LEVEL=0)
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1"):
            raise
        print(f"Demo failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
