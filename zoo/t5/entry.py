"""The `t5` zoo entry: text-to-text pairs, a SentencePiece vocabulary with T5's ids and
sentinels, the loss, multi-reference metrics and what is served."""

import dataclasses
import functools
import json
import os

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from zoo import fileio, registry, sources
from zoo import workdir as workdirs
from zoo.config import ConfigError, copy_backbone
from zoo.datasets import dates
from zoo.entry import Servable, TrainingLength, ZooEntry
from zoo.t5 import model as t5
from zoo.t5.config import ARCHITECTURE, T5Config
from zoo.text import labelled, metrics, slots, spm
from zoo.text.losses import masked_mean, token_cross_entropy

VOCABULARY = "spm.model"
SENTINELS = 100
# What a copied backbone must agree on (keras-hub's config stores `activation` in its own form).
BACKBONE_KEYS = tuple(k for k in ARCHITECTURE if k != "activation")
VOCAB_TEXTS = 500_000
BUILTINS = {"dates": dates.split}
SAMPLES_LOGGED = 3


def sentinel(index):
    """T5's sentinel piece number `index` (`<extra_id_0>` replaces the first dropped span)."""
    return f"<extra_id_{index}>"


@registry.register("t5")
class T5TextToText(ZooEntry):
    """T5 (keras-hub's `T5Backbone`) for any text-to-text task: greedy, beam search, sampling.

    Data: CSV/TSV (header) or JSONL with `input` and `target` columns (`input_column`,
    `target_column`), or `builtin:dates`. Several rows may share one input (several
    references): a file is split 90/10 by input, never by row, and an input's references are
    scored together. The vocabulary is learned from the training inputs and targets, or taken
    from `--preset=PATH` (a local keras-hub T5 preset).

    Example:
        >>> import tempfile
        >>> entry = T5TextToText(T5TextToText.preset("tiny"), tempfile.mkdtemp())
        >>> entry.prepare(sources.parse("builtin:dates"))
        >>> len(entry.predict(entry.build_model(), ["3rd of March 2021"]))
        1
    """

    description = "T5 encoder-decoder transformer (keras-hub) for text-to-text; greedy, beam search, sampling."
    config_class = T5Config
    default_data = "builtin:dates"
    validation_metric = ("bleu", "max")
    task_metric = "chrf"
    trainer_defaults = {"optimizer": "adamw", "learning_rate": 1e-3, "warmup_fraction": 0.05,
                        "lr_schedule": "cosine", "weight_decay": 0.01, "batch_size": 32, "clipnorm": 1.0}
    training_length = TrainingLength(steps=6000, min_epochs=2, max_epochs=100)

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self._cache = {}
        self.tokenizer = None
        self.sentinel_ids = None
        self.pieces = None
        self.delexicalized = tuple(k.strip() for k in config.delexicalize.split(",") if k.strip())

    # Data.
    def _read(self, path, input_column=None, target_column=None):
        c = self.config
        rows = labelled.read(path, input_column or c.input_column, target_column or c.target_column,
                             require_label=True, names=("input", "target"))
        return [(e.text, e.label) for e in rows.examples]

    def _tfds_pairs(self, source, split, input_column=None, target_column=None):
        builder, name = sources.tfds_split(source, split)
        features = builder.info.features
        keys = (input_column or self.config.input_column, target_column or self.config.target_column)
        if not all(k in features for k in keys):
            if not builder.info.supervised_keys:
                raise sources.DataError(
                    f"--data={source}: no features {keys[0]!r} and {keys[1]!r} and no supervised keys; set "
                    f"--config input_column=... target_column=... from {list(features)}.")
            keys = builder.info.supervised_keys
        dataset = builder.as_dataset(split=name, shuffle_files=False)
        return [(ex[keys[0]].decode("utf-8"), ex[keys[1]].decode("utf-8")) for ex in dataset.as_numpy_iterator()]

    def _source_pairs(self, source, split, input_column=None, target_column=None, validation_data=""):
        if source.kind == "builtin":
            if source.name not in BUILTINS:
                raise sources.DataError(f"--data=builtin:{source.name}: unknown builtin data for t5; "
                                        f"builtins: {', '.join('builtin:' + b for b in BUILTINS)}.")
            return BUILTINS[source.name](split)
        if source.kind == "tfds":
            return self._tfds_pairs(source, split, input_column, target_column)
        if validation_data and split != sources.ALL:
            path = source.name if split == "train" else validation_data
            if not fileio.exists(path):
                raise sources.DataError(f"--config validation_data={path}: no such file or folder.")
            return self._read(path, input_column, target_column)
        return split_by_input(self._read(source.name, input_column, target_column), split)

    def mixture(self, source):
        """The parts of a mixture file (`--data=MIX.json`), or None for a single source."""
        if source.kind != "file" or not source.name.endswith(".json"):
            return None
        key = ("mixture", source.name)
        if key not in self._cache:
            self._cache[key] = read_mixture(source.name)
        return self._cache[key]

    def pairs(self, source, split):
        """(input, target) string pairs of a split; the rows of one input stay together. A
        mixture's inputs carry each part's prefix."""
        key = (str(source), split)
        if key not in self._cache:
            parts = self.mixture(source)
            if parts is None:
                pairs = self._source_pairs(source, split, validation_data=self.config.validation_data)
            else:
                pairs = [pair for part in parts for pair in self.part_pairs(part, split)]
            self._cache[key] = pairs
        return self._cache[key]

    def part_pairs(self, part, split):
        """The pairs of one part of a mixture, its prefix before each input."""
        key = ("part", part.where, split)
        if key not in self._cache:
            pairs = self._source_pairs(part.source, split, part.input_column, part.target_column,
                                       part.validation_data)
            self._cache[key] = [(part.prefix + i, t) for i, t in pairs]
        return self._cache[key]

    def num_examples(self, source, split):
        return len(self.pairs(source, split))

    def grouped(self, source, split, limit=None):
        """(inputs, references): each distinct input once, with all its targets."""
        references = {}
        for text, target in self.pairs(source, split):
            references.setdefault(text, []).append(target)
        inputs = list(references)[:limit or None]
        return inputs, [references[i] for i in inputs]

    # Vocabulary.
    @property
    def vocabulary_path(self):
        return os.path.join(self.assets_dir, VOCABULARY)

    def prepare(self, source):
        fileio.makedirs(self.assets_dir)
        c = self.config
        if c.init_from:
            fileio.copy(fileio.join(self._pretrained_workdir()[0], "assets", VOCABULARY), self.vocabulary_path)
        elif c.preset_dir:
            preset_vocabulary = fileio.join(c.preset_dir, "assets", "tokenizer", "vocabulary.spm")
            if not fileio.isfile(preset_vocabulary):
                raise ConfigError(f"--preset={c.preset_dir}: no {preset_vocabulary}; expected a keras-hub T5 "
                                  f"preset directory.")
            fileio.copy(preset_vocabulary, self.vocabulary_path)
        else:
            pairs = self.training_pairs(self.pairs(source, "train")[:VOCAB_TEXTS])
            # Targets are learned byte-exact (no normalization), so outputs compare equal to
            # references; inputs share the vocabulary, as in T5.
            spm.train([c.prefix + p[0] for p in pairs] + [p[1] for p in pairs], c.vocabulary_size,
                      self.vocabulary_path, normalization="identity", special_ids=spm.T5_IDS,
                      user_symbols=[sentinel(i) for i in range(SENTINELS)]
                      + [slots.placeholder(k) for k in self.delexicalized])
        # Bad held-out rows fail now, not after the first epoch of training.
        self.pairs(source, "validation")
        self.load_assets()

    def load_assets(self):
        self.tokenizer = spm.load(self.vocabulary_path)
        processor = spm.processor(self.vocabulary_path)
        # A preset's embedding may have more rows than its vocabulary has pieces (t5-small:
        # 32,128 for 32,100); a learned vocabulary sizes the model itself.
        self.vocabulary_size = self.config.vocabulary_size if self.config.preset_dir else processor.vocab_size()
        for name, want in (("pad", t5.PAD), ("end", t5.EOS), ("unknown", t5.UNK)):
            got = {"pad": processor.pad_id(), "end": processor.eos_id(), "unknown": processor.unk_id()}[name]
            if got != want:
                raise ConfigError(f"{self.vocabulary_path}: the {name} id is {got}; T5 needs {want}.")
        self.pieces = processor.vocab_size()
        self.sentinel_ids = sentinel_ids(processor, self.vocabulary_size)

    # Token ids.
    def encode_inputs(self, texts, static=True):
        """Input ids [B, max_input_length] of a batch of strings (prefix added, end id last);
        with `static=False` [B, the batch's longest], which the served string signatures use:
        every decoding step attends over the input, and padding it to `max_input_length`
        made batch-32 generation 2.5x costlier per token on E2E."""
        c = self.config
        if c.prefix:
            texts = tf.strings.join([c.prefix, texts])
        ids = self.tokenizer.tokenize(texts)[:, : c.max_input_length - 1]
        ids = tf.concat([ids, tf.ones_like(ids[:, :1]) * t5.EOS], axis=1)
        return ids.to_tensor(t5.PAD, shape=[None, c.max_input_length] if static else None)

    def encode_targets(self, texts):
        """(decoder inputs, labels) [B, max_target_length]: the start id then the target, and
        the target then the end id."""
        length = self.config.max_target_length
        ids = self.tokenizer.tokenize(texts)[:, : length - 1]
        column = tf.ones_like(ids[:, :1])
        decoder = tf.concat([column * t5.START, ids], axis=1).to_tensor(t5.PAD, shape=[None, length])
        labels = tf.concat([ids, column * t5.EOS], axis=1).to_tensor(t5.PAD, shape=[None, length])
        return decoder, labels

    def token_ids(self, source, split):
        """Every pair of a split tokenized once: (inputs, decoder inputs, labels) arrays."""
        return self._pair_ids(self.pairs(source, split), (str(source), split))

    def training_pairs(self, pairs):
        """`pairs` as the model learns them: with `delexicalize`, the chosen attributes'
        values replaced by placeholders in the inputs and the targets."""
        if not self.delexicalized:
            return pairs
        keys = self.delexicalized
        return [(slots.delexicalize(i, keys), slots.delexicalize_target(i, t, keys)) for i, t in pairs]

    def _pair_ids(self, pairs, name, chunk=4096):
        key = ("ids", name)
        if key not in self._cache:
            pairs = self.training_pairs(pairs)
            parts = []
            for i in range(0, len(pairs), chunk):
                part = pairs[i:i + chunk]
                decoder, labels = self.encode_targets(tf.constant([p[1] for p in part]))
                parts.append((self.encode_inputs(tf.constant([p[0] for p in part])).numpy(), decoder.numpy(),
                              labels.numpy()))
            self._cache[key] = tuple(np.concatenate(column) for column in zip(*parts))
        return self._cache[key]

    def _trim(self, ids):
        """Ids [B, L] cut after their last non-pad column (rounded up to 8), unless the
        trainer needs static shapes (a pad costs as much as a token)."""
        if self.static_shapes:
            return ids
        length = tf.shape(ids)[1]
        used = tf.reduce_max(tf.where(ids != t5.PAD, tf.range(1, length + 1), 0))
        return ids[:, : tf.clip_by_value((used + 7) // 8 * 8, 1, length)]

    def _batch(self, inputs, decoder, labels):
        labels = self._trim(labels)
        decoder = decoder[:, : tf.shape(labels)[1]]
        return {"inputs": self._trim(inputs), "decoder": decoder, "labels": labels}

    def dataset(self, source, split, batch_size, training, seed=0):
        parts = self.mixture(source)
        if parts is not None and training:
            # T5's multi-task mixing: each example comes from part i with probability
            # rate_i / sum(rates), drawn from `seed` (the iterator's checkpoint keeps the draw).
            streams = [tf.data.Dataset.from_tensor_slices(self._pair_ids(self.part_pairs(part, split), part.where))
                       .shuffle(min(len(self.part_pairs(part, split)), 100_000), seed=seed + i).repeat()
                       for i, part in enumerate(parts)]
            total = sum(part.rate for part in parts)
            ds = tf.data.Dataset.sample_from_datasets(streams, [part.rate / total for part in parts], seed=seed)
        else:
            ds = tf.data.Dataset.from_tensor_slices(self.token_ids(source, split))
            if training:
                ds = ds.shuffle(min(self.num_examples(source, split), 100_000), seed=seed).repeat()
        ds = ds.batch(batch_size, drop_remainder=training)
        return ds.map(self._batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Model and loss.
    def build_model(self):
        c = self.config
        return t5.build(self.vocabulary_size, c.num_layers, c.num_heads, c.hidden_dim, c.intermediate_dim,
                        c.key_value_dim, c.dropout, c.activation, c.use_gated_activation, c.tie_embedding_weights)

    def _pretrained_workdir(self):
        return workdirs.pretrained_workdir(self.config.init_from, ("t5_pretrain", "t5"), self.config, ARCHITECTURE[1:])

    def initialize(self, model):
        if self.config.init_from:
            path, cls, model_config = self._pretrained_workdir()
            source, latest = workdirs.pretrained_model(path, cls, model_config)
            copy_backbone(source.backbone, model.backbone, BACKBONE_KEYS, f"--init_from={path}")
            print(f"[init] weights from {latest}", flush=True)
        elif self.config.preset_dir:
            pretrained = keras_hub.models.T5Backbone.from_preset(self.config.preset_dir)
            copy_backbone(pretrained, model.backbone, BACKBONE_KEYS, f"--preset={self.config.preset_dir}")

    def loss_and_logits(self, model, batch, training):
        """Mean token cross-entropy of each example, padding excluded (label-smoothed when
        training), with the logits and the mask of the target positions."""
        inputs = t5.model_inputs(batch["inputs"], batch["decoder"], batch["labels"])
        logits = t5.logits(model, inputs, training=training)
        labels = batch["labels"]
        mask = keras.ops.cast(keras.ops.not_equal(labels, t5.PAD), logits.dtype)
        ce = token_cross_entropy(labels, logits, self.config.label_smoothing if training else 0.0)
        return masked_mean(ce, mask), logits, mask

    # Generation.
    def generate_ids(self, model, input_ids, method=None, seed=None, temperature=None, top_k=None, top_p=None):
        c = self.config
        method = method or c.decode
        if method == "greedy":
            return t5.greedy(model, input_ids, c.max_target_length)
        if method == "beam":
            return t5.beam(model, input_ids, c.max_target_length, c.beam_size, c.length_penalty)
        return t5.sample(model, input_ids, c.max_target_length,
                         c.sample_seed if seed is None else seed, c.temperature if temperature is None else temperature,
                         c.top_k if top_k is None else top_k, c.top_p if top_p is None else top_p)

    def detokenize(self, ids):
        """Strings for generated ids [B, T], each cut at its first end or pad id."""
        ids = self.in_vocabulary(tf.convert_to_tensor(ids))
        keep = tf.cast(tf.logical_and(ids != t5.EOS, ids != t5.PAD), tf.int32)
        lengths = tf.reduce_sum(tf.math.cumprod(keep, axis=1), axis=1)
        return self.tokenizer.detokenize(tf.RaggedTensor.from_tensor(ids, lengths=lengths))

    @functools.lru_cache(maxsize=None)
    def _generate_fn(self, model, method):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def generate(inputs):
            ids = self.generate_ids(model, self.encode_inputs(self.delexicalize(inputs), static=False), method)
            return {"outputs": self.relexicalize(inputs, self.detokenize(ids))}

        return generate

    @functools.lru_cache(maxsize=None)
    def _sample_fn(self, model):
        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="inputs"), tf.TensorSpec([], tf.int32, name="seed"),
            tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p")])
        def sample(inputs, seed, temperature, top_k, top_p):
            input_ids = self.encode_inputs(self.delexicalize(inputs), static=False)
            ids = self.generate_ids(model, input_ids, "sample", seed, temperature, top_k, top_p)
            return {"outputs": self.relexicalize(inputs, self.detokenize(ids))}

        return sample

    def delexicalize(self, texts):
        """[B] input strings with `delexicalize`'s values replaced (in the graph)."""
        return slots.tf_delexicalize(texts, self.delexicalized) if self.delexicalized else texts

    def relexicalize(self, texts, outputs):
        """Generated [B] strings with the placeholders replaced by each input's values."""
        return slots.tf_relexicalize(texts, outputs, self.delexicalized) if self.delexicalized else outputs

    @functools.lru_cache(maxsize=None)
    def _xla_ids_fn(self, model, method):
        return tf.function(lambda input_ids: self.generate_ids(model, input_ids, method), jit_compile=True)

    def generate(self, model, texts, method=None, batch_size=64):
        """Generated strings for a list of input strings. With the trainer's `jit_compile` on,
        the decoding loop runs under XLA (tokenization stays outside: its ops have no XLA
        kernels) on `batch_size` rows padded to a multiple of 32 tokens, so it compiles once
        per length bucket (at most 4 for 128 tokens), not once per batch."""
        method = method or self.config.decode
        out = []
        for i in range(0, len(texts), batch_size):
            batch = tf.constant(texts[i:i + batch_size])
            if self.jit_compile:
                input_ids = self.encode_inputs(self.delexicalize(batch), static=False)
                rows, width = input_ids.shape
                bucket = min(self.config.max_input_length, -(-width // 32) * 32)
                # The last, shorter batch repeats its first row rather than compile again.
                input_ids = tf.concat([input_ids, tf.repeat(input_ids[:1], batch_size - rows, axis=0)], axis=0)
                input_ids = tf.pad(input_ids, [[0, 0], [0, bucket - width]], constant_values=t5.PAD)
                ids = self._xla_ids_fn(model, method)(input_ids)[:rows]
                outputs = self.relexicalize(batch, self.detokenize(ids))
            else:
                outputs = self._generate_fn(model, method)(batch)["outputs"]
            out += [t.decode() for t in outputs.numpy()]
        return out

    # Results.
    def evaluate(self, model, source, split):
        c = self.config
        inputs, references = self.grouped(source, split, c.eval_examples)
        outputs = self.generate(model, inputs)
        result = metrics.generation_scores(outputs, references)
        keys = tuple(k.strip() for k in c.slot_keys.split(",") if k.strip())
        if keys:
            stated = metrics.slot_accuracy(inputs, outputs, keys)
            if stated is not None:
                result["slot_accuracy"] = stated
        result["examples"] = len(inputs)
        parts = self.mixture(source)
        for part in parts or ():
            # Each part's own figures beside the mixture's (its held-out inputs only).
            mine = {i for i, _ in self.part_pairs(part, split)}
            chosen = [k for k, text in enumerate(inputs) if text in mine]
            if chosen:
                scores = metrics.generation_scores([outputs[k] for k in chosen], [references[k] for k in chosen])
                result[f"bleu/{part.name}"], result[f"chrf/{part.name}"] = scores["bleu"], scores["chrf"]
        for text, output in list(zip(inputs, outputs))[:SAMPLES_LOGGED]:
            print(f"[sample] {text!r} -> {output!r}", flush=True)
        return result

    def predict(self, model, inputs):
        return self.generate(model, list(inputs))

    def resources(self):
        return {"tokenizer": self.tokenizer}

    def held_out_examples(self, source, count):
        return self.grouped(source, "validation", count)

    def training_inputs(self, source, count):
        return [p[0] for p in self.pairs(source, "train")[:count]]

    def score(self, predictions, references):
        references = [[r] if isinstance(r, str) else r for r in references]
        return metrics.generation_scores(predictions, references)["chrf"]

    def serving_functions(self, model):
        c = self.config
        ids_spec = tf.TensorSpec([1, c.max_input_length], tf.int32, name="inputs")

        def tokens_fn(method):
            @tf.function(input_signature=[ids_spec])
            def tokens(inputs):
                return {"tokens": self.generate_ids(model, inputs, method)}

            return Servable(
                tokens, tflite=True, tpu=(method == c.decode),
                encode=lambda texts: {"inputs": self.encode_inputs(self.delexicalize(tf.constant(texts))).numpy()},
                decode=lambda out: [t.decode() for t in self.detokenize(out["tokens"]).numpy()],
            )

        @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="text")])
        def generate_text(text):
            return {"text": self._generate_one(model, text)}

        servables = {
            "serving_default": Servable(self._generate_fn(model, c.decode)),
            "greedy": Servable(self._generate_fn(model, "greedy")),
            "beam_search": Servable(self._generate_fn(model, "beam")),
            "sample": Servable(self._sample_fn(model)),
            "greedy_tokens": tokens_fn("greedy"),
            "beam_search_tokens": tokens_fn("beam"),
        }
        if not self.delexicalized:
            # With `delexicalize`, text in and out needs regular expressions, which TFLite
            # lacks: phones then run a *_tokens model and put the values back themselves.
            servables["generate_text"] = Servable(
                generate_text, tflite=True, encode=lambda texts: {"text": np.array(texts, dtype=object)},
                decode=lambda out: [t.decode() if isinstance(t, bytes) else str(t) for t in out["text"]],
                quantizations=("none", "float16", "dynamic"),
                quantization_note="int8 calibration runs the model in TFLite's calibrator, which cannot load "
                                  "the tokenizer's custom ops; use the *_tokens models for int8")
        return servables

    def _generate_one(self, model, text):
        """String [1] -> generated string [1] with no ragged or string-joining ops (TFLite has
        neither as builtins): the prefix is tokenized on its own, beside the text, and the
        tokenizer's ops are tensorflow-text's FastSentencepiece kernels."""
        c = self.config
        ids = self.tokenizer.tokenize(text).flat_values
        if c.prefix:
            prefix = self.tokenizer.tokenize(tf.constant([c.prefix])).flat_values
            ids = tf.concat([prefix, ids], axis=0)
        ids = tf.concat([ids[: c.max_input_length - 1], [t5.EOS]], axis=0)
        ids = tf.reshape(tf.pad(ids, [[0, c.max_input_length - tf.shape(ids)[0]]]), [1, c.max_input_length])
        tokens = self.generate_ids(model, ids)[0]
        # Cut at the first end or pad id (a minimum, not a cumulative product: TFLite has no
        # builtin Cumprod).
        positions = tf.range(tf.shape(tokens)[0])
        length = tf.reduce_min(tf.where((tokens == t5.EOS) | (tokens == t5.PAD), positions, tf.shape(tokens)[0]))
        return tf.reshape(self.tokenizer.detokenize(self.in_vocabulary(tokens[:length])), [1])

    def in_vocabulary(self, ids):
        """`ids` with the embedding's rows that have no piece (a preset's spare rows: t5-small
        has 32,128 for 32,100 pieces; sentinels past a preset vocabulary's pieces) read as the
        unknown id: SentencePiece's detokenizer fails on an id it does not have."""
        return tf.where(ids < self.pieces, ids, tf.cast(t5.UNK, ids.dtype))


def sentinel_ids(processor, embedding_rows):
    """Ids of `<extra_id_0>` ... `<extra_id_99>`: the vocabulary's own pieces when it has them
    (the zoo's learned vocabularies do), else T5's convention for a vocabulary without them
    (Google's t5 SentencePiece models have none; `<extra_id_N>` is id pieces + 99 - N, as in
    Hugging Face's T5 tokenizer and the t5 library), which needs that many spare embedding rows.
    None when there are neither pieces nor rows: such a vocabulary cannot pretrain."""
    ids = [processor.piece_to_id(sentinel(i)) for i in range(SENTINELS)]
    if all(i != processor.unk_id() for i in ids):
        return ids
    pieces = processor.vocab_size()
    if pieces + SENTINELS > embedding_rows:
        return None
    return [pieces + SENTINELS - 1 - i for i in range(SENTINELS)]


def split_by_input(pairs, split, seed=0):
    """The `train` or `validation` rows of `pairs`, split 90/10 by distinct input with a fixed
    seed, so no input is on both sides.

    Example:
        >>> rows = [(f"in{i % 20}", f"out{i}") for i in range(60)]
        >>> train, held = split_by_input(rows, "train"), split_by_input(rows, "validation")
        >>> len(train) + len(held), {a for a, _ in train} & {a for a, _ in held}
        (60, set())
    """
    distinct = list(dict.fromkeys(p[0] for p in pairs))
    chosen = set(sources.split_rows(distinct, split, seed))
    return [p for p in pairs if p[0] in chosen]


@dataclasses.dataclass(frozen=True)
class MixturePart:
    """One source of a mixture file: its data, prefix and mixing rate."""

    source: sources.Source
    prefix: str
    rate: float
    name: str
    where: str  # "file: sources[i]", for messages and cache keys
    input_column: str = ""
    target_column: str = ""
    validation_data: str = ""


MIXTURE_KEYS = {"data", "prefix", "rate", "name", "input_column", "target_column", "validation_data"}


def read_mixture(path):
    """The parts of a mixture file: `{"sources": [{"data": PATH_OR_TFDS, "prefix": "...",
    "rate": 1.0, "name": "...", "input_column": ..., "target_column": ...,
    "validation_data": ...}, ...]}`. Relative paths are read from the file's folder.

    Raises:
        DataError: naming the file and the entry (`sources[1].rate`) that is wrong.

    Example:
        >>> import json, os, tempfile
        >>> folder = tempfile.mkdtemp(); _ = open(os.path.join(folder, "a.tsv"), "w").write("input\\ttarget\\n")
        >>> path = os.path.join(folder, "mix.json")
        >>> _ = open(path, "w").write(json.dumps({"sources": [{"data": "a.tsv", "rate": 2}]}))
        >>> [(p.name, p.rate, p.prefix) for p in read_mixture(path)]
        [('a', 2.0, '')]
    """
    try:
        spec = json.loads(fileio.read_text(path))
    except json.JSONDecodeError as e:
        raise sources.DataError(f"{path}:{e.lineno}: not JSON ({e.msg}).") from None
    entries = spec.get("sources") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise sources.DataError(f"{path}: expected {{\"sources\": [{{\"data\": ..., \"prefix\": ..., "
                                f"\"rate\": ...}}, ...]}} with at least one source.")
    folder = fileio.dirname(fileio.absolute(path))
    parts, names = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: sources[{i}]"
        if not isinstance(entry, dict) or "data" not in entry:
            raise sources.DataError(f"{where}: expected an object with a \"data\" key.")
        unknown = sorted(set(entry) - MIXTURE_KEYS)
        if unknown:
            raise sources.DataError(f"{where}: unknown keys {unknown}; expected some of {sorted(MIXTURE_KEYS)}.")
        rate = entry.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or rate != rate:
            raise sources.DataError(f"{where}.rate: expected a positive number, got {rate!r}.")
        data = str(entry["data"])
        if ":" not in data.split(os.sep)[0] and not os.path.isabs(data):
            data = fileio.join(folder, data)
        try:
            source = sources.parse(data)
        except sources.DataError as e:
            raise sources.DataError(f"{where}.data: {e}") from None
        if source.kind == "file" and source.name.endswith(".json"):
            raise sources.DataError(f"{where}.data: a mixture cannot hold another mixture.")
        name = str(entry.get("name") or os.path.splitext(os.path.basename(source.name))[0])
        if name in names:
            raise sources.DataError(f"{where}.name: {name!r} names two sources; give each its own \"name\".")
        names.add(name)
        validation = str(entry.get("validation_data", ""))
        if validation and fileio.is_local(validation) and not os.path.isabs(validation):
            validation = fileio.join(folder, validation)
        parts.append(MixturePart(source, str(entry.get("prefix", "")), float(rate), name, where,
                                 str(entry.get("input_column", "")), str(entry.get("target_column", "")),
                                 validation))
    return parts
