"""The `t5_pretrain` zoo entry: T5's span corruption on unlabelled text."""

import dataclasses

import numpy as np
import tensorflow as tf

from zoo import fileio, registry, sources
from zoo.config import ConfigError
from zoo.t5 import model as t5
from zoo.t5 import spans
from zoo.t5.config import T5Config
from zoo.t5.entry import SENTINELS, T5TextToText, VOCAB_TEXTS, sentinel
from zoo.text import labelled, spm


@dataclasses.dataclass
class T5PretrainConfig(T5Config):
    """T5 settings (`T5Config`) and the span corruption's.

    Attributes:
        text_column: CSV/TSV column or JSONL key of the text (`.txt` files: a text a line).
        noise_density: share of each text's tokens dropped.
        mean_noise_span_length: mean length of a dropped span.
    """

    text_column: str = "text"
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    decode: str = "greedy"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.noise_density < 1.0:
            raise ConfigError(f"--config noise_density={self.noise_density}: expected 0 < value < 1.")
        if self.mean_noise_span_length < 1.0:
            raise ConfigError(f"--config mean_noise_span_length={self.mean_noise_span_length}: expected >= 1.")


T5PretrainConfig.PRESETS = {
    name: (lambda make=make: T5PretrainConfig(**{**dataclasses.asdict(make()), "decode": "greedy"}))
    for name, make in T5Config.PRESETS.items()}


@registry.register("t5_pretrain")
class T5Pretrain(T5TextToText):
    """T5 pretraining by span corruption: the inputs lose 15% of their tokens in spans of mean
    length 3, each replaced by a sentinel `<extra_id_N>`; the targets are the sentinels and the
    dropped spans. Masks are drawn in the input pipeline from stateless seeds (the seed and
    the example's position in the stream), so resume is exact and replicas see what one
    device sees. `zoo train --model=t5 --init_from=WORKDIR` starts from it.

    Data: `.txt` files (a text a line), CSV/TSV/JSONL (`text_column`), folders of them, or
    `builtin:dates` (both sides of the generated pairs).
    """

    description = "T5 span-corruption pretraining on unlabelled text (start t5 from it with --init_from)."
    config_class = T5PretrainConfig
    validation_metric = ("val_loss", "min")
    task_metric = "chrf"

    # Data.
    def texts(self, source, split):
        key = ("texts", str(source), split)
        if key not in self._cache:
            if source.kind == "builtin":
                texts = [text for pair in self.pairs(source, split) for text in pair]
            elif source.kind == "file":
                path = source.name
                if self.config.validation_data and split not in ("train", sources.ALL):
                    path = self.config.validation_data
                    if not fileio.exists(path):
                        raise sources.DataError(f"--config validation_data={path}: no such file or folder.")
                rows = labelled.read(path, self.config.text_column, require_label=False).examples
                texts = [r.text for r in rows]
                if not self.config.validation_data:
                    texts = sources.split_rows(texts, split)
            else:
                raise sources.DataError(f"--data={source}: t5_pretrain reads .txt/CSV/TSV/JSONL files or "
                                        f"builtin:dates.")
            self._cache[key] = texts
        return self._cache[key]

    def num_examples(self, source, split):
        return len(self.texts(source, split))

    def prepare(self, source):
        fileio.makedirs(self.assets_dir)
        if self.config.preset_dir:
            return super().prepare(source)
        spm.train(self.texts(source, "train")[:VOCAB_TEXTS], self.config.vocabulary_size, self.vocabulary_path,
                  normalization="identity", special_ids=spm.T5_IDS,
                  user_symbols=[sentinel(i) for i in range(SENTINELS)])
        self.texts(source, "validation")
        self.load_assets()

    def load_assets(self):
        super().load_assets()
        if self.sentinel_ids is None:
            raise ConfigError(
                f"{self.config.preset_dir or self.vocabulary_path}: the vocabulary has no <extra_id_N> pieces and "
                f"the embedding has {self.vocabulary_size} rows for its {self.pieces} pieces, not the "
                f"{self.pieces + SENTINELS} T5's 100 sentinels need after them; span corruption cannot mark its spans.")

    def token_rows(self, source, split, chunk=4096):
        """Every text tokenized once (at most max_input_length - 1 tokens), texts of fewer than
        two tokens left out: a ragged tensor."""
        key = ("rows", str(source), split)
        if key not in self._cache:
            texts = self.texts(source, split)
            parts = [self.tokenizer.tokenize(tf.constant(texts[i:i + chunk]))[:, : self.config.max_input_length - 1]
                     for i in range(0, len(texts), chunk)]
            rows = tf.concat(parts, axis=0)
            self._cache[key] = tf.ragged.boolean_mask(rows, rows.row_lengths() >= 2)
        return self._cache[key]

    def corrupted(self, ids, seed):
        """(inputs, decoder inputs, labels), padded to the configured lengths, of one text."""
        c = self.config
        mask = spans.noise_mask(tf.size(ids), seed, c.noise_density, c.mean_noise_span_length)
        inputs, targets = spans.corrupt(ids, mask, tf.constant(self.sentinel_ids[:SENTINELS], tf.int32))
        eos = tf.constant([t5.EOS], tf.int32)
        inputs = tf.concat([inputs[: c.max_input_length - 1], eos], 0)
        targets = tf.concat([targets[: c.max_target_length - 1], eos], 0)
        decoder = tf.concat([[t5.START], targets[:-1]], 0)

        def pad(x, length):
            return tf.pad(x, [[0, length - tf.size(x)]])

        return (tf.ensure_shape(pad(inputs, c.max_input_length), [c.max_input_length]),
                tf.ensure_shape(pad(decoder, c.max_target_length), [c.max_target_length]),
                tf.ensure_shape(pad(targets, c.max_target_length), [c.max_target_length]))

    def dataset(self, source, split, batch_size, training, seed=0):
        rows = self.token_rows(source, split)
        ds = tf.data.Dataset.from_tensor_slices(rows)
        if training:
            ds = ds.shuffle(min(int(rows.nrows()), 100_000), seed=seed).repeat()
        # The example's place in the stream seeds its spans: new spans every epoch, the same
        # ones after a resume (the iterator's checkpoint holds the count).
        stream = 0 if training else 1
        ds = ds.enumerate().map(
            lambda i, ids: self.corrupted(tf.cast(ids, tf.int32), tf.stack([tf.cast(seed * 2 + stream, tf.int64), i])),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=training)
        return ds.map(self._batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Results.
    def evaluate(self, model, source, split):
        """Teacher-forced accuracy on the dropped tokens and sentinels of the held-out texts."""
        right = total = 0
        rows = self.token_rows(source, split)
        limit = self.config.eval_examples or int(rows.nrows())
        for batch in self.dataset(source, split, 64, training=False).take(-(-limit // 64)):
            inputs = t5.model_inputs(batch["inputs"], batch["decoder"], batch["labels"])
            predicted = np.argmax(np.asarray(t5.logits(model, inputs)), -1)
            labels = batch["labels"].numpy()
            real = labels != t5.PAD
            right += int(((predicted == labels) & real).sum())
            total += int(real.sum())
        return {"target_accuracy": right / max(total, 1), "target_tokens": float(total)}

    def held_out_examples(self, source, count):
        """(corrupted input strings, their target strings) of held-out texts."""
        batch = next(iter(self.dataset(source, "validation", count, training=False)))
        inputs = [t.decode() for t in self.detokenize(batch["inputs"]).numpy()]
        targets = [t.decode() for t in self.detokenize(batch["labels"]).numpy()]
        return inputs, [[t] for t in targets]

    def training_inputs(self, source, count):
        batch = next(iter(self.dataset(source, "train", count, training=False)))
        return [t.decode() for t in self.detokenize(batch["inputs"]).numpy()]
