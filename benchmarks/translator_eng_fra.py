"""English->French: the zoo translator against the keras-io lstm_seq2seq peer, same run.

    python benchmarks/translator_eng_fra.py [--minutes=5] [--throughput_steps=150]

Both train on the same 90% of `../shared/data/translation/eng_fra.tsv` (the zoo's fixed-seed
file split) for the same wall time, and are scored with sacrebleu BLEU and chrF on the other
10%. Then training throughput: the zoo trainer and the peer's `model.fit` on the same model
(embedding 256, one LSTM layer of 256 each side, no attention, the same vocabulary sizes,
batch 64, sequences of 24), after a warm-up. Prints both side by side with their ratio.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "translation", "eng_fra.tsv")
flags.DEFINE_string("data", DEFAULT_DATA, "TSV of english<TAB>french pairs.")
flags.DEFINE_float("minutes", 5.0, "Training wall time of each model.")
flags.DEFINE_integer("throughput_steps", 150, "Timed steps of each trainer after warm-up (a multiple of 10).")
flags.DEFINE_string("preset", "small", "Zoo translator preset for the quality comparison.")
flags.DEFINE_list("parts", ["quality", "throughput"], "Which comparisons to run.")


def _pairs(split):
    from zoo import sources

    rows = sources.read_tsv(FLAGS.data, min_columns=2)
    return [(r[0], r[1]) for r in sources.split_rows(rows, split)]


def quality():
    import sacrebleu
    from lstm_seq2seq_peer import Seq2SeqPeer
    from zoo import commands

    train, test = _pairs("train"), _pairs("validation")
    src, refs = [p[0] for p in test], [p[1] for p in test]
    workdir = tempfile.mkdtemp(prefix="bench-zoo-")
    try:
        start = time.perf_counter()
        # The README's command with the entry's defaults (length, schedule, label smoothing,
        # per-epoch evaluation, beam settings chosen on the validation split) and a time budget.
        commands.train("translator", workdir, data=FLAGS.data, preset=FLAGS.preset,
                       overrides=[f"max_seconds={FLAGS.minutes * 60}", "log_every=500", "checkpoint_every=100000"])
        zoo_seconds = time.perf_counter() - start
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            curve = [json.loads(line) for line in f]
        entry, trainer, _ = commands.restore(workdir)
        zoo_steps = int(trainer.step.numpy())
        zoo_hyps = entry.translate(trainer.model, src)
        zoo_greedy = entry.translate(trainer.model, src, method="greedy")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peer = Seq2SeqPeer([p[0] for p in train], [p[1] for p in train])
    peer_seconds = peer.fit([p[0] for p in train], [p[1] for p in train], seconds=FLAGS.minutes * 60)
    peer_steps = int(peer.model.optimizer.iterations.numpy())
    peer_hyps = peer.translate(src)

    def scores(hyps):
        return {"bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
                "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)}

    rows = {
        f"zoo translator ({FLAGS.preset}, beam {entry.beam_size}, lp {entry.length_penalty:g})": {
            **scores(zoo_hyps), "train_s": round(zoo_seconds), "steps": zoo_steps},
        f"zoo translator ({FLAGS.preset}, greedy)": {**scores(zoo_greedy), "train_s": round(zoo_seconds), "steps": zoo_steps},
        "peer lstm_seq2seq (word, greedy)": {**scores(peer_hyps), "train_s": round(peer_seconds), "steps": peer_steps},
    }
    print(f"\n== eng_fra quality: {len(train)} train / {len(test)} test pairs, "
          f"{FLAGS.minutes:g} min of training each")
    print(f"{'model':40s} {'BLEU':>7s} {'chrF':>7s} {'steps':>7s}")
    for name, r in rows.items():
        print(f"{name:40s} {r['bleu']:7.2f} {r['chrf']:7.2f} {r['steps']:7d}")
    zoo_chrf = next(iter(rows.values()))["chrf"]
    for row in curve:
        if row["kind"] == "validation":
            print(f"  zoo epoch {row['epoch']:.2f} step {row['step']}: chrF {row['chrf']:.2f} (validation, "
                  f"{row['examples']} pairs)")
    print(f"chrF ratio zoo/peer: {zoo_chrf / max(rows['peer lstm_seq2seq (word, greedy)']['chrf'], 1e-9):.2f}")
    for i in range(5):
        print(f"  {src[i]!r}\n    ref  {refs[i]!r}\n    zoo  {zoo_hyps[i]!r}\n    peer {peer_hyps[i]!r}")
    return rows


WARMUP = 10


class _SteadyTimer:
    """Times `model.fit` from the end of batch WARMUP to the end of the last batch."""

    def __new__(cls, warmup):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == warmup - 1:
                    self.start = time.perf_counter()
                self.seconds = time.perf_counter() - getattr(self, "start", time.perf_counter())

        return Timer()


def throughput():
    import tensorflow as tf
    from lstm_seq2seq_peer import Seq2SeqPeer
    from benchmarks.developer_data import PEER_SIZES
    from trainers import Trainer
    from zoo import commands, registry, sources

    train = _pairs("train")
    steps, batch = FLAGS.throughput_steps, 64
    cls = registry.get("translator")
    # The peer's model sizes; the entry's own trainer defaults (optimizer, schedule, clipping).
    config, defaults = commands.initial_configs(cls, "small", PEER_SIZES["translator"])
    workdir = tempfile.mkdtemp(prefix="bench-tp-")
    try:
        entry = cls(config, workdir)
        entry.prepare(sources.parse(FLAGS.data))
        vocab = (entry.build_model().source_vocab_size, entry.build_model().target_vocab_size)
        results = {}
        for spe in (1, 10):
            # Windows of WARMUP steps: the first holds tracing, the rest are the steady state.
            tc = dataclasses.replace(defaults, steps=WARMUP + steps, batch_size=batch, log_every=WARMUP,
                                     checkpoint_every=10**9, steps_per_execution=spe)
            run_dir = os.path.join(workdir, f"spe{spe}")
            Trainer(entry, tc, run_dir).train(sources.parse(FLAGS.data), evaluate=False)
            rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))][1:]
            seconds = sum(r["step_time"] * WARMUP for r in rows)
            results[f"zoo Trainer (steps_per_execution={spe})"] = len(rows) * WARMUP * batch / seconds
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peer = Seq2SeqPeer([p[0] for p in train], [p[1] for p in train], vocab_size=max(vocab))
    timer = _SteadyTimer(WARMUP)
    peer.fit([p[0] for p in train], [p[1] for p in train], steps=WARMUP + steps, callbacks=[timer])
    results["peer model.fit"] = steps * batch / timer.seconds
    print(f"\n== Training throughput, same model (emb 256, LSTM 256, vocab {vocab}), batch {batch}, "
          f"{steps} steps, examples/s")
    for name, value in results.items():
        print(f"{name:40s} {value:9.1f}   ratio to peer {value / results['peer model.fit']:.2f}")
    return results


def main(argv):
    del argv
    if not os.path.exists(FLAGS.data):
        print(f"SKIP: {FLAGS.data} not found (the shared eng_fra data is not beside this checkout).")
        return 0
    out = {}
    if "quality" in FLAGS.parts:
        out["quality"] = quality()
    if "throughput" in FLAGS.parts:
        out["throughput"] = throughput()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    app.run(main)
