"""T5 speed on CPU, same run, same sizes: training examples/s and greedy generation tokens/s.

    python benchmarks/t5_throughput.py [--preset=small] [--steps=20] [--parts=train,generate,cache]

Models: t5-small sizes (6 + 6 layers, 512 wide, 8 heads of 64, feed-forward 2048, relu, tied
embeddings), one SentencePiece vocabulary learned by the zoo from the E2E training pairs
(`../shared/data/text2text/e2e.tsv`), inputs cut at 128 tokens and targets at 32.

Training (batch 32, `--steps` timed steps after 3 untimed ones, the same E2E pairs):
- zoo: `Trainer` on the `t5` entry with its defaults (AdamW, batches cut to their longest
  example: what `zoo train` does);
- keras-hub: `T5Seq2SeqLM(backbone, T5Seq2SeqLMPreprocessor(encoder_sequence_length=128,
  decoder_sequence_length=32))`, `compile()` with its defaults (Adam 2e-5, masked sparse
  cross-entropy, jit_compile "auto"), `fit` on the raw strings (its recipe in the class
  docstring);
- Hugging Face PyTorch: `T5ForConditionalGeneration(T5Config(...))` in the loop of
  transformers' `examples/pytorch/summarization/run_summarization_no_trainer.py` (tokenize
  once with truncation, `DataCollatorForSeq2Seq` padding each batch to its longest, AdamW
  with no decay for biases and layer norms, linear schedule; `loss.backward()`, `step()`).

Generation (greedy, up to 32 new tokens, batch 1 and 32, untrained weights so no row stops
early): zoo `T5TextToText.generate` (the served graph), keras-hub `generate` after
`compile(sampler="greedy")`, HF `generate(do_sample=False, num_beams=1)`. And the cache:
the zoo's decoding step at position 5 and at position 60 of a 64-token buffer. `--parts=xla`:
the zoo's `generate` (what `evaluate`/`predict` run) as a graph and under XLA (`jit_compile`).
"""

import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bert_peers.hf_pytorch

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "text2text", "e2e.tsv")
flags.DEFINE_string("data", DEFAULT_DATA, "Text-to-text TSV with a header `input<TAB>target`.")
flags.DEFINE_string("preset", "small", "Zoo t5 preset whose sizes every model uses.")
flags.DEFINE_integer("steps", 20, "Timed training steps of each model (after 3 untimed ones).")
flags.DEFINE_integer("batch_size", 32, "Training batch.")
flags.DEFINE_list("parts", ["train", "generate", "cache"], "What to measure (also: xla, the zoo's generation "
                  "under XLA against the graph).")
flags.DEFINE_integer("threads", 0, "Threads for every framework (0: os.cpu_count()).")
WARMUP = 3


def _zoo(workdir):
    from zoo import registry, sources

    cls = registry.get("t5")
    config = cls.preset(FLAGS.preset)
    entry = cls(config, workdir)
    source = sources.parse(FLAGS.data)
    entry.prepare(source)
    return entry, source


def _sizes(config, vocabulary_size):
    return dict(vocabulary_size=vocabulary_size, num_layers=config.num_layers, num_heads=config.num_heads,
                hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim,
                key_value_dim=config.key_value_dim, dropout=config.dropout, activation=config.activation,
                use_gated_activation=config.use_gated_activation)


def train_zoo(entry, source, workdir):
    from trainers import Trainer, TrainerConfig

    config = TrainerConfig(**{**entry.trainer_defaults, "steps": WARMUP + FLAGS.steps, "batch_size": FLAGS.batch_size,
                              "log_every": 1, "checkpoint_every": 10**9, "steps_per_execution": 1})
    Trainer(entry, config, workdir).train(source, evaluate=False)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    timed = [r for r in rows if r.get("kind") == "train" and r["step"] > WARMUP]
    return FLAGS.batch_size * len(timed) / sum(r["step_time"] for r in timed)


class _Stamps:
    def __init__(self):
        self.times = []

    def stamp(self):
        self.times.append(time.perf_counter())

    def rate(self, batch):
        timed = self.times[WARMUP:]
        return batch * (len(timed) - 1) / (timed[-1] - timed[0])


def train_keras_hub(entry, pairs):
    import keras
    import keras_hub
    import tensorflow as tf

    from zoo.t5 import model as t5

    keras.utils.set_random_seed(0)
    c = entry.config
    backbone = t5.build(**_sizes(c, entry.vocabulary_size)).backbone  # T5's init (see zoo/t5/model.py)
    tokenizer = keras_hub.models.T5Tokenizer(proto=entry.vocabulary_path)
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(tokenizer, encoder_sequence_length=c.max_input_length,
                                                            decoder_sequence_length=c.max_target_length)
    lm = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=preprocessor)
    lm.compile()
    stamps = _Stamps()
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: stamps.stamp())
    data = tf.data.Dataset.from_tensor_slices({"encoder_text": [p[0] for p in pairs],
                                               "decoder_text": [p[1] for p in pairs]})
    data = data.shuffle(len(pairs), seed=0).batch(FLAGS.batch_size, drop_remainder=True)
    stamps.stamp()
    lm.fit(data.take(WARMUP + FLAGS.steps), epochs=1, callbacks=[callback], verbose=0)
    return stamps.rate(FLAGS.batch_size), lm


def _hf_model(entry):
    import torch
    import transformers

    torch.manual_seed(0)
    c = entry.config
    config = transformers.T5Config(
        vocab_size=entry.vocabulary_size, d_model=c.hidden_dim, d_kv=c.key_value_dim, d_ff=c.intermediate_dim,
        num_layers=c.num_layers, num_decoder_layers=c.num_layers, num_heads=c.num_heads, dropout_rate=c.dropout,
        feed_forward_proj="gated-gelu" if c.use_gated_activation else c.activation, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return transformers.T5ForConditionalGeneration(config)


def _hf_tokenizer(entry):
    import transformers

    return transformers.T5Tokenizer(vocab_file=entry.vocabulary_path, extra_ids=0, legacy=False)


def train_hf(entry, pairs):
    import torch
    import transformers

    torch.set_num_threads(FLAGS.threads or os.cpu_count())
    c = entry.config
    model = _hf_model(entry)
    tokenizer = _hf_tokenizer(entry)
    features = tokenizer([p[0] for p in pairs], max_length=c.max_input_length, truncation=True)
    labels = tokenizer(text_target=[p[1] for p in pairs], max_length=c.max_target_length, truncation=True)
    rows = [{"input_ids": i, "attention_mask": m, "labels": lab}
            for i, m, lab in zip(features["input_ids"], features["attention_mask"], labels["input_ids"])]
    collator = transformers.DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    loader = torch.utils.data.DataLoader(rows, shuffle=True, collate_fn=collator, batch_size=FLAGS.batch_size,
                                         generator=torch.Generator().manual_seed(0))
    no_decay = ["bias", "layer_norm.weight"]
    groups = [{"params": [p for n, p in model.named_parameters() if not any(d in n for d in no_decay)],
               "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if any(d in n for d in no_decay)],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    steps = WARMUP + FLAGS.steps
    scheduler = transformers.get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=steps)
    model.train()
    stamps = _Stamps()
    stamps.stamp()
    for step, batch in enumerate(loader):
        if step == steps:
            break
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        stamps.stamp()
    return stamps.rate(FLAGS.batch_size), model, tokenizer


def _timed(fn, repeats=3):
    fn()  # trace / warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def generate_all(entry, model, inputs, keras_lm, hf_model, hf_tokenizer):
    import torch

    new_tokens = entry.config.max_target_length
    results = {}
    for batch in (1, 32):
        texts = (inputs * 32)[:batch]
        zoo_fn = entry._generate_fn(model, "greedy")
        import tensorflow as tf

        ids = entry.generate_ids(model, entry.encode_inputs(tf.constant(texts)), "greedy").numpy()
        full = int((ids != 0).sum(axis=1).min()) == new_tokens
        results[("zoo", batch)] = batch * new_tokens / _timed(lambda: zoo_fn(tf.constant(texts)))
        if keras_lm is not None:
            keras_lm.compile(sampler="greedy")
            keras_lm.preprocessor.decoder_sequence_length = new_tokens + 1
            results[("keras-hub", batch)] = batch * new_tokens / _timed(
                lambda: keras_lm.generate(texts, max_length=new_tokens + 1), repeats=1)
        if hf_model is not None:
            hf_model.eval()
            encoded = hf_tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                   max_length=entry.config.max_input_length)

            def hf_generate():
                with torch.no_grad():
                    hf_model.generate(**encoded, do_sample=False, num_beams=1, max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens)

            results[("hf", batch)] = batch * new_tokens / _timed(hf_generate)
        results[("full_length", batch)] = full
    return results


def xla_generation(entry, model, inputs):
    """Greedy tokens/s of `entry.generate` (what `evaluate` and `predict` run), graph against
    XLA (the trainer's `jit_compile=true`), batch 1 and 32."""
    new_tokens = entry.config.max_target_length
    results = {}
    for batch in (1, 32):
        texts = (inputs * 32)[:batch]
        for jit in (False, True):
            entry.jit_compile = jit
            results[(jit, batch)] = batch * new_tokens / _timed(
                lambda: entry.generate(model, texts, "greedy", batch_size=batch))
    entry.jit_compile = False
    return results


def cache_cost(entry, model):
    import tensorflow as tf

    from zoo.t5 import model as t5

    ids = entry.encode_inputs(tf.constant(["name : The Mill | near : Café Rouge"]))
    cache, context = t5.empty_cache(model, 1, 64), t5.encoder_context(model, ids)
    step = tf.function(t5.step(model))
    tokens = tf.constant([5])
    times = {}
    for position in (5, 60):
        t = tf.constant(position)
        times[position] = _timed(lambda: [step(tokens, t, cache, context) for _ in range(20)]) / 20
    return times


def main(argv):
    if not os.path.exists(FLAGS.data):
        raise SystemExit(f"{FLAGS.data}: not found (the shared E2E data); nothing to measure.")
    if FLAGS.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    workdir = tempfile.mkdtemp(prefix="bench-t5-")
    entry, source = _zoo(workdir)
    pairs = entry.pairs(source, "train")
    inputs = entry.grouped(source, "validation")[0]
    keras_lm = hf_model = hf_tokenizer = None
    print(f"== T5 ({FLAGS.preset} sizes, vocabulary {entry.vocabulary_size}, input {entry.config.max_input_length}, "
          f"target {entry.config.max_target_length}) on {os.cpu_count()} cores")
    if "train" in FLAGS.parts:
        zoo_rate = train_zoo(entry, source, os.path.join(workdir, "train"))
        keras_rate, keras_lm = train_keras_hub(entry, pairs)
        hf_rate, hf_model, hf_tokenizer = train_hf(entry, pairs)
        print(f"training examples/s (batch {FLAGS.batch_size}): zoo {zoo_rate:.2f}, keras-hub fit {keras_rate:.2f}, "
              f"HF PyTorch {hf_rate:.2f}; ratio zoo/keras-hub {zoo_rate / keras_rate:.2f}, "
              f"zoo/HF {zoo_rate / hf_rate:.2f}")
        print(json.dumps({"train_examples_per_sec": {"zoo": zoo_rate, "keras_hub_fit": keras_rate,
                                                     "hf_pytorch": hf_rate}}), flush=True)
    if "generate" in FLAGS.parts:
        from zoo.t5 import model as t5

        model = t5.build(**_sizes(entry.config, entry.vocabulary_size))
        if hf_model is None:
            hf_model, hf_tokenizer = _hf_model(entry), _hf_tokenizer(entry)
        results = generate_all(entry, model, inputs, keras_lm, hf_model, hf_tokenizer)
        for batch in (1, 32):
            row = {k[0]: v for k, v in results.items() if k[1] == batch and k[0] != "full_length"}
            ratios = ", ".join(f"zoo/{name} {row['zoo'] / rate:.2f}" for name, rate in row.items() if name != "zoo")
            print(f"greedy tokens/s, batch {batch}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items())
                  + f"; {ratios} (zoo rows ran the full length: {results[('full_length', batch)]})")
    if "xla" in FLAGS.parts:
        from zoo.t5 import model as t5

        model = t5.build(**_sizes(entry.config, entry.vocabulary_size))
        results = xla_generation(entry, model, inputs)
        for batch in (1, 32):
            print(f"zoo greedy tokens/s, batch {batch}: graph {results[(False, batch)]:.1f}, XLA "
                  f"{results[(True, batch)]:.1f} (ratio XLA/graph {results[(True, batch)] / results[(False, batch)]:.2f})")
    if "cache" in FLAGS.parts:
        from zoo.t5 import model as t5

        model = t5.build(**_sizes(entry.config, entry.vocabulary_size))
        times = cache_cost(entry, model)
        print(f"zoo decoding step, 64-token cache: position 5 {1000 * times[5]:.2f} ms, "
              f"position 60 {1000 * times[60]:.2f} ms (ratio {times[60] / times[5]:.2f})")


if __name__ == "__main__":
    app.run(main)
