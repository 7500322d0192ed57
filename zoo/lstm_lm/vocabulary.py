"""The language model's vocabularies: characters, or SentencePiece pieces learned from the text.

Both keep text byte-exact (no normalization, whitespace and newlines kept), so decoded
samples are the text the model wrote and bits per character count the characters of the
text itself, whatever the vocabulary. Ids 0, 1 and 2 are padding, unknown and the document
separator (it starts every document, and a generation ends at it) in both.

Each vocabulary encodes in Python (`encode`, for the data pipeline) and in the graph
(`tf_encode`/`tf_decode`, for served string signatures): the two give the same ids.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.json")
    >>> vocab = CharVocabulary.learn(["abc ab"], path)  # a=3, b=4, " "=5, c=6 (most frequent first)
    >>> vocab.encode("cab").tolist(), vocab.decode([6, 3, 4])
    ([6, 3, 4], 'cab')
"""

import json
import os

import numpy as np
import tensorflow as tf

from zoo import fileio
from zoo.sources import DataError
from zoo.text import spm

PAD, UNK, SEP = 0, 1, 2
SPECIAL = 3
CHAR_FILE = "vocab.json"
SPM_FILE = "spm.model"
# SentencePiece learns from "sentences" of at most 4,192 bytes (longer ones it drops): the
# training text is handed over cut after newlines and into pieces of at most this many bytes.
SPM_PIECE_BYTES = 4000


class CharVocabulary:
    """Every character of the training text is a token (ids from 3, most frequent first)."""

    kind = "char"

    def __init__(self, codepoints):
        self.codepoints = np.asarray(codepoints, np.int64)
        self.size = SPECIAL + len(self.codepoints)
        top = int(self.codepoints.max(initial=0)) + 1
        self._ids = np.full(top, UNK, np.int32)
        self._ids[self.codepoints] = np.arange(SPECIAL, self.size, dtype=np.int32)
        self._table = None

    @classmethod
    def learn(cls, texts, path):
        counts = {}
        for text in texts:
            points, n = np.unique(_codepoints(text), return_counts=True)
            for p, c in zip(points.tolist(), n.tolist()):
                counts[p] = counts.get(p, 0) + c
        if not counts:
            raise DataError("No training text to learn the character vocabulary from.")
        ordered = sorted(counts, key=lambda p: (-counts[p], p))
        fileio.write_atomic(path, json.dumps({"kind": "char", "codepoints": ordered}))
        return cls(ordered)

    @classmethod
    def load(cls, path):
        return cls(json.loads(fileio.read_text(path))["codepoints"])

    def encode(self, text):
        points = _codepoints(text)
        inside = points < len(self._ids)
        return np.where(inside, self._ids[np.minimum(points, len(self._ids) - 1)], UNK).astype(np.int32)

    def decode(self, ids):
        ids = np.asarray(ids, np.int64)
        return "".join("\ufffd" if i == UNK else chr(self.codepoints[i - SPECIAL]) for i in ids if i == UNK or i >= SPECIAL)

    def piece_lengths(self):
        """Characters of each id's text (0 for padding and the separator)."""
        return np.array([0, 1, 0] + [1] * len(self.codepoints), np.int32)

    def _lookup(self):
        if self._table is None:
            with tf.init_scope():  # created eagerly even when first asked for inside a tf.function
                self._table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(tf.constant(self.codepoints, tf.int64),
                                                        tf.range(SPECIAL, self.size, dtype=tf.int64)), UNK)
        return self._table

    def tf_encode(self, texts):
        """Ragged ids [B, (n)] of a [B] string tensor."""
        points = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")
        return tf.cast(points.with_flat_values(self._lookup().lookup(tf.cast(points.flat_values, tf.int64))), tf.int32)

    def tf_decode(self, ids):
        """[B] strings of ragged ids [B, (n)]: padding and separators dropped, unknown as U+FFFD."""
        ids = tf.ragged.boolean_mask(ids, tf.logical_or(ids >= SPECIAL, ids == UNK))
        table = tf.constant(np.concatenate([[0, 0xFFFD, 0], self.codepoints]).astype(np.int32))
        return tf.strings.unicode_encode(ids.with_flat_values(tf.gather(table, ids.flat_values)), "UTF-8")

    def resources(self):
        return {"vocabulary_table": self._lookup()}


# tensorflow-text's FastSentencepiece kernels read a newline, a tab or a carriage return as a
# space whatever the model says (the sentencepiece library, with identity normalization, keeps
# them): each travels as a private-use character instead, a piece of its own.
NEWLINE = "\ue000"
ESCAPES = {"\n": NEWLINE, "\t": "\ue001", "\r": "\ue002"}
_ESCAPE = str.maketrans(ESCAPES)
_UNESCAPE = str.maketrans({v: k for k, v in ESCAPES.items()})


def _tf_translate(texts, table):
    for old, new in table.items():
        texts = tf.strings.regex_replace(texts, old, new)
    return texts


class SpmVocabulary:
    """SentencePiece pieces learned from the training text; newline, tab and carriage return
    are pieces of their own."""

    kind = "spm"

    def __init__(self, path):
        self.processor = spm.processor(path)
        self.size = self.processor.vocab_size()
        self.tokenizer = spm.load(path)

    @classmethod
    def learn(cls, texts, vocab_size, path):
        pieces = [piece for text in texts for piece in _pieces(text)]
        spm.train([p.translate(_ESCAPE) for p in pieces], vocab_size, path, normalization="identity",
                  user_symbols=tuple(ESCAPES.values()),
                  options={"add_dummy_prefix": False, "remove_extra_whitespaces": False})
        return cls(path)

    @classmethod
    def load(cls, path):
        return cls(path)

    def encode(self, text):
        return np.asarray(self.processor.encode(text.translate(_ESCAPE)), np.int32)

    def decode(self, ids):
        return self.processor.decode([int(i) for i in ids if i >= SPECIAL or i == UNK]).translate(_UNESCAPE)

    def piece_lengths(self):
        pieces = [self.processor.id_to_piece(i).replace("\u2581", " ") for i in range(self.size)]
        lengths = [0 if self.processor.is_control(i) else len(p) for i, p in enumerate(pieces)]
        lengths[UNK] = 1
        return np.array(lengths, np.int32)

    def tf_encode(self, texts):
        return tf.cast(self.tokenizer.tokenize(_tf_translate(texts, ESCAPES)), tf.int32)

    def tf_decode(self, ids):
        ids = tf.ragged.boolean_mask(ids, tf.logical_or(ids >= SPECIAL, ids == UNK))
        return _tf_translate(self.tokenizer.detokenize(ids), {v: k for k, v in ESCAPES.items()})

    def resources(self):
        return {"tokenizer": self.tokenizer}


def _codepoints(text):
    return np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)


def _pieces(text):
    """`text` cut after newlines, and lines into pieces of at most SPM_PIECE_BYTES bytes."""
    out = []
    for line in text.split("\n"):
        piece, size = [], 0
        for ch in line:
            width = len(ch.encode("utf-8"))
            if size + width > SPM_PIECE_BYTES:
                out.append("".join(piece))
                piece, size = [], 0
            piece.append(ch)
            size += width
        out.append("".join(piece) + "\n")
    out[-1] = out[-1][:-1]
    return [p for p in out if p]


def learn(kind, texts, vocab_size, assets_dir):
    if kind == "char":
        return CharVocabulary.learn(texts, os.path.join(assets_dir, CHAR_FILE))
    return SpmVocabulary.learn(texts, vocab_size, os.path.join(assets_dir, SPM_FILE))


def load(kind, assets_dir):
    if kind == "char":
        return CharVocabulary.load(os.path.join(assets_dir, CHAR_FILE))
    return SpmVocabulary.load(os.path.join(assets_dir, SPM_FILE))
