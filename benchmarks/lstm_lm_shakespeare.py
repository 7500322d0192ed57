"""Tiny Shakespeare: the zoo's `lstm_lm` against nanoGPT's CPU recipe and keras-io's character
LSTM, same split, same wall time; then the zoo model's sampling rate served and on TFLite.

    python benchmarks/lstm_lm_shakespeare.py [--minutes=10] [--peers=nanogpt,keras_io] [--keep=DIR]

`../shared/data/text/tinyshakespeare_train.txt` (the first 90% of char-rnn's Tiny
Shakespeare) is split as `zoo train --model=lstm_lm` splits a file: its last 10% of
characters is the validation text. The zoo trains with the README's command and the entry's
defaults for `--minutes` of wall time (`max_seconds`); each peer trains on the same split for
the same wall time (`benchmarks/nanogpt_peer.py`, `benchmarks/keras_io_char_lstm_peer.py`,
each from its public recipe). Two trainings run at once, each pinned to its own core
(`taskset`): the zoo beside nanoGPT, then keras-io beside the zoo's export and sampling
measurements. Every model is scored in bits per character on the whole validation text, and
writes a 500-character sample at temperature 0.8.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.developer_data import train_rate  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "text", "tinyshakespeare_train.txt")
flags.DEFINE_string("data", DEFAULT_DATA, "A UTF-8 text file.")
flags.DEFINE_float("minutes", 10.0, "Training wall time of each model.")
flags.DEFINE_list("peers", ["nanogpt", "keras_io"], "Peers to train beside the zoo: nanogpt, keras_io.")
flags.DEFINE_string("keep", "", "Keep the workdirs and logs under this folder (default: a temporary one, removed).")
flags.DEFINE_integer("seed", 0, "Every model's seed.")
flags.DEFINE_multi_string("zoo_config", [], "An extra lstm_lm --config KEY=VALUE (ablations only; repeat the flag).")
flags.DEFINE_string("zoo_workdir", "", "Score this trained workdir instead of training the zoo model.")
flags.DEFINE_integer("sample_chars", 500, "Characters of each model's sample.")
flags.DEFINE_float("temperature", 0.8, "Sampling temperature of the samples.")

PEERS = {"nanogpt": "benchmarks/nanogpt_peer.py", "keras_io": "benchmarks/keras_io_char_lstm_peer.py"}
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _start(command, core, log):
    return subprocess.Popen(["taskset", "-c", str(core % (os.cpu_count() or 1))] + command,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)


def _wait(process, name, log):
    if process.wait() != 0:
        raise SystemExit(f"{name} failed; see {log}")


def _zoo_command(workdir):
    return [sys.executable, "-m", "zoo.cli", "train", "--model=lstm_lm", f"--workdir={workdir}", f"--data={FLAGS.data}",
            f"--config=max_seconds={FLAGS.minutes * 60}", "--config=log_every=100",
            "--config=checkpoint_every=100000", f"--config=seed={FLAGS.seed}",
            *[f"--config={c}" for c in FLAGS.zoo_config]]


def _peer_command(name, out):
    return [sys.executable, PEERS[name], f"--data={FLAGS.data}", f"--minutes={FLAGS.minutes}", f"--out={out}",
            f"--seed={FLAGS.seed}", f"--sample_chars={FLAGS.sample_chars}", f"--temperature={FLAGS.temperature}"]


def _zoo_row(workdir):
    """Bits per character on the whole validation text, training rate and a sample."""
    import dataclasses

    import numpy as np

    from zoo import commands

    entry, trainer, source = commands.restore(workdir)
    c = entry.config
    full = dataclasses.replace(c, eval_characters=0)
    entry.config = full
    scored = entry.evaluate(trainer.model, source, "validation")
    characters_per_token = scored["characters"] / scored["tokens"]
    examples = train_rate(workdir)
    rate = examples * c.sequence_length * characters_per_token
    entry.config = dataclasses.replace(c, max_length=FLAGS.sample_chars)
    entry._generate_fn.cache_clear()  # noqa: SLF001  (a buffer of the sample's length)
    sample = entry.generate(trainer.model, [""], temperature=FLAGS.temperature, seed=FLAGS.seed)[0]
    return {"peer": "zoo lstm_lm", "bits_per_character": scored["bits_per_character"],
            "train_steps": int(trainer.step.numpy()), "train_characters_per_second": rate,
            "train_examples_per_second": examples,
            "params": sum(int(np.prod(w.shape)) for w in trainer.model.trainable_weights), "sample": sample,
            "settings": {**dataclasses.asdict(c), **{k: v for k, v in json.load(open(os.path.join(
                workdir, "zoo.json")))["trainer_config"].items() if k in ("optimizer", "learning_rate", "lr_schedule",
                                                                          "batch_size", "warmup_fraction", "clipnorm")}}}


def _sampling_rates(workdir, repeats=5):
    """Characters per second of a batch-1 generation of `max_length` tokens at temperature 0.8:
    the SavedModel's `generate` (TensorFlow, in this process) and TFLite's `sample_tokens`."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the SavedModel's tokenizer ops)

    from export import tflite
    from zoo import commands

    subprocess.run([sys.executable, "-m", "zoo.cli", "export", f"--workdir={workdir}", "--formats=saved_model,tflite",
                    "--quantize=none,dynamic"], check=True, env=ENV, cwd=ROOT, capture_output=True)
    manifest = json.load(open(os.path.join(workdir, "export", "manifest.json")))
    entry, trainer, _ = commands.restore(workdir)
    c = entry.config
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    generate = tf.saved_model.load(saved["path"]).signatures["generate"]
    settings = {"max_length": tf.constant(c.max_length), "temperature": tf.constant(FLAGS.temperature),
                "top_k": tf.constant(0), "top_p": tf.constant(1.0)}
    rates = {}

    def timed(run):
        out = []
        for seed in range(repeats + 1):
            start = time.perf_counter()
            chars = run(seed)
            out.append(chars / (time.perf_counter() - start))
        return statistics.median(out[1:])  # the first call builds

    rates["saved_model"] = timed(lambda seed: len(generate(prompts=tf.constant(["ROMEO:"]), seed=tf.constant(seed),
                                                           **settings)["continuations"].numpy()[0].decode()))
    servable = entry.serving_functions(trainer.model)["sample_tokens"]
    for artifact in manifest["artifacts"]:
        if artifact.get("signature") != "sample_tokens":
            continue
        runner = tflite.interpreter(artifact["path"]).get_signature_runner("sample_tokens")
        encoded = servable.encode(["ROMEO:"])
        encoded["temperature"] = np.array([FLAGS.temperature], "float32")

        def run(seed, runner=runner, encoded=encoded):
            tokens = runner(**{**encoded, "seed": np.array([seed], "int32")})["tokens"]
            return len(servable.decode({"tokens": tokens})[0])

        rates[f"tflite_{artifact['quantization']}"] = timed(run)
    return rates, manifest


def main(argv):
    if not os.path.exists(FLAGS.data):
        raise SystemExit(f"{FLAGS.data}: not found (the shared Tiny Shakespeare text); nothing to measure.")
    root = FLAGS.keep or tempfile.mkdtemp(prefix="bench-lm-")
    os.makedirs(root, exist_ok=True)
    results, rates = {}, {}
    try:
        workdir = FLAGS.zoo_workdir or os.path.join(root, "zoo")
        peers = list(FLAGS.peers)
        running = []
        if not FLAGS.zoo_workdir:
            running.append(("zoo", _start(_zoo_command(workdir), 0, f"{root}/zoo.log"), f"{root}/zoo.log"))
        if peers:
            name = peers.pop(0)
            log = f"{root}/{name}.log"
            running.append((name, _start(_peer_command(name, f"{root}/{name}.json"), 1, log), log))
        for name, process, log in running:
            _wait(process, name, log)
        later = [(name, _start(_peer_command(name, f"{root}/{name}.json"), core, f"{root}/{name}.log"),
                  f"{root}/{name}.log") for core, name in enumerate(peers)]
        results["zoo"] = _zoo_row(workdir)
        rates, manifest = _sampling_rates(workdir)
        for name, process, log in later:
            _wait(process, name, log)
        for name in FLAGS.peers:
            results[name] = json.load(open(f"{root}/{name}.json"))
    except BaseException:
        print(f"Logs and workdirs kept in {root}", file=sys.stderr)
        raise
    else:
        if not FLAGS.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n== Tiny Shakespeare (last 10% held out), {FLAGS.minutes:g} min of training each, one core each, "
          f"seed {FLAGS.seed}")
    print(f"{'model':28s} {'val bits/char':>13s} {'train chars/s':>13s} {'steps':>7s} {'params':>9s}")
    for r in results.values():
        print(f"{r['peer']:28s} {r['bits_per_character']:13.4f} {r['train_characters_per_second']:13.0f} "
              f"{r['train_steps']:7d} {r['params']:9d}")
    zoo = results["zoo"]
    for name in FLAGS.peers:
        r = results[name]
        print(f"zoo vs {name}: bits/char {zoo['bits_per_character'] - r['bits_per_character']:+.4f}, "
              f"training chars/s ratio {zoo['train_characters_per_second'] / r['train_characters_per_second']:.2f}")
    print("Sampling, batch 1, characters/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    for name, r in results.items():
        print(f"\n-- {r['peer']} sample (temperature {FLAGS.temperature}):\n{r['sample']}")
    print(json.dumps({"results": results, "sampling_characters_per_second": rates}))


if __name__ == "__main__":
    app.run(main)
