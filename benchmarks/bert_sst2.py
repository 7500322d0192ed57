"""SST-2: the zoo's BERT classifier against keras-hub `BertTextClassifier.fit` (and HF PyTorch).

    python benchmarks/bert_sst2.py [--minutes=4] [--mlm_minutes=4] [--parts=scratch,mlm,throughput]
                                   [--seeds=0,1,2]

Reads `../shared/data/classification/sst2_train.tsv` (training) and `sst2_dev.tsv` (accuracy);
skips with a message when they are absent. Preset `small` (4 layers, 256 hidden, 4 heads,
intermediate 1024, sequence 64) for every model; every peer trains the zoo's architecture (also
when `--zoo_config` changes its sizes) and gets the zoo's vocabulary (learned from the training
text, 8,000 WordPiece tokens), so the vocabulary size is the same.

- `scratch`: each trained from scratch for the same wall time; dev accuracy side by side, per
  seed (`--seeds`) and their means.
- `mlm`: each first pretrains its backbone with masked-LM on the SST-2 training text (zoo:
  `bert_mlm` then `bert_classifier --init_from`; peer: keras-hub `BertMaskedLM.fit`, then
  `BertTextClassifier.fit` on that backbone), same wall time for each stage.
- `throughput`: training examples/s on the same config (batch 32, sequence 64) for the zoo
  trainer, keras-hub `fit` and HF `BertForSequenceClassification` in PyTorch (needs
  `pip install -r benchmarks/requirements-peers.txt`), steady state after warm-up.

Peers: `benchmarks/bert_peers.py` (their recipes and settings are documented there).
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

from benchmarks.developer_data import train_rate  # noqa: E402

FLAGS = flags.FLAGS
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "classification")
flags.DEFINE_string("data_dir", DATA, "Folder with sst2_train.tsv and sst2_dev.tsv.")
flags.DEFINE_float("minutes", 4.0, "Training wall time of each classifier.")
flags.DEFINE_float("mlm_minutes", 4.0, "Pretraining wall time of each masked LM.")
flags.DEFINE_integer("throughput_steps", 60, "Timed steps of each trainer after warm-up (a multiple of 10).")
flags.DEFINE_integer("throughput_rounds", 3, "Interleaved rounds of the throughput comparison (medians).")
flags.DEFINE_list("peer_learning_rates", ["5e-5", "5e-4"],
                  "keras-hub peer learning rates tried (5e-5: its recipe, a fine-tuning rate; 5e-4: "
                  "the zoo's, better from scratch); the best dev accuracy is the peer's figure.")
flags.DEFINE_string("peer_finetune_learning_rate", "5e-4", "keras-hub peer's fine-tuning rate after MLM.")
flags.DEFINE_list("parts", ["scratch", "mlm", "throughput"], "Which comparisons to run.")
flags.DEFINE_list("zoo_config", [], "--config overrides of the zoo classifier (default: none, the entry's "
                  "defaults, as `zoo train` runs them; the time budget is --config max_seconds).")
flags.DEFINE_bool("peers", True, "Also train the keras-hub peers (--nopeers: only the zoo's figures, e.g. "
                  "the MLM-then-fine-tune figure against the zoo's own from-scratch one).")
flags.DEFINE_list("zoo_mlm_config", [], "--config overrides of the zoo masked LM (default: none).")
flags.DEFINE_list("seeds", ["0"], "scratch: one zoo run and one peer run per seed (the zoo's `seed`, the "
                  "peer's `keras.utils.set_random_seed`); with several, the means are printed too. One pass "
                  "over SST-2 moves 2 points between seeds, so a difference under that needs three or more.")


def _files():
    train, dev = (os.path.join(FLAGS.data_dir, f) for f in ("sst2_train.tsv", "sst2_dev.tsv"))
    if not (os.path.exists(train) and os.path.exists(dev)):
        print(f"skipped: {train} or {dev} not found (the shared data folder is absent)")
        sys.exit(0)
    return train, dev


def _read(path):
    from bert_peers import _read_tsv

    return _read_tsv(path)


def _zoo_classifier(workdir, train, dev, seconds, steps=None, extra=()):
    """The README's command: the entry's defaults (length, batch, optimizer), a time budget."""
    from zoo import commands

    overrides = [f"validation_data={dev}", f"max_seconds={seconds}", "log_every=100",
                 "checkpoint_every=100000", *FLAGS.zoo_config, *extra]
    start = time.perf_counter()
    commands.train("bert_classifier", workdir, data=train, preset="small", steps=steps, overrides=overrides,
                   evaluate=steps is None)
    seconds = time.perf_counter() - start
    metrics = commands.evaluate(workdir)
    return metrics, seconds


def _vocabulary(workdir):
    with open(os.path.join(workdir, "assets", "vocab.txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def scratch(train, dev, root):
    results = [_scratch_seed(train, dev, os.path.join(root, f"seed{seed}"), int(seed))
               for seed in FLAGS.seeds]
    if len(results) == 1:
        return results[0]
    means = {f"mean_{k}": sum(r[k] for r in results) / len(results)
             for k in results[0] if k.endswith("dev_accuracy")}
    if "mean_peer_best_dev_accuracy" in means:
        means["mean_difference_points"] = 100 * (means["mean_zoo_dev_accuracy"]
                                                 - means["mean_peer_best_dev_accuracy"])
    return {**means, "seeds": {seed: r for seed, r in zip(FLAGS.seeds, results)}}


def _scratch_seed(train, dev, root, seed):
    import bert_peers

    seconds = FLAGS.minutes * 60
    workdir = os.path.join(root, "zoo-scratch")
    zoo, zoo_seconds = _zoo_classifier(workdir, train, dev, seconds, extra=[f"seed={seed}"])
    vocabulary = _vocabulary(workdir)
    model_config = _model_config(workdir)
    result = {"zoo_dev_accuracy": zoo["accuracy"], "zoo_macro_f1": zoo["macro_f1"],
              "zoo_seconds": zoo_seconds, "zoo_steps": _steps(workdir), "vocabulary_size": len(vocabulary),
              "architecture": _architecture(model_config), "zoo_ensemble_size": model_config.ensemble_size}
    print(f"[bert_sst2] scratch, seed {seed}, zoo: " + json.dumps(result), flush=True)
    if not FLAGS.peers:
        return result
    train_texts, train_labels = _read(train)
    dev_texts, dev_labels = _read(dev)
    peers = {lr: bert_peers.keras_hub_fit(train_texts, train_labels, dev_texts, dev_labels, vocabulary,
                                          max_seconds=seconds, learning_rate=float(lr), seed=seed,
                                          **result["architecture"])
             for lr in FLAGS.peer_learning_rates}
    return {**result,
            **{f"peer_lr{lr}_dev_accuracy": p["dev_accuracy"] for lr, p in peers.items()},
            **{f"peer_lr{lr}_steps": p["steps"] for lr, p in peers.items()},
            "peer_best_dev_accuracy": max(p["dev_accuracy"] for p in peers.values())}


def _model_config(workdir):
    """The zoo model's config in `workdir` (preset small, or what `--zoo_config` set)."""
    from zoo import workdir as workdirs

    return workdirs.read(workdir)[2]


def _architecture(model_config):
    """The backbone sizes of a zoo model config: every peer trains the same architecture (one
    classifier of it, also where the zoo trained an ensemble, `ensemble_size`)."""
    return {k: getattr(model_config, k)
            for k in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")}


def _steps(workdir):
    import tensorflow as tf

    return int(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).rsplit("-", 1)[1])


def mlm(train, dev, root):
    import bert_peers
    from zoo import commands

    seconds, mlm_seconds = FLAGS.minutes * 60, FLAGS.mlm_minutes * 60
    mlm_dir = os.path.join(root, "zoo-mlm")
    commands.train("bert_mlm", mlm_dir, data=train, preset="small",
                   overrides=[f"validation_data={dev}", f"max_seconds={mlm_seconds}", "log_every=50",
                              "checkpoint_every=100000", *FLAGS.zoo_mlm_config])
    zoo_mlm = commands.evaluate(mlm_dir)
    zoo, _ = _zoo_classifier(os.path.join(root, "zoo-finetuned"), train, dev, seconds,
                             extra=[f"init_from={mlm_dir}"])
    result = {"zoo_mlm_masked_accuracy": zoo_mlm["masked_accuracy"], "zoo_mlm_steps": _steps(mlm_dir),
              "zoo_dev_accuracy": zoo["accuracy"]}
    if not FLAGS.peers:
        return result
    vocabulary = _vocabulary(mlm_dir)
    train_texts, train_labels = _read(train)
    dev_texts, dev_labels = _read(dev)
    architecture = _architecture(_model_config(mlm_dir))
    backbone, stats = bert_peers.keras_hub_mlm_pretrain(train_texts, vocabulary, max_seconds=mlm_seconds,
                                                        return_stats=True, **architecture)
    # One pretrained backbone, so one fine-tuning run: at the better of the peer's rates from scratch.
    peer = bert_peers.keras_hub_fit(train_texts, train_labels, dev_texts, dev_labels, vocabulary,
                                    max_seconds=seconds, backbone=backbone,
                                    learning_rate=float(FLAGS.peer_finetune_learning_rate))
    return {**result, "peer_mlm_accuracy": stats.get("mlm_accuracy"),
            "peer_dev_accuracy": peer["dev_accuracy"]}


def _fresh_copy(workdir, target):
    """A workdir with the same config and vocabulary but no training yet (skips re-learning)."""
    shutil.copytree(workdir, target,
                    ignore=shutil.ignore_patterns("checkpoints", "logs", "metrics.jsonl", "*.png"))
    return target


def throughput(train, dev, root):
    """Interleaved rounds (zoo, keras-hub fit, HF PyTorch), medians: a 2-core machine is noisy."""
    import numpy as np

    import bert_peers

    steps = FLAGS.throughput_steps
    first = os.path.join(root, "zoo-speed-0")
    train_texts, train_labels = _read(train)
    dev_texts, dev_labels = _read(dev)
    n = 32 * (steps + 40)
    runs = {"zoo": [], "zoo_xla": [], "keras_hub_fit": [], "hf_pytorch": []}
    for round_ in range(FLAGS.throughput_rounds):
        # 20 warm-up steps (trace, XLA compile), then `steps` timed ones, logged every 10.
        workdir = first if round_ == 0 else _fresh_copy(first, os.path.join(root, f"zoo-speed-{round_}"))
        _zoo_classifier(workdir, train, dev, 10**6, steps=20 + steps, extra=["log_every=10"])
        runs["zoo"].append(train_rate(workdir))
        vocabulary = _vocabulary(first)
        if round_ == 0:  # XLA once, for the record (slower on this CPU)
            xla = _fresh_copy(first, os.path.join(root, "zoo-speed-xla"))
            _zoo_classifier(xla, train, dev, 10**6, steps=20 + steps,
                            extra=["log_every=10", "jit_compile=true"])
            runs["zoo_xla"].append(train_rate(xla))
        runs["keras_hub_fit"].append(bert_peers.keras_hub_fit(
            train_texts[:n], train_labels[:n], dev_texts[:64], dev_labels[:64], vocabulary, epochs=1,
            steps_for_speed=steps, speed_warmup_steps=20)["examples_per_sec"])
        try:
            hf = bert_peers.hf_pytorch(train_texts[:n], train_labels[:n], dev_texts[:64], dev_labels[:64],
                                       vocabulary, epochs=1, steps_for_speed=steps, speed_warmup_steps=20)
            runs["hf_pytorch"].append(hf["examples_per_sec"])
            versions = hf.get("versions")
        except ImportError as e:
            versions = f"skipped ({e}); pip install -r benchmarks/requirements-peers.txt"
        latest = {k: v[-1] for k, v in runs.items() if v}
        print(f"[bert_sst2] throughput round {round_}: " + json.dumps(latest), flush=True)
    medians = {k: float(np.median(v)) for k, v in runs.items() if v}
    result = {f"{k}_examples_per_sec_median": v for k, v in medians.items()}
    result["runs"] = runs
    result["ratio_vs_keras_hub"] = medians["zoo"] / medians["keras_hub_fit"]
    if "hf_pytorch" in medians:
        result["ratio_vs_hf_pytorch"] = medians["zoo"] / medians["hf_pytorch"]
    result["hf_versions"] = versions
    return result


def main(argv):
    train, dev = _files()
    root = tempfile.mkdtemp(prefix="bench-bert-")
    parts = {"scratch": scratch, "mlm": mlm, "throughput": throughput}
    try:
        for name in FLAGS.parts:
            start = time.perf_counter()
            result = parts[name](train, dev, root)
            result["part_seconds"] = round(time.perf_counter() - start, 1)
            print(f"[bert_sst2] {name}: " + json.dumps(result, default=str), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
