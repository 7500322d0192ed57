"""The `translator` zoo entry: data, vocabularies, loss, metrics and what is served."""

import functools
import json
import os

import keras
import numpy as np
import tensorflow as tf

from zoo import fileio, registry, sources, workdir as workdirs
from zoo.datasets import dates
from zoo.entry import Servable, TrainingLength, ZooEntry
from zoo.text import spm
from zoo.text.losses import masked_mean, token_cross_entropy
from zoo.translator.config import TranslatorConfig
from zoo.translator.model import BOS, EOS, PAD, Seq2SeqTranslator

BUILTINS = {"dates": dates.split}
DECODING_FILE = "decoding.json"
# (beam size, length penalty) tried by `tune_decoding`; beam 1 ranks one hypothesis, so one
# penalty is enough for it.
DECODING_GRID = [(1, 0.0)] + [(b, lp) for b in (4, 8) for lp in (0.0, 0.6, 1.0, 1.5)]
VOCAB_SENTENCES = 500_000


@registry.register("translator")
class Translator(ZooEntry):
    """Encoder-decoder LSTM translator with attention, greedy and beam-search decoding.

    Data: a TSV of `source<TAB>target` pairs (extra columns ignored; a file is split 90/10
    with a fixed seed), `tfds:NAME[:SPLIT]` with supervised keys or `--config source_key=`,
    or `builtin:dates` (human-written dates to ISO 8601).

    Example:
        >>> import tempfile
        >>> entry = Translator(Translator.preset("tiny"), tempfile.mkdtemp())
        >>> data = sources.parse("builtin:dates")
        >>> entry.prepare(data)
        >>> model = entry.build_model()
        >>> len(entry.predict(model, ["3rd of March 2021"]))
        1
    """

    description = "Encoder-decoder LSTM translator with attention; greedy and beam search."
    config_class = TranslatorConfig
    default_data = "builtin:dates"
    training_only_assets = (DECODING_FILE,)
    validation_metric = ("chrf", "max")
    # Warmup, then cosine decay to 0 at the last step (or the end of a time budget); with
    # label smoothing (config) against the overconfidence of a small corpus
    # (WORKSPACE_NOTES.md, "Defaults").
    trainer_defaults = {"learning_rate": 2e-3, "warmup_fraction": 0.05, "lr_schedule": "cosine"}
    training_length = TrainingLength(steps=8000, min_epochs=2, max_epochs=40)

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self._pairs_cache = {}
        # Beam settings in use: the config's, until `on_training_end` chooses others.
        self.beam_size, self.length_penalty = config.beam_size, config.length_penalty
        self.source_tokenizer = self.target_tokenizer = None

    # Data.
    def _pairs(self, source, split):
        """(source, target) string pairs of an in-memory source."""
        key = (source, split)
        if key not in self._pairs_cache:
            if source.kind == "builtin":
                if source.name not in BUILTINS:
                    raise sources.DataError(
                        f"--data=builtin:{source.name}: unknown builtin data for the translator; "
                        f"builtins: {', '.join('builtin:' + b for b in BUILTINS)}."
                    )
                pairs = BUILTINS[source.name](split)
            elif self.config.validation_data and split not in ("train", sources.ALL):
                path = self.config.validation_data
                if not fileio.exists(path):
                    raise sources.DataError(f"--config validation_data={path}: no such file or folder.")
                pairs = self._file_pairs(path, None)
            else:
                pairs = self._file_pairs(source.name, None if self.config.validation_data and split == "train"
                                         else split)
            self._pairs_cache[key] = pairs
        return self._pairs_cache[key]

    def _file_pairs(self, path, split):
        files = [path]
        if fileio.isdir(path):
            files = [fileio.join(path, f) for f in fileio.listdir(path) if f.endswith(".tsv")]
            if not files:
                raise sources.DataError(f"--data={path}: the folder holds no .tsv files.")
        s, t = self.config.source_column, self.config.target_column
        rows = [r for f in files for r in sources.read_tsv(f, min_columns=max(s, t) + 1)]
        # A file is split 90/10 unless `validation_data` holds the held-out pairs (split None).
        return [(r[s], r[t]) for r in (rows if split is None else sources.split_rows(rows, split))]

    def _tfds(self, source, split):
        builder, name = sources.tfds_split(source, split)
        if self.config.source_key:
            keys = (self.config.source_key, self.config.target_key)
        elif builder.info.supervised_keys:
            keys = builder.info.supervised_keys
        else:
            raise sources.DataError(
                f"--data={source}: the dataset has no supervised keys; set "
                f"--config source_key=... --config target_key=... from {list(builder.info.features)}."
            )
        ds = builder.as_dataset(split=name, shuffle_files=False).map(lambda ex: (ex[keys[0]], ex[keys[1]]))
        # Without metadata (tfds.testing.mock_data) the split is counted by reading it.
        if name in builder.info.splits:
            return ds, builder.info.splits[name].num_examples
        return ds, int(ds.reduce(0, lambda count, _: count + 1))

    def _text_dataset(self, source, split):
        if source.kind == "tfds":
            return self._tfds(source, split)[0]
        pairs = self._pairs(source, split)
        return tf.data.Dataset.from_tensor_slices(([p[0] for p in pairs], [p[1] for p in pairs]))

    def num_examples(self, source, split):
        if source.kind == "tfds":
            return self._tfds(source, split)[1]
        return len(self._pairs(source, split))

    def _texts(self, source, split, limit=None):
        """Raw (sources, targets) lists, at most `limit` of them."""
        if source.kind != "tfds":
            pairs = self._pairs(source, split)[:limit or None]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        pairs = list(self._text_dataset(source, split).take(limit or -1).as_numpy_iterator())
        return [p[0].decode() for p in pairs], [p[1].decode() for p in pairs]

    def prepare(self, source):
        src, tgt = self._texts(source, "train", limit=VOCAB_SENTENCES)
        fileio.makedirs(self.assets_dir)
        spm.train(src, self.config.source_vocab_size, os.path.join(self.assets_dir, "source.model"))
        # Targets stay byte-exact so that decoded text compares equal to references.
        spm.train(tgt, self.config.target_vocab_size, os.path.join(self.assets_dir, "target.model"),
                  normalization="identity")
        self.load_assets()

    def load_assets(self):
        self.source_tokenizer = spm.load(os.path.join(self.assets_dir, "source.model"))
        self.target_tokenizer = spm.load(os.path.join(self.assets_dir, "target.model"))
        path = os.path.join(self.assets_dir, DECODING_FILE)
        if fileio.exists(path):
            chosen = json.loads(fileio.read_text(path))
            self.beam_size, self.length_penalty = chosen["beam_size"], chosen["length_penalty"]

    def on_training_end(self, model, source):
        """Chooses the beam size and length penalty by validation chrF (`tune_decoding`)."""
        import sacrebleu

        c = self.config
        if not c.tune_decoding or c.decode != "beam":
            return {}
        src, refs = self._texts(source, "validation", limit=c.eval_examples)
        scores = {}
        for beam_size, length_penalty in DECODING_GRID:
            self.beam_size, self.length_penalty = beam_size, length_penalty
            self._translate_fn.cache_clear()
            hyps = self.translate(model, src)
            scores[(beam_size, length_penalty)] = sacrebleu.corpus_chrf(hyps, [refs]).score
        (beam_size, length_penalty), best = max(scores.items(), key=lambda kv: kv[1])
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self._translate_fn.cache_clear()
        table = {f"beam{b}_lp{lp:g}": round(s, 3) for (b, lp), s in scores.items()}
        workdirs.write_json(os.path.join(self.assets_dir, DECODING_FILE),
                    {"beam_size": beam_size, "length_penalty": length_penalty, "chrf": best,
                     "examples": len(refs), "tried": table})
        return {"chrf": best, "beam_size": beam_size, "length_penalty": length_penalty}

    def encode_sources(self, texts):
        """Source ids [B, max_source_length] for a batch of strings."""
        ids = self.source_tokenizer.tokenize(texts)
        return ids.to_tensor(PAD, shape=[None, self.config.max_source_length])

    def _encode_batch(self, src, tgt):
        length = self.config.max_target_length
        ids = self.target_tokenizer.tokenize(tgt)[:, : length - 1]
        column = tf.ones_like(ids[:, :1])
        sequence = tf.concat([column * BOS, ids, column * EOS], axis=1)
        return {
            "source": self.encode_sources(src),
            "target_in": sequence[:, :-1].to_tensor(PAD, shape=[None, length]),
            "labels": sequence[:, 1:].to_tensor(PAD, shape=[None, length]),
        }

    def dataset(self, source, split, batch_size, training, seed=0):
        ds = self._text_dataset(source, split)
        if source.kind != "tfds":
            ds = ds.cache()
        if training:
            ds = ds.shuffle(min(self.num_examples(source, split), 50_000), seed=seed).repeat()
        ds = ds.batch(batch_size, drop_remainder=training)
        return ds.map(self._encode_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Model and loss.
    def build_model(self):
        c = self.config
        return Seq2SeqTranslator(
            source_vocab_size=spm.vocab_size(os.path.join(self.assets_dir, "source.model")),
            target_vocab_size=spm.vocab_size(os.path.join(self.assets_dir, "target.model")),
            embedding_dim=c.embedding_dim, units=c.units, num_layers=c.num_layers,
            bidirectional=c.bidirectional, attention=c.attention, dropout=c.dropout,
            name="translator",
        )

    def loss_and_logits(self, model, batch, training):
        """Mean token cross-entropy of each example, padding excluded (label-smoothed when
        training), with the logits and the mask of the target positions."""
        logits = model({"source": batch["source"], "target_in": batch["target_in"]}, training=training)
        logits = keras.ops.cast(logits, "float32")  # the loss in float32 under mixed precision
        labels = batch["labels"]
        mask = keras.ops.cast(keras.ops.not_equal(labels, PAD), logits.dtype)
        ce = token_cross_entropy(labels, logits, self.config.label_smoothing if training else 0.0)
        return masked_mean(ce, mask), logits, mask

    # Decoding.
    def decode_ids(self, model, ids, method=None):
        c = self.config
        if (method or c.decode) == "greedy":
            return model.greedy_decode(ids, c.max_target_length)
        return model.beam_search(ids, c.max_target_length, self.beam_size, self.length_penalty)

    def detokenize(self, ids):
        """Strings for decoded ids [B, T], each cut at its first end or pad token."""
        ids = tf.convert_to_tensor(ids)
        keep = tf.cast(tf.logical_and(ids != EOS, ids != PAD), tf.int32)
        lengths = tf.reduce_sum(tf.math.cumprod(keep, axis=1), axis=1)
        return self.target_tokenizer.detokenize(tf.RaggedTensor.from_tensor(ids, lengths=lengths))

    @functools.lru_cache(maxsize=None)
    def _translate_fn(self, model, method):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def translate(inputs):
            ids = self.decode_ids(model, self.encode_sources(inputs), method)
            return {"translations": self.detokenize(ids)}

        return translate

    def translate(self, model, texts, method=None, batch_size=64):
        fn = self._translate_fn(model, method or self.config.decode)
        out = []
        for i in range(0, len(texts), batch_size):
            out += [t.decode() for t in fn(tf.constant(texts[i:i + batch_size]))["translations"].numpy()]
        return out

    # Results.
    def evaluate(self, model, source, split):
        import sacrebleu

        src, refs = self._texts(source, split, limit=self.config.eval_examples)
        hyps = self.translate(model, src)
        return {
            "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)])),
            "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
            "examples": len(refs),
        }

    def predict(self, model, inputs):
        return self.translate(model, list(inputs))

    def resources(self):
        return {"source_tokenizer": self.source_tokenizer, "target_tokenizer": self.target_tokenizer}

    task_metric = "chrf"

    def held_out_examples(self, source, count):
        return self._texts(source, "validation", limit=count)

    def training_inputs(self, source, count):
        return self._texts(source, "train", limit=count)[0]

    def score(self, predictions, references):
        import sacrebleu

        return sacrebleu.corpus_chrf(list(predictions), [list(references)]).score

    def serving_functions(self, model):
        c = self.config
        ids_spec = tf.TensorSpec([1, c.max_source_length], tf.int32, name="source")

        def tokens_fn(method):
            @tf.function(input_signature=[ids_spec])
            def tokens(source):
                return {"tokens": self.decode_ids(model, source, method)}

            return Servable(
                tokens, tflite=True, tpu=(method == c.decode),
                encode=lambda texts: {"source": self.encode_sources(tf.constant(texts)).numpy()},
                decode=lambda out: [t.decode() for t in self.detokenize(out["tokens"]).numpy()],
            )

        return {
            "serving_default": Servable(self._translate_fn(model, c.decode)),
            "greedy": Servable(self._translate_fn(model, "greedy")),
            "beam_search": Servable(self._translate_fn(model, "beam")),
            "greedy_tokens": tokens_fn("greedy"),
            "beam_search_tokens": tokens_fn("beam"),
        }
