"""Every model's training rate against its peers, in one run: one table (issue 17).

    python benchmarks/peer_rates.py [--table_models=bert_classifier,vae,gan,translator,t5,lstm_lm]
                                    [--rounds=2] [--lm_minutes=3] [--t5_steps=10]

Each model's row comes from the benchmark that already compares it with its peers at the same
model sizes, run here as a child process, one after the other (nothing else should run):

- bert_classifier: `bert_sst2.py --parts=throughput` -- the zoo's `zoo train` (the README's
  command, the entry's defaults, preset small) against keras-hub `BertTextClassifier.fit` and
  Hugging Face `BertForSequenceClassification` in PyTorch, batch 32, sequence 64;
- vae, gan: `mnist_generative.py --parts=throughput` -- the zoo at the keras-io peers' exact
  sizes (`developer_data.PEER_SIZES`), batch 128, against the peers' `model.fit`;
- translator: `translator_eng_fra.py --parts=throughput` -- the zoo's trainer on the keras-io
  `lstm_seq2seq` peer's model (`PEER_SIZES`), batch 64, against the peer's `model.fit`;
- t5: `t5_throughput.py --parts=train` -- t5-small sizes, batch 32, against keras-hub
  `T5Seq2SeqLM.fit` and Hugging Face `T5ForConditionalGeneration` in PyTorch;
- lstm_lm: `lstm_lm_shakespeare.py` -- training characters/s and validation bits per character
  after the same wall time, against nanoGPT's CPU recipe and keras-io's character LSTM (each
  pinned to one core, two at a time; a different architecture on each side, so here the ratio
  is of characters learned per second, not of the same model's steps).

Each of those files documents its peers' recipes. The zoo runs its defaults: on a processor with
bfloat16 units `mixed_precision=auto` picks bfloat16 compute (float32 variables); the peers run
their recipes as published (float32).

Beside each zoo rate: the fraction of the machine's peak it reaches, from the FLOPs of one
example's forward and backward pass of the configuration measured (`flop_rate.py`'s count) and
the peak matrix-product rate of the zoo's precision measured at the start of this run.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks import flop_rate  # noqa: E402
from benchmarks.developer_data import PEER_SIZES, path  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("table_models", ["bert_classifier", "vae", "gan", "translator", "t5", "lstm_lm"], "Rows to measure.")
flags.DEFINE_integer("rounds", 2, "Interleaved rounds of the BERT and MNIST comparisons (their medians).")
flags.DEFINE_float("lm_minutes", 3.0, "Training wall time of the language models.")
flags.DEFINE_integer("t5_steps", 10, "Timed T5 training steps of each side.")
flags.DEFINE_string("table_out", "", "Also write the table's rows to this JSON file.")


def _last_json(stdout, key):
    """The last stdout line that is a JSON object holding `key` (the benchmarks end with one)."""
    for line in reversed(stdout.splitlines()):
        start = line.find("{")
        if start >= 0:
            try:
                value = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if key in value:
                return value
    raise ValueError(f"no JSON line with {key!r} in the output")


def _bert(out):
    r = _last_json(out, "zoo_examples_per_sec_median")
    return [("keras-hub BertTextClassifier.fit", r["zoo_examples_per_sec_median"],
             r["keras_hub_fit_examples_per_sec_median"], None),
            ("HF BertForSequenceClassification, PyTorch", r["zoo_examples_per_sec_median"],
             r.get("hf_pytorch_examples_per_sec_median"), None)]


def _mnist(name, result_file):
    def parse(out):
        with open(result_file) as f:
            r = json.load(f)["throughput"][name]
        peer = "keras-io vae.py fit" if name == "vae" else "keras-io dcgan_overriding_train_step.py fit"
        return [(peer, r["zoo_median"], r["peer_median"], None)]
    return parse


def _translator(out):
    r = _last_json(out, "throughput")["throughput"]
    return [("keras-io lstm_seq2seq (word level) fit", r["zoo Trainer (steps_per_execution=10)"],
             r["peer model.fit"], None)]


def _t5(out):
    r = _last_json(out, "train_examples_per_sec")["train_examples_per_sec"]
    return [("keras-hub T5Seq2SeqLM.fit", r["zoo"], r["keras_hub_fit"], None),
            ("HF T5ForConditionalGeneration, PyTorch", r["zoo"], r["hf_pytorch"], None)]


def _lstm_lm(out):
    r = _last_json(out, "results")["results"]
    zoo = r["zoo"]
    quality = lambda row: f"{row['bits_per_character']:.3f} bits/char"  # noqa: E731
    return [(r[name]["peer"], zoo["train_characters_per_second"], r[name]["train_characters_per_second"],
             (quality(zoo), quality(r[name]))) for name in ("nanogpt", "keras_io") if name in r]


def _specs(workroot):
    """model: (benchmark command, parser, unit, (preset, overrides) of the zoo configuration measured)."""
    py, bench = sys.executable, os.path.join(ROOT, "benchmarks")
    mnist_out = os.path.join(workroot, "mnist.json")
    mnist = [py, f"{bench}/mnist_generative.py", "--parts=throughput", f"--throughput_repeats={FLAGS.rounds}",
             f"--out={mnist_out}"]
    return {
        "bert_classifier": ([py, f"{bench}/bert_sst2.py", "--parts=throughput", f"--throughput_rounds={FLAGS.rounds}"],
                            _bert, "examples/s", ("small", [])),
        "vae": (mnist, _mnist("vae", mnist_out), "images/s", ("small", PEER_SIZES["vae"] + ["batch_size=128"])),
        "gan": (mnist, _mnist("gan", mnist_out), "images/s", ("small", PEER_SIZES["gan"] + ["batch_size=128"])),
        "translator": ([py, f"{bench}/translator_eng_fra.py", "--parts=throughput"], _translator, "pairs/s",
                       ("small", PEER_SIZES["translator"] + ["batch_size=64"])),
        "t5": ([py, f"{bench}/t5_throughput.py", "--parts=train", f"--steps={FLAGS.t5_steps}"], _t5, "pairs/s",
               ("small", ["batch_size=32"])),
        "lstm_lm": ([py, f"{bench}/lstm_lm_shakespeare.py", f"--minutes={FLAGS.lm_minutes:g}"], _lstm_lm,
                    "characters/s", ("small", [])),
    }


def main(argv):
    del argv
    import tensorflow as tf

    from trainers import precision

    policy, why = precision.choose("auto")
    zoo_peak = "bfloat16" if "bfloat16" in policy else "float32"
    peaks = {"float32": flop_rate.peak_gflops(tf.float32, 2048), "bfloat16": flop_rate.peak_gflops(tf.bfloat16, 2048)}
    print(f"mixed_precision=auto here: {policy} ({why}); peak 2048x2048 matmul: float32 {peaks['float32']:.0f}, "
          f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s", flush=True)
    workroot = tempfile.mkdtemp(prefix="zoo-peer-rates-")
    specs = _specs(workroot)
    rows, outputs = [], {}
    for name in FLAGS.table_models:
        command, parse, unit, (preset, overrides) = specs[name]
        data = path(name)
        if data is None:
            continue
        key = tuple(command)
        if key not in outputs:  # vae and gan share one run
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
            outputs[key] = proc.stdout
            if proc.returncode:  # its rows are left out; the others still run
                print(f"{name}: no row: {' '.join(command)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}",
                      flush=True)
                continue
            with open(os.path.join(workroot, f"{name}.out"), "w") as f:
                f.write(proc.stdout)
            print(f"{' '.join(command[1:])}: {time.perf_counter() - start:.0f} s (output kept in {workroot})",
                  flush=True)
        try:
            found = parse(outputs[key])
            flops = flop_rate.train_flops_per_example(name, data, preset=preset, overrides=overrides)
            if name == "lstm_lm":  # a window of `sequence_length` tokens per example: per character
                flops /= _characters_per_example(outputs[key])
        except (ValueError, KeyError, OSError) as e:  # one row's failure keeps the others
            print(f"{name}: no row ({type(e).__name__}: {e})", flush=True)
            continue
        for peer, zoo_rate, peer_rate, quality in found:
            if peer_rate is None:
                print(f"{name}: no {peer} row (that peer did not run; see its benchmark's output)", flush=True)
                continue
            achieved = flops * zoo_rate / 1e9
            rows.append({"model": name, "peer": peer, "unit": unit, "zoo": zoo_rate, "peer_rate": peer_rate,
                         "ratio": zoo_rate / peer_rate, "gflop_per_example": flops / 1e9, "gflops": achieved,
                         "of_peak": achieved / peaks[zoo_peak], "quality": quality,
                         "command": " ".join(["python", os.path.relpath(command[1], ROOT), *command[2:]])})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| model | peer | unit | zoo ({policy}) | peer (float32) | ratio | zoo GFLOP/s | of {zoo_peak} peak | "
          f"validation zoo / peer | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        quality = " / ".join(r["quality"]) if r["quality"] else "(speed run; see notes)"
        print(f"| {r['model']} | {r['peer']} | {r['unit']} | {r['zoo']:.1f} | {r['peer_rate']:.1f} | "
              f"**{r['ratio']:.2f}** | {r['gflops']:.1f} | {r['of_peak']:.1%} | {quality} | `{r['command']}` |")
    if FLAGS.table_out:
        with open(FLAGS.table_out, "w") as f:
            json.dump({"policy": policy, "peaks": peaks, "rows": rows}, f, indent=2)


def _characters_per_example(stdout):
    zoo = _last_json(stdout, "results")["results"]["zoo"]
    return zoo["train_characters_per_second"] / zoo["train_examples_per_second"]


if __name__ == "__main__":
    app.run(main)
