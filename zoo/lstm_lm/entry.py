"""The `lstm_lm` zoo entry: text windows, a character or SentencePiece vocabulary, bits per
character on the validation text, sampling, and what is served."""

import functools
import math
import os

import keras
import numpy as np
import tensorflow as tf

from zoo import fileio, registry, sources
from zoo.datasets import dates
from zoo.entry import Servable, TrainingLength, ZooEntry
from zoo.lstm_lm import vocabulary
from zoo.lstm_lm.config import LstmLmConfig
from zoo.lstm_lm.model import PAD, SEP, LstmLanguageModel
from zoo.text.losses import masked_mean, token_cross_entropy

# Streams the validation text is cut into to be scored in one batch (each carries its state
# over the whole of its part).
SCORE_STREAMS = 16
HELD_OUT_PROMPT = 100  # characters of each held-out prompt the exporter checks with (at most)


def _dates_text(split):
    """`builtin:dates`: one "human date = ISO date" line per date of the translator's split."""
    return "".join(f"{human} = {iso}\n" for human, iso in dates.split(split))


BUILTINS = {"dates": _dates_text}


def read_text_file(path):
    """The UTF-8 text of `path` (any filesystem), or a DataError naming the file."""
    data = fileio.read_bytes(path)
    nul = data.find(b"\0", 0, 1 << 20)
    if nul >= 0:
        raise sources.DataError(f"{path}: a binary file (NUL byte at offset {nul}); expected UTF-8 text.")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not text
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise sources.DataError(f"{path}:{line}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                                f"expected UTF-8 text.") from None
    if not text.strip():
        raise sources.DataError(f"{path}: empty; expected text to learn from.")
    return text


def split_tail(documents, split, fraction):
    """The first `1 - fraction` of the documents' characters (`train`) or the rest
    (`validation`): a document that straddles the cut is cut in two. All of them for `ALL`."""
    if split == sources.ALL:
        return list(documents)
    total = sum(len(d) for d in documents)
    cut = total - max(1, int(round(total * fraction)))
    parts, position = [], 0
    for document in documents:
        start, end = position, position + len(document)
        position = end
        piece = document[:max(0, cut - start)] if split == "train" else document[max(0, cut - start):]
        if piece:
            parts.append(piece)
    return parts


def first_characters(documents, count):
    """The documents cut after their first `count` characters (0: all of them)."""
    if not count:
        return documents
    out = []
    for document in documents:
        if count <= 0:
            break
        out.append(document[:count])
        count -= len(out[-1])
    return out


def token_nats(labels, logits):
    """Each position's cross-entropy in nats [B, T], 0 where the label is padding."""
    ce = token_cross_entropy(labels, keras.ops.cast(logits, "float32"))
    return ce * keras.ops.cast(keras.ops.not_equal(labels, PAD), "float32")


def _flat(states):
    """[h, c] pairs per layer as one list [h_0, c_0, h_1, ...]."""
    return [s for pair in states for s in pair]


@registry.register("lstm_lm")
class LstmLanguageModelEntry(ZooEntry):
    """A stacked-LSTM language model over characters or SentencePiece pieces, sampled with a
    temperature, top-k and top-p.

    Data: a `.txt` file or a folder of them (the last `validation_fraction` of the text, by
    characters, is held out), `tfds:NAME[:SPLIT]` (a text feature, `text_key`; its
    validation or test split is held out), or `builtin:dates` (lines "3rd of March 2021 =
    2021-03-03").

    Example:
        >>> import tempfile
        >>> entry = LstmLanguageModelEntry(LstmLanguageModelEntry.preset("tiny"), tempfile.mkdtemp())
        >>> entry.prepare(sources.parse("builtin:dates"))
        >>> len(entry.predict(entry.build_model(), ["3rd of March 2021 ="]))
        1
    """

    description = "Stacked-LSTM language model (characters or SentencePiece); bits per character, sampling."
    teacher_keys = ("vocabulary",)
    config_class = LstmLmConfig
    default_data = "builtin:dates"
    validation_metric = ("bits_per_character", "min")
    # Adam 1e-2 with warmup and cosine decay, batch 32, clipped: the rate and batch that
    # learned most in a few CPU minutes (WORKSPACE_NOTES.md, "Issue 14", figures behind the defaults).
    trainer_defaults = {"learning_rate": 1e-2, "warmup_fraction": 0.02, "lr_schedule": "cosine",
                        "clipnorm": 1.0, "batch_size": 32}
    training_length = TrainingLength(steps=5000, min_epochs=1, max_epochs=50)

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self.vocab = None
        self._cache = {}

    # Data.
    def documents(self, source, split):
        """The texts of a split, one per document."""
        key = ("documents", str(source), split)
        if key in self._cache:
            return self._cache[key]
        c = self.config
        if source.kind == "builtin":
            if source.name not in BUILTINS:
                raise sources.DataError(f"--data=builtin:{source.name}: unknown builtin text; builtins: "
                                        f"{', '.join('builtin:' + b for b in BUILTINS)}.")
            documents = [BUILTINS[source.name](split)]
        elif source.kind == "tfds":
            documents = self._tfds_documents(source, split)
        else:
            documents = split_tail(self._file_documents(source.name), split, c.validation_fraction)
        if not any(documents):
            raise sources.DataError(f"--data={source}: no text in the {split} split.")
        self._cache[key] = documents
        return documents

    def _file_documents(self, path):
        files = [path]
        if fileio.isdir(path):
            files = sorted(fileio.join(root, name) for root, _, names in fileio.walk(path)
                           for name in names if name.endswith(".txt"))
            if not files:
                raise sources.DataError(f"--data={path}: the folder holds no .txt files.")
        return [read_text_file(f) for f in files]

    def _tfds_documents(self, source, split):
        builder, name = sources.tfds_split(source, "train")
        listed = list(builder.info.splits)
        if split == sources.ALL and source.split:
            return self._tfds_texts(source, builder, name)
        if listed and not {"validation", "test"} & set(listed):
            # No held-out split of its own: the tail of the training split, as for a file.
            return split_tail(self._tfds_texts(source, builder, name), split, self.config.validation_fraction)
        if split != "train":
            builder, name = sources.tfds_split(source, split)
        return self._tfds_texts(source, builder, name)

    def _tfds_texts(self, source, builder, name):
        key = self.config.text_key
        if not key:
            texts = [k for k, f in builder.info.features.items() if getattr(f, "dtype", None) == tf.string]
            if len(texts) != 1:
                raise sources.DataError(f"--data={source}: set --config text_key= to one of {list(builder.info.features)}.")
            key = texts[0]
        elif key not in builder.info.features:
            raise sources.DataError(f"--config text_key={key}: {source} has features {list(builder.info.features)}.")
        ds = builder.as_dataset(split=name, shuffle_files=False)
        return [t.decode("utf-8") for t in ds.map(lambda ex: ex[key]).as_numpy_iterator()]

    def stream(self, documents):
        """Ids of documents, each after a separator."""
        return np.concatenate([np.concatenate([[SEP], self.vocab.encode(d)]) for d in documents]).astype(np.int32)

    def token_ids(self, source, split):
        key = ("ids", str(source), split)
        if key not in self._cache:
            self._cache[key] = self.stream(self.documents(source, split))
        return self._cache[key]

    def prepare(self, source):
        fileio.makedirs(self.assets_dir)
        self.vocab = vocabulary.learn(self.config.vocabulary, self.documents(source, "train"), self.config.vocab_size,
                                      self.assets_dir)

    def load_assets(self):
        self.vocab = vocabulary.load(self.config.vocabulary, self.assets_dir)

    def num_examples(self, source, split):
        return max(1, (len(self.token_ids(source, split)) - 1) // self.config.sequence_length)

    def _check_length(self, ids, source, split):
        if len(ids) < self.config.sequence_length + 2:
            raise sources.DataError(
                f"--data={source}: the {split} text has {len(ids)} tokens; training windows need more than "
                f"--config sequence_length={self.config.sequence_length} + 1.")

    def dataset(self, source, split, batch_size, training, seed=0):
        width = self.config.sequence_length + 1
        ids = self.token_ids(source, split)
        if not training:
            windows = max(1, -(-(len(ids) - 1) // (width - 1)))  # the last one padded
            padded = np.full(windows * (width - 1) + 1, PAD, np.int32)
            padded[:len(ids)] = ids
            rows = np.stack([padded[k * (width - 1):k * (width - 1) + width] for k in range(windows)])
            return tf.data.Dataset.from_tensor_slices({"ids": rows}).batch(batch_size)
        self._check_length(ids, source, split)
        if self.config.carry_state:
            return self._stream_dataset(ids, batch_size)
        # Windows start anywhere in the text (a random position each), from a zero state.
        starts = len(ids) - width + 1
        text = tf.constant(ids)
        ds = tf.data.Dataset.random(seed=seed).map(lambda r: {"ids": text[r % starts:r % starts + width]})
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def _stream_dataset(self, ids, batch_size):
        """Row r of every batch reads the next window of stream r (the text cut into
        `batch_size` consecutive parts); `reset` marks each pass's first window."""
        width = self.config.sequence_length + 1
        length = len(ids) // batch_size
        windows = (length - 1) // (width - 1)
        if windows < 1:
            raise sources.DataError(f"the training text ({len(ids)} tokens) is too short for {batch_size} streams of "
                                    f"--config sequence_length={width - 1}; lower --batch_size.")
        streams = tf.constant(ids[:batch_size * length].reshape(batch_size, length))
        rows = tf.range(batch_size, dtype=tf.int32)

        def window(k):
            start = tf.cast(k, tf.int32) * (width - 1)
            return {"ids": streams[:, start:start + width], "rows": rows,
                    "reset": tf.fill([batch_size], tf.equal(k, 0))}

        return tf.data.Dataset.range(windows).repeat().map(window).prefetch(tf.data.AUTOTUNE)

    # Model and loss.
    def build_model(self):
        c = self.config
        carry = (self.batch_size or 0) if c.carry_state else 0
        return LstmLanguageModel(self.vocab.size, embedding_dim=c.embedding_dim, units=c.units, num_layers=c.num_layers,
                                 dropout=c.dropout, embedding_dropout=c.embedding_dropout,
                                 tie_embeddings=c.tie_embeddings, carry_rows=carry, name="lstm_lm")

    def loss_and_logits(self, model, batch, training):
        """Mean next-token cross-entropy (nats) of each window, padding excluded, with the
        logits and the mask of the predicted positions. Only training carries the state
        over windows (a distillation teacher, called with `training=False`, starts each
        window afresh)."""
        ids = batch["ids"]
        inputs, labels = ids[:, :-1], ids[:, 1:]
        if training and "rows" in batch and model.carried:
            state = model.read_state(batch["rows"], batch["reset"])
            logits, states = model(inputs, initial_state=state, training=True, return_state=True)
            model.write_state(batch["rows"], states)
        else:
            logits = model(inputs, training=training)
        mask = keras.ops.cast(keras.ops.not_equal(labels, PAD), "float32")
        return masked_mean(token_nats(labels, logits), mask), keras.ops.cast(logits, "float32"), mask

    # Scoring.
    @functools.lru_cache(maxsize=None)
    def _window_nats(self, model):
        @tf.function(reduce_retracing=True)
        def window(inputs, labels, states):
            logits, states = model(inputs, initial_state=states, return_state=True)
            return tf.reduce_sum(token_nats(labels, logits)), states

        return window

    def stream_nats(self, model, ids):
        """Total nats of every token of `ids` after the first, each predicted from all the
        tokens before it in its part (the ids are cut into SCORE_STREAMS parts, scored side
        by side, each carrying its state from window to window)."""
        inputs, labels = ids[:-1], ids[1:]
        streams = max(1, min(SCORE_STREAMS, len(labels) // self.config.sequence_length))
        length = -(-len(labels) // streams)
        width = self.config.sequence_length
        length = -(-length // width) * width
        pad = streams * length - len(labels)
        inputs = np.concatenate([inputs, np.full(pad, PAD, np.int32)]).reshape(streams, length)
        labels = np.concatenate([labels, np.full(pad, PAD, np.int32)]).reshape(streams, length)
        states = [[tf.zeros((streams, model.units)), tf.zeros((streams, model.units))] for _ in range(model.num_layers)]
        total = 0.0
        for start in range(0, length, width):
            nats, states = self._window_nats(model)(tf.constant(inputs[:, start:start + width]),
                                                    tf.constant(labels[:, start:start + width]), states)
            total += float(nats)
        return total, int((labels != PAD).sum())

    def evaluate(self, model, source, split):
        documents = first_characters(self.documents(source, split), self.config.eval_characters)
        characters = sum(len(d) for d in documents)
        nats, tokens = self.stream_nats(model, self.stream(documents))
        return {"bits_per_character": nats / math.log(2) / max(1, characters),
                "nats_per_token": nats / max(1, tokens), "perplexity": math.exp(min(50.0, nats / max(1, tokens))),
                "characters": characters, "tokens": tokens}

    # Generation.
    def encode_prompts(self, prompts, width=None):
        """Left-padded prompt ids [B, width] of a [B] string tensor (width: the longest + 1);
        an empty prompt is the separator (a new document)."""
        ids = self.vocab.tf_encode(prompts)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        limit = self.config.max_prompt_length
        check = tf.debugging.assert_less_equal(
            lengths, limit, message=f"a prompt has more tokens than --config max_prompt_length={limit}")
        with tf.control_dependencies([check]):
            width = width or tf.reduce_max(tf.concat([lengths, [1]], 0)) + 1
        right = ids.to_tensor(PAD, shape=[None, None])
        right = tf.pad(right, [[0, 0], [0, tf.maximum(0, width - tf.shape(right)[1])]])
        positions = tf.range(width)[tf.newaxis, :] - (width - tf.maximum(lengths, 1))[:, tf.newaxis]
        left = tf.where(positions >= 0, tf.gather(right, tf.maximum(positions, 0), batch_dims=1), PAD)
        empty = tf.logical_and(tf.equal(lengths, 0)[:, tf.newaxis], tf.equal(tf.range(width), width - 1)[tf.newaxis])
        return tf.where(empty, SEP, left)

    def decode_tokens(self, tokens):
        """[B] strings of generated ids [B, T], each cut at its separator and at the first stop string."""
        tokens = tf.convert_to_tensor(tokens)
        keep = tf.cast(tf.logical_and(tokens != SEP, tokens != PAD), tf.int32)
        lengths = tf.reduce_sum(tf.math.cumprod(keep, axis=1), axis=1)
        text = self.vocab.tf_decode(tf.RaggedTensor.from_tensor(tokens, lengths=lengths))
        for stop in self.config.stop_strings:
            text = tf.strings.split(text, sep=stop).to_tensor("")[:, 0]
        return text

    @functools.lru_cache(maxsize=None)
    def _generate_fn(self, model):
        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="prompts"), tf.TensorSpec([], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"), tf.TensorSpec([], tf.int32, name="seed")])
        def generate(prompts, max_length, temperature, top_k, top_p, seed):
            tokens = model.sample(self.encode_prompts(prompts), self.config.max_length, seed, temperature, top_k,
                                  top_p, length=max_length)
            return {"continuations": self.decode_tokens(tokens)}

        return generate

    def _settings(self):
        c = self.config
        return {"max_length": tf.constant(c.max_length), "temperature": tf.constant(c.temperature, tf.float32),
                "top_k": tf.constant(c.top_k), "top_p": tf.constant(c.top_p, tf.float32),
                "seed": tf.constant(c.sample_seed)}

    @functools.lru_cache(maxsize=None)
    def _complete_fn(self, model):
        generate = self._generate_fn(model)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])
        def complete(prompts):
            return generate(prompts, **self._settings())

        return complete

    def check_prompts(self, prompts):
        limit = self.config.max_prompt_length
        for number, prompt in enumerate(prompts, start=1):
            tokens = len(self.vocab.encode(prompt))
            if tokens > limit:
                raise sources.DataError(f"prompt {number} ({prompt[:30]!r}...) has {tokens} tokens; the model takes at "
                                        f"most --config max_prompt_length={limit}.")

    def generate(self, model, prompts, batch_size=64, **settings):
        """Continuations of a list of prompts (settings: max_length, temperature, top_k, top_p,
        seed; the config's by default)."""
        self.check_prompts(prompts)
        defaults = self._settings()
        fixed = {**defaults, **{k: tf.constant(v, defaults[k].dtype) for k, v in settings.items()}}
        out = []
        for i in range(0, len(prompts), batch_size):
            texts = self._generate_fn(model)(tf.constant(prompts[i:i + batch_size]), **fixed)["continuations"]
            out += [t.decode("utf-8") for t in texts.numpy()]
        return out

    def predict(self, model, inputs):
        return self.generate(model, list(inputs))

    @functools.lru_cache(maxsize=None)
    def _score_fn(self, model):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
        def score(texts):
            ids = self.vocab.tf_encode(texts)
            ids = tf.concat([tf.fill([ids.nrows(), 1], SEP), ids], axis=1).to_tensor(PAD)
            ids = tf.pad(ids, [[0, 0], [0, tf.maximum(0, 2 - tf.shape(ids)[1])]])  # empty texts: no zero-length run
            nats = tf.reduce_sum(token_nats(ids[:, 1:], model(ids[:, :-1])), axis=1)
            characters = tf.strings.length(texts, unit="UTF8_CHAR")
            return {"bits_per_character": nats / math.log(2) / tf.cast(tf.maximum(characters, 1), tf.float32),
                    "nats": nats, "characters": characters}

        return score

    # Export.
    def resources(self):
        return self.vocab.resources()

    def held_out_examples(self, source, count):
        """(prompts, their true continuations): windows of the validation text."""
        text = "".join(self.documents(source, "validation"))
        size = min(HELD_OUT_PROMPT, self.config.max_prompt_length // 2)
        step = max(1, (len(text) - 2 * size) // max(1, count))
        starts = range(0, max(1, len(text) - 2 * size), step)[:count]
        return [text[s:s + size] for s in starts], [text[s + size:s + 2 * size] for s in starts]

    def training_inputs(self, source, count):
        text = "".join(self.documents(source, "train"))
        size = min(HELD_OUT_PROMPT, self.config.max_prompt_length // 2)
        return [text[s:s + size] for s in range(0, max(1, len(text) - size), max(1, len(text) // count))][:count]

    def serving_functions(self, model):
        c = self.config
        width = c.max_prompt_length + 1
        layers = c.num_layers
        settings = {"seed": [c.sample_seed], "temperature": [c.temperature], "top_k": [c.top_k], "top_p": [c.top_p],
                    "max_length": [c.max_length]}

        @tf.function(input_signature=[
            tf.TensorSpec([1, width], tf.int32, name="prompt"), tf.TensorSpec([1], tf.int32, name="seed"),
            tf.TensorSpec([1], tf.float32, name="temperature"), tf.TensorSpec([1], tf.int32, name="top_k"),
            tf.TensorSpec([1], tf.float32, name="top_p"), tf.TensorSpec([1], tf.int32, name="max_length")])
        def sample_tokens(prompt, seed, temperature, top_k, top_p, max_length):
            return {"tokens": model.sample(prompt, c.max_length, seed[0], temperature[0], top_k[0], top_p[0],
                                           length=max_length[0])}

        def encode_prompts(texts):
            prompts = self.encode_prompts(tf.constant(texts), width).numpy()
            return {"prompt": prompts, **{k: np.array(v * len(texts), "float32" if k in ("temperature", "top_p")
                                                      else "int32") for k, v in settings.items()}}

        @tf.function(input_signature=[tf.TensorSpec([1], tf.int32, name="token"),
                                      tf.TensorSpec([1, 2 * layers, c.units], tf.float32, name="state")])
        def step(token, state):
            states = [[state[:, 2 * i], state[:, 2 * i + 1]] for i in range(layers)]
            logits, states = model.decoding_step(token, 0, states, ())
            return {"logits": tf.cast(logits, tf.float32), "state": tf.stack(_flat(states), 1)}

        def encode_steps(texts):
            prompts = self.encode_prompts(tf.constant(texts), width)
            states, last = model.prime(prompts)
            return {"token": last.numpy(), "state": tf.stack(_flat(states), 1).numpy()}

        score_width = c.sequence_length + 1
        lengths = self.vocab.piece_lengths()

        @tf.function(input_signature=[tf.TensorSpec([1, score_width], tf.int32, name="ids")])
        def score_tokens(ids):
            labels = ids[:, 1:]
            return {"nats": tf.reduce_sum(token_nats(labels, model(ids[:, :-1])), axis=1),
                    "characters": tf.reduce_sum(tf.gather(tf.constant(lengths), labels), axis=1)}

        def encode_windows(texts):
            rows = np.full((len(texts), score_width), PAD, np.int32)
            for i, text in enumerate(texts):
                ids = np.concatenate([[SEP], self.vocab.encode(text)])[:score_width]
                rows[i, :len(ids)] = ids
            return {"ids": rows}

        def next_token_bits(outputs, references):
            """Bits per character of each continuation's first token after its prompt."""
            targets = [self.vocab.encode(r)[:1] for r in references]
            rows = [i for i, t in enumerate(targets) if len(t)]
            targets = np.array([targets[i][0] for i in rows])
            logits = outputs["logits"][rows].astype(np.float64)
            log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
                - logits.max(1, keepdims=True)
            nats = -log_probs[np.arange(len(rows)), targets].sum()
            return float(nats / math.log(2) / max(1, lengths[targets].sum()))

        def windows_bits(outputs, references):  # noqa: ARG001  (the windows scored are the held-out prompts)
            return float(np.sum(outputs["nats"])) / math.log(2) / max(1, int(np.sum(outputs["characters"])))

        quantized = ("none", "float16", "dynamic")
        return {
            "serving_default": Servable(self._complete_fn(model)),
            "generate": Servable(self._generate_fn(model)),
            "score": Servable(self._score_fn(model)),
            "sample_tokens": Servable(
                sample_tokens, tflite=True, tpu=True, encode=encode_prompts,
                decode=lambda out: [t.decode("utf-8") for t in self.decode_tokens(out["tokens"]).numpy()],
                quantizations=quantized,
                quantization_note="int8 calibration cannot run the sampling loop; the quantized score_tokens "
                                  "model measures what quantizing the weights costs"),
            "step": Servable(step, tflite=True, encode=encode_steps, decode=lambda out: out, quantizations=quantized,
                             metric=("bits_per_character", next_token_bits, "min"),
                             quantization_note="int8: the LSTM cell's state does not keep its range in int8"),
            "score_tokens": Servable(
                score_tokens, tflite=True, encode=encode_windows, decode=lambda out: out, quantizations=quantized,
                metric=("bits_per_character", windows_bits, "min"),
                quantization_note="int8: the LSTM cell's state does not keep its range in int8"),
        }
