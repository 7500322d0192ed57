"""WordPiece vocabularies learned from training text, and the in-graph BERT tokenizer.

The tokenizer is tensorflow-text's `FastBertNormalizer` + `FastWordpieceTokenizer` (BERT's
basic pre-tokenization included): the same two ops run in the `tf.data` pipeline, in the
SavedModel (TF Serving links tf-text) and in the string-in TFLite model (both have TFLite
kernels, registered by `tensorflow_text.tflite_registrar`), so training and serving can
never disagree.

Learned vocabularies put the special tokens first, in keras-hub's order: 0 `[PAD]`, 1 `[CLS]`,
2 `[SEP]`, 3 `[UNK]`, 4 `[MASK]`. A pretrained preset's vocabulary keeps its own ids (BERT's
has `[PAD]` 0, `[UNK]` 100, `[CLS]` 101, ...); `WordPiece` looks them up.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> learn(["the cat sat", "the dog ran"] * 50, 60, path)
    >>> WordPiece(path).encode(["The cat"], 6).numpy().tolist()
    [[1, 16, 17, 2, 0, 0]]
"""

import os

import tensorflow as tf
import tensorflow_text as tf_text

from zoo import fileio
from zoo.sources import DataError

SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]


def learn(texts, vocabulary_size, path, lowercase=True):
    """Learns at most `vocabulary_size` WordPiece tokens from `texts` into the file `path`."""
    import keras_hub

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"No training text to learn the vocabulary {os.path.basename(path)} from.")
    with fileio.local_dir() as folder:  # keras-hub writes a local file; copied whole to `path`
        local = os.path.join(folder, "vocabulary.txt")
        keras_hub.tokenizers.compute_word_piece_vocabulary(
            tf.data.Dataset.from_tensor_slices(texts).batch(1000), vocabulary_size, local,
            lowercase=lowercase, strip_accents=lowercase, reserved_tokens=SPECIAL_TOKENS)
        with open(local, "rb") as f:
            fileio.write_atomic(path, f.read())


def read_vocabulary(path):
    with fileio.text_file(path) as f:
        vocabulary = [line.rstrip("\n") for line in f]
    missing = [t for t in SPECIAL_TOKENS if t not in vocabulary]
    if missing:
        raise DataError(f"{path}: the vocabulary lacks the special tokens {missing}.")
    return vocabulary


class WordPiece(tf.Module):
    """BERT tokenization of raw strings into fixed-length `[CLS] ... [SEP]` id rows.

    Args:
        path: a vocabulary file, one token a line, holding `SPECIAL_TOKENS`.
        lowercase: lower-case, NFD-normalize and strip accents first (uncased BERT).
    """

    def __init__(self, path, lowercase=True):
        super().__init__(name="wordpiece")
        self.vocabulary = read_vocabulary(path)
        self.lowercase = lowercase
        self.pad_id, self.cls_id, self.sep_id, self.unk_id, self.mask_id = (
            self.vocabulary.index(t) for t in SPECIAL_TOKENS)
        self.normalizer = tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=lowercase)
        self.tokenizer = tf_text.FastWordpieceTokenizer(
            self.vocabulary, token_out_type=tf.int32, unknown_token="[UNK]", no_pretokenization=False)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def tokenize(self, texts):
        """Ragged word-piece ids [batch, None] of a batch of strings."""
        return self.tokenizer.tokenize(self.normalizer.normalize(texts))

    def encode(self, texts, length):
        """Ids [batch, length]: `[CLS]`, the first `length - 2` pieces, `[SEP]`, then `[PAD]`."""
        ids = self.tokenize(texts)[:, :length - 2]
        column = tf.ones_like(ids[:, :1])
        return tf.concat([column * self.cls_id, ids, column * self.sep_id], axis=1).to_tensor(
            self.pad_id, shape=[None, length])

    def encode_one(self, text, length):
        """`encode` for a batch of one string [1], with no ragged ops (TFLite has none)."""
        pieces = self.tokenize(text).flat_values[:length - 2]
        ids = tf.concat([[self.cls_id], pieces, [self.sep_id]], axis=0)
        padding = [[0, length - tf.shape(ids)[0]]]
        return tf.reshape(tf.pad(ids, padding, constant_values=self.pad_id), [1, length])
