"""Two BERT text-classification peers, built from scratch on a given WordPiece vocabulary.

Both peers train the same architecture (BERT encoder: `num_layers` post-LayerNorm blocks of
`num_heads`-head self-attention and a GELU MLP of `intermediate_dim`, dropout 0.1, learned
positions up to 512, 2 segment types, tanh pooler on [CLS], dropout 0.1, linear head) on
`[CLS] text [SEP]` padded/truncated to `sequence_length`, and report dev accuracy and steady-state
training throughput. Each is trained the way its own library's public recipe trains it.

1. `keras_hub_fit` -- KerasHub's `BertTextClassifier`, the recipe of:
   - keras-team/keras-hub `keras_hub/src/models/bert/bert_text_classifier.py` (docstring
     "Custom backbone and vocabulary": `BertTokenizer(vocabulary=...)` ->
     `BertTextClassifierPreprocessor(tokenizer, sequence_length)` -> `BertBackbone(...)` ->
     `BertTextClassifier(backbone, num_classes, preprocessor)`; re-compile with
     `SparseCategoricalCrossentropy(from_logits=True)`, `Adam(5e-5)`, `jit_compile=True`),
     `bert_backbone.py`, `bert_text_classifier_preprocessor.py`, `bert_tokenizer.py`, and
     `keras_hub/src/models/text_classifier.py` (`compile()` defaults: Adam(5e-5),
     SparseCategoricalCrossentropy(from_logits), SparseCategoricalAccuracy);
   - keras-team/keras-io `guides/keras_hub/finetuning_on_glue_with_keras_hub.py` (fine-tuning
     `BertTextClassifier`: `tf.data` `.batch(32).prefetch(AUTOTUNE)`, `AdamW(5e-5)`, sparse CE,
     `SparseCategoricalAccuracy`, `classifier.fit(train_ds, epochs=3)`) and
     `guides/keras_hub/getting_started.py` (`AdamW(5e-5)`, from-logits sparse CE,
     `jit_compile=True`).
   Used here: `AdamW(learning_rate)` (both guides; Keras' default weight decay 0.004),
   `SparseCategoricalCrossentropy(from_logits=True)`, `SparseCategoricalAccuracy`, batch 32,
   lr 5e-5, constant (the recipes use no schedule), `fit` on
   `Dataset.from_tensor_slices((texts, labels)).shuffle().batch().prefetch(AUTOTUNE)` with the
   preprocessor attached (KerasHub's `fit` maps it over the batches with AUTOTUNE + prefetch).
   `jit_compile`: keras-hub's default ("auto", no XLA on CPU), see `KERAS_JIT_DEFAULT` below
   (the docstrings and guides pass `jit_compile=True`; measured no faster on this CPU).

   `keras_hub_mlm_pretrain` -- masked-LM pretraining of the same backbone with
   `BertMaskedLM` + `BertMaskedLMPreprocessor`, the settings of keras-team/keras-io
   `guides/keras_hub/transformer_pretraining.py` and `guides/keras_hub/getting_started.py`
   ("Pretraining a backbone model"): mask selection rate 0.25, predictions per sequence =
   rate * sequence_length (32 of 128 and 64 of 256 there; 16 of 64 here), 80/10/10
   mask/random/keep (the preprocessor's defaults), `AdamW(5e-4)`, from-logits sparse CE,
   `weighted_metrics=[SparseCategoricalAccuracy()]`, batch 128 (the guides pass
   `jit_compile=True`; here `KERAS_JIT_DEFAULT` as for the classifier).
   Returns the backbone, to pass to `keras_hub_fit(backbone=...)`.

2. `hf_pytorch` -- Hugging Face `transformers.BertForSequenceClassification` with the standard
   PyTorch loop: huggingface/transformers
   `examples/pytorch/text-classification/run_glue_no_trainer.py` (tokenize once with the fast
   tokenizer, `padding="max_length"`, `truncation=True`; `DataLoader(shuffle=True)`; AdamW on two
   parameter groups, no decay for biases and LayerNorm weights; `get_scheduler("linear", ...)`
   = `get_linear_schedule_with_warmup`; `model.train()`, `loss.backward()`, `optimizer.step()`,
   `lr_scheduler.step()`, `optimizer.zero_grad()`; eval with argmax of the logits) and
   `src/transformers/models/bert/modeling_bert.py` / `configuration_bert.py`.
   Used here: `BertConfig(vocab_size=len(vocabulary), hidden_size, num_hidden_layers,
   num_attention_heads, intermediate_size, max_position_embeddings=512, num_labels,
   pad_token_id)`, `BertTokenizerFast(<tmp>/vocab.txt, do_lower_case=lowercase)` on the same
   vocabulary, `torch.optim.AdamW(lr=5e-5, weight_decay=0.01)` (BERT's value; the script's flag
   defaults to 0.0), linear warmup over `warmup_ratio` (default 0.1, BERT's
   `warmup_proportion`; the script's flag defaults to 0 steps) then linear decay to 0 at the
   last step, `torch.set_num_threads(os.cpu_count())` with `OMP_WAIT_POLICY=PASSIVE` (robust
   on a shared machine; see `hf_pytorch`), attention as transformers picks it (SDPA).
   With `max_seconds`, the number of steps the schedule spans is estimated before training
   from timed forward/backward passes (`_estimate_step_seconds`) and re-aimed at the deadline
   every 25 steps from the measured step rate, so the learning rate reaches 0 when the time is
   up; training stops there or at the deadline. `torch.compile` is an option
   (`torch_compile=True`), off by default: on this 2-core CPU the first compiled step took
   94 s and compiled steps were no faster than eager ones under the same load (1.2-3.7 s vs
   2.0-3.2 s per step, with other jobs running), so it is no real win here.

Deviations common to both, and why:
- Training batches use `drop_remainder=True` / `drop_last=True`: every step has the same shape
  (no second trace or XLA compile for a short last batch; examples/s counts full batches). Each
  epoch reshuffles, so no example is left out for good.
- Runs can be bounded by `max_seconds` of wall time (a Keras callback sets `stop_training`;
  the PyTorch loop checks the clock after each step), besides `epochs`.
- Both tokenizers lowercase and strip accents when `lowercase=True` (HF's `BertTokenizerFast`
  strips accents whenever it lowercases; KerasHub's `BertTokenizer` is told `strip_accents`
  too), so both peers see identical token ids for the same vocabulary (checked on SST-2).
- Seeds: `keras.utils.set_random_seed(seed)` / `transformers.set_seed(seed)`.

Throughput (`examples_per_sec`): wall-clock stamps at the end of every training step (Keras:
`on_train_batch_end`; PyTorch: after `zero_grad`). The first `speed_warmup_steps` (10) steps
(tracing / compilation / allocator warm-up) are left out; the figure is batch_size * steps /
seconds over the next `steps_for_speed` steps (or all remaining steps if None). `train_seconds`
is the wall time of the whole training call (including warm-up and, for HF with
`max_seconds`, the step-time estimate), excluding evaluation.
"""

import os
import tempfile
import time

import numpy as np

RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# `jit_compile` default for the KerasHub peers: keras-hub's own default ("auto": `Task.compile`
# leaves Keras' default, which resolves to no XLA on a CPU-only machine). The keras-hub
# docstrings/guides pass `jit_compile=True` (written for GPUs); on this machine (2 shared CPU
# cores, TF 2.21, keras 3.15.1, keras-hub 0.32) XLA was no faster for the 4x256 classifier at
# sequence 64, batch 32: 40.8 and 38.1 examples/s with True against 49.3 and 86.8 with "auto"
# (alternating 60-step runs under load from other jobs), and XLA's compile costs ~10-20 s of
# a time budget. Pass jit_compile=True to override.
KERAS_JIT_DEFAULT = "auto"


def _check_vocabulary(vocabulary):
    vocabulary = [str(t) for t in vocabulary]
    missing = [t for t in RESERVED if t not in vocabulary]
    if missing:
        raise ValueError(f"vocabulary lacks {missing}")
    if len(set(vocabulary)) != len(vocabulary):
        raise ValueError("vocabulary has duplicate tokens")
    return vocabulary


def _num_classes(labels, dev_labels=()):
    return int(max(max(labels), max(dev_labels, default=0))) + 1


class _Speed:
    """Steady-state examples/s from per-step wall-clock stamps (see the module docstring).

    `stamps[0]` is the start of training, `stamps[k]` the end of step k.
    """

    def __init__(self, batch_size, warmup_steps=10, steps_for_speed=None):
        self.batch_size, self.warmup, self.window = batch_size, warmup_steps, steps_for_speed
        self.stamps = []

    def begin(self):
        self.stamps = [time.perf_counter()]

    def stamp(self):
        self.stamps.append(time.perf_counter())

    @property
    def steps(self):
        return max(0, len(self.stamps) - 1)

    def examples_per_sec(self):
        if self.steps < 1:
            return float("nan")
        # From the end of step `warmup` (fewer steps than that: from the last one before the
        # final step, so a very short run still gives a figure) to the end of the window.
        first = min(self.warmup, self.steps - 1)
        last = self.steps if self.window is None else min(self.steps, first + self.window)
        return self.batch_size * (last - first) / (self.stamps[last] - self.stamps[first])


# ----------------------------------------------------------------------------- KerasHub peer


def _keras_callbacks(speed, max_seconds):
    import keras

    class Stamp(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.deadline = None

        def on_train_begin(self, logs=None):
            speed.begin()
            if max_seconds is not None:
                self.deadline = time.perf_counter() + max_seconds

        def on_train_batch_end(self, batch, logs=None):
            speed.stamp()
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                self.model.stop_training = True

    return [Stamp()]


def _keras_tokenizer(vocabulary, lowercase):
    import keras_hub

    return keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase,
                                          strip_accents=lowercase)


def _keras_backbone(vocabulary, num_layers, hidden_dim, num_heads, intermediate_dim):
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, dropout=0.1,
        max_sequence_length=512)


def keras_hub_fit(train_texts, train_labels, dev_texts, dev_labels, vocabulary, *,
                  num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024,
                  sequence_length=64, batch_size=32, epochs=None, max_seconds=None,
                  learning_rate=5e-5, seed=0, steps_for_speed=None, backbone=None,
                  lowercase=True, jit_compile=None, speed_warmup_steps=10, verbose=0):
    """Trains KerasHub's `BertTextClassifier` from scratch (or on `backbone`) with `fit`.

    Stops after `epochs` epochs or `max_seconds` of training wall time, whichever comes first
    (at least one must be given). `backbone`: an existing `BertBackbone` (e.g. from
    `keras_hub_mlm_pretrain`) whose vocabulary size must match; its size kwargs are then unused.
    `jit_compile`: None -> `KERAS_JIT_DEFAULT`.
    Returns {"dev_accuracy", "examples_per_sec", "train_seconds", "steps", "epochs",
    "train_loss", "model"}.
    """
    import keras
    import keras_hub
    import tensorflow as tf

    if epochs is None and max_seconds is None:
        raise ValueError("give epochs or max_seconds")
    vocabulary = _check_vocabulary(vocabulary)
    keras.utils.set_random_seed(seed)
    num_classes = _num_classes(train_labels, dev_labels)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        _keras_tokenizer(vocabulary, lowercase), sequence_length=sequence_length)
    if backbone is None:
        backbone = _keras_backbone(vocabulary, num_layers, hidden_dim, num_heads, intermediate_dim)
    elif backbone.vocabulary_size != len(vocabulary):
        raise ValueError(f"backbone vocabulary {backbone.vocabulary_size} != {len(vocabulary)}")
    classifier = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor)
    classifier.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        jit_compile=KERAS_JIT_DEFAULT if jit_compile is None else jit_compile)

    labels = np.asarray(train_labels, dtype="int32")
    train_ds = (tf.data.Dataset.from_tensor_slices((list(train_texts), labels))
                .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
                .batch(batch_size, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))
    speed = _Speed(batch_size, speed_warmup_steps, steps_for_speed)
    start = time.perf_counter()
    history = classifier.fit(train_ds, epochs=epochs or 1_000_000,
                             callbacks=_keras_callbacks(speed, max_seconds), verbose=verbose)
    train_seconds = time.perf_counter() - start

    dev_ds = tf.data.Dataset.from_tensor_slices(list(dev_texts)).batch(256)
    logits = classifier.predict(dev_ds, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == np.asarray(dev_labels)))
    return {"dev_accuracy": accuracy, "examples_per_sec": speed.examples_per_sec(),
            "train_seconds": train_seconds, "steps": speed.steps,
            "epochs": speed.steps / (len(labels) // batch_size),
            "train_loss": history.history["loss"][-1], "model": classifier}


def keras_hub_mlm_pretrain(texts, vocabulary, *, num_layers=4, hidden_dim=256, num_heads=4,
                           intermediate_dim=1024, sequence_length=64, batch_size=128,
                           epochs=None, max_seconds=None, learning_rate=5e-4,
                           mask_selection_rate=0.25, mask_selection_length=None, seed=0,
                           lowercase=True, jit_compile=None, verbose=0, return_stats=False):
    """Masked-LM pretraining of a fresh `BertBackbone` with `BertMaskedLM` (see the docstring).

    Returns the backbone (or `(backbone, stats)` with `return_stats=True`; stats has
    examples_per_sec, train_seconds, steps, mlm_loss, mlm_accuracy of the last epoch).
    """
    import keras
    import keras_hub
    import tensorflow as tf

    if epochs is None and max_seconds is None:
        raise ValueError("give epochs or max_seconds")
    vocabulary = _check_vocabulary(vocabulary)
    keras.utils.set_random_seed(seed)
    if mask_selection_length is None:
        mask_selection_length = max(1, round(mask_selection_rate * sequence_length))
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        _keras_tokenizer(vocabulary, lowercase), sequence_length=sequence_length,
        mask_selection_rate=mask_selection_rate, mask_selection_length=mask_selection_length)
    backbone = _keras_backbone(vocabulary, num_layers, hidden_dim, num_heads, intermediate_dim)
    masked_lm = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=preprocessor)
    masked_lm.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
        jit_compile=KERAS_JIT_DEFAULT if jit_compile is None else jit_compile)
    ds = (tf.data.Dataset.from_tensor_slices(list(texts))
          .shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE))
    speed = _Speed(batch_size)
    start = time.perf_counter()
    history = masked_lm.fit(ds, epochs=epochs or 1_000_000,
                            callbacks=_keras_callbacks(speed, max_seconds), verbose=verbose)
    stats = {"examples_per_sec": speed.examples_per_sec(),
             "train_seconds": time.perf_counter() - start, "steps": speed.steps,
             "mlm_loss": history.history["loss"][-1],
             "mlm_accuracy": history.history["sparse_categorical_accuracy"][-1]}
    return (backbone, stats) if return_stats else backbone


# ----------------------------------------------------------------------- Hugging Face peer


def _hf_tokenizer(vocabulary, lowercase, directory):
    from transformers import BertTokenizerFast

    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")
    # First positional argument: `vocab_file` (transformers 4) / `vocab` path (transformers 5).
    # do_lower_case=True also strips accents (strip_accents=None follows it).
    return BertTokenizerFast(path, do_lower_case=lowercase)


def _estimate_step_seconds(model, batches, untimed=2, timed=4):
    """Seconds per training step, from forward+backward passes with no update.

    Used only with `max_seconds`, so the linear schedule ends where the time does. The passes
    leave the weights untouched (gradients are zeroed, no optimizer step); an AdamW step
    (a few ms here) is not in the estimate, so the last steps may be cut by the clock with a
    small learning rate still left.
    """
    times = []
    for i, batch in enumerate(batches[:untimed + timed]):
        t = time.perf_counter()
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)
        if i >= untimed:
            times.append(time.perf_counter() - t)
    return float(np.mean(times))


def hf_pytorch(train_texts, train_labels, dev_texts, dev_labels, vocabulary, *,
               num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024,
               sequence_length=64, batch_size=32, epochs=None, max_seconds=None,
               learning_rate=5e-5, seed=0, steps_for_speed=None, weight_decay=0.01,
               warmup_ratio=0.1, lowercase=True, num_threads=None, torch_compile=False,
               dynamic_padding=False, speed_warmup_steps=10, total_steps=None,
               replan_every=25, omp_wait_policy="PASSIVE"):
    """Trains `transformers.BertForSequenceClassification` from scratch with a PyTorch loop.

    Stops after `epochs` epochs or `max_seconds` of wall time, whichever first. The linear
    schedule (warmup over `warmup_ratio` of the steps, then decay to 0) spans `total_steps` if
    given, else epochs * steps_per_epoch, else the steps that fit in `max_seconds`: first
    estimated from timed forward/backward passes, then re-aimed at the deadline every
    `replan_every` steps from the measured step rate (the schedule is rebuilt with
    `get_linear_schedule_with_warmup(..., last_epoch=step - 1)`, warmup length kept), so the
    learning rate reaches 0 when the time is up even if the machine's speed changes.
    `torch_compile=True` wraps the model in `torch.compile` (inductor); off by default (94 s to
    compile on this 2-core CPU and no faster per step; see the module docstring).
    `dynamic_padding=True` pads each batch to its longest sequence (what run_glue_no_trainer's
    `DataCollatorWithPadding` does without `--pad_to_max_length`) instead of to
    `sequence_length`; off by default so both peers do the same work per example.
    `num_threads`: None -> os.cpu_count().
    `omp_wait_policy`: put in the environment before torch is first imported (torch's OpenMP
    runtime reads it when it loads; if torch is already imported or the variable is already
    set, nothing changes and `versions["omp_wait_policy"]` says what is in force). Default
    "PASSIVE": with OpenMP's default spin-waiting and threads = cores, one other busy process
    on this 2-core machine made the 4x256 step 3-15x slower (1-5.5 s instead of 0.35 s); with
    PASSIVE it stayed at 0.4-0.7 s, at a cost of about 5% on an idle machine (0.37 vs 0.35 s).
    None leaves the environment alone.
    Returns {"dev_accuracy", "examples_per_sec", "train_seconds", "steps", "epochs",
    "train_loss", "model", "versions"}.
    """
    import sys

    omp_effective = "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ
    if omp_wait_policy and omp_effective:
        os.environ["OMP_WAIT_POLICY"] = omp_wait_policy
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    if epochs is None and max_seconds is None:
        raise ValueError("give epochs or max_seconds")
    vocabulary = _check_vocabulary(vocabulary)
    torch.set_num_threads(num_threads or os.cpu_count())
    transformers.set_seed(seed)
    num_classes = _num_classes(train_labels, dev_labels)

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _hf_tokenizer(vocabulary, lowercase, tmp)

    def encode(texts):
        enc = tokenizer(list(texts), padding="max_length", truncation=True,
                        max_length=sequence_length, return_tensors="pt")
        return enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]

    train = encode(train_texts) + (torch.as_tensor(np.asarray(train_labels), dtype=torch.long),)
    dev = encode(dev_texts)

    def collate(rows):
        ids, types, mask, labels = (torch.stack(col) for col in zip(*rows))
        if dynamic_padding:
            length = int(mask.sum(dim=1).max())
            ids, types, mask = ids[:, :length], types[:, :length], mask[:, :length]
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*train), batch_size=batch_size, shuffle=True,
        drop_last=True, collate_fn=collate, generator=torch.Generator().manual_seed(seed))

    config = BertConfig(
        vocab_size=len(vocabulary), hidden_size=hidden_dim, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=intermediate_dim,
        max_position_embeddings=512, num_labels=num_classes,
        pad_token_id=vocabulary.index("[PAD]"))
    model = BertForSequenceClassification(config)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    step_model = torch.compile(model) if torch_compile else model

    start = time.perf_counter()
    model.train()
    epoch_bound = epochs * len(loader) if epochs else None
    replan = max_seconds is not None and not total_steps
    if total_steps:
        num_steps = min(total_steps, epoch_bound or total_steps)
    elif replan:
        probe = [b for _, b in zip(range(6), loader)]
        step_seconds = _estimate_step_seconds(step_model, probe)
        remaining = max_seconds - (time.perf_counter() - start)
        num_steps = max(1, int(remaining / step_seconds))
        num_steps = min(num_steps, epoch_bound or num_steps)
    else:
        num_steps = epoch_bound
    num_warmup = int(warmup_ratio * num_steps)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=num_warmup, num_training_steps=num_steps)

    speed = _Speed(batch_size, speed_warmup_steps, steps_for_speed)
    speed.begin()
    deadline = None if max_seconds is None else start + max_seconds
    step = 0
    loss = None
    while step < num_steps and (deadline is None or time.perf_counter() < deadline):
        for batch in loader:
            loss = step_model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            speed.stamp()
            if replan and step >= 10 and step % replan_every == 0:
                # Re-aim the linear decay at the deadline from the measured step rate.
                window = min(replan_every, step - 5)
                per_step = (speed.stamps[step] - speed.stamps[step - window]) / window
                planned = step + max(1, int((deadline - time.perf_counter()) / per_step))
                planned = min(planned, epoch_bound or planned)
                if planned != num_steps:
                    num_steps = planned
                    scheduler = transformers.get_linear_schedule_with_warmup(
                        optimizer, num_warmup_steps=num_warmup, num_training_steps=num_steps,
                        last_epoch=step - 1)
            if step >= num_steps or (deadline is not None and time.perf_counter() >= deadline):
                break
    train_seconds = time.perf_counter() - start

    model.eval()
    predictions = []
    with torch.inference_mode():
        for i in range(0, len(dev[0]), 256):
            ids, types, mask = (t[i:i + 256] for t in dev)
            logits = step_model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
            predictions.append(logits.argmax(dim=-1).numpy())
    accuracy = float(np.mean(np.concatenate(predictions) == np.asarray(dev_labels)))
    return {"dev_accuracy": accuracy, "examples_per_sec": speed.examples_per_sec(),
            "train_seconds": train_seconds, "steps": step, "epochs": step / len(loader),
            "scheduled_steps": num_steps,
            "train_loss": loss.item() if loss is not None else float("nan"), "model": model,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "threads": torch.get_num_threads(),
                         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}}


# ------------------------------------------------------------------------------ smoke run


def _read_tsv(path, limit=None):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        next(f)  # header: text<TAB>label
        for line in f:
            text, label = line.rstrip("\n").rsplit("\t", 1)
            texts.append(text)
            labels.append(int(label))
            if limit and len(texts) >= limit:
                break
    return texts, labels


def learn_vocabulary(texts, vocabulary_size=8000, lowercase=True):
    """A WordPiece vocabulary with the five BERT special tokens first."""
    import keras_hub
    import tensorflow as tf

    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(list(texts)).batch(1000),
        vocabulary_size=vocabulary_size, lowercase=lowercase, strip_accents=lowercase,
        reserved_tokens=RESERVED)


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", choices=["keras_hub", "hf", "mlm", "all"], default="all")
    parser.add_argument("--max_seconds", type=float, default=60)
    parser.add_argument("--train_examples", type=int, default=20000)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--vocab_examples", type=int, default=5000)
    parser.add_argument("--jit_compile", default=None, choices=[None, "true", "false", "auto"])
    parser.add_argument("--torch_compile", action="store_true")
    parser.add_argument("--dynamic_padding", action="store_true")
    parser.add_argument("--omp_wait_policy", default="PASSIVE", help="'none': leave OpenMP's default")
    parser.add_argument("--num_threads", type=int, default=None)
    args = parser.parse_args()

    data = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "classification")
    if not os.path.exists(os.path.join(data, "sst2_train.tsv")):
        raise SystemExit(f"skipped: {data}/sst2_train.tsv not found")
    train_texts, train_labels = _read_tsv(os.path.join(data, "sst2_train.tsv"), args.train_examples)
    dev_texts, dev_labels = _read_tsv(os.path.join(data, "sst2_dev.tsv"))
    t = time.perf_counter()
    vocab = learn_vocabulary(train_texts[:args.vocab_examples], args.vocab_size)
    print(f"vocabulary: {len(vocab)} tokens from {args.vocab_examples} sentences "
          f"in {time.perf_counter() - t:.1f}s")
    jit = {None: None, "true": True, "false": False, "auto": "auto"}[args.jit_compile]

    def show(name, out):
        print(name, json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                for k, v in out.items() if k != "model"}))

    if args.peer in ("keras_hub", "all"):
        show("keras_hub_fit", keras_hub_fit(train_texts, train_labels, dev_texts, dev_labels, vocab,
                                            max_seconds=args.max_seconds, jit_compile=jit))
    if args.peer in ("hf", "all"):
        show("hf_pytorch", hf_pytorch(train_texts, train_labels, dev_texts, dev_labels, vocab,
                                      max_seconds=args.max_seconds,
                                      torch_compile=args.torch_compile,
                                      dynamic_padding=args.dynamic_padding,
                                      num_threads=args.num_threads,
                                      omp_wait_policy=None if args.omp_wait_policy == "none"
                                      else args.omp_wait_policy))
    if args.peer in ("mlm", "all"):
        backbone, stats = keras_hub_mlm_pretrain(train_texts, vocab, max_seconds=args.max_seconds / 2,
                                                 jit_compile=jit, return_stats=True)
        show("keras_hub_mlm_pretrain", stats)
        show("keras_hub_fit(pretrained)", keras_hub_fit(train_texts, train_labels, dev_texts,
                                                        dev_labels, vocab, backbone=backbone,
                                                        max_seconds=args.max_seconds / 2,
                                                        jit_compile=jit))
