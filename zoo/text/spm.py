"""SentencePiece vocabularies learned from training text, with fixed special ids.

Ids: 0 pad, 1 unknown, 2 begin, 3 end of sequence. The `.model` file is what both the
`tf.data` pipeline and the exported SavedModel tokenize with (tensorflow-text ops), so
training and serving can never disagree.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.model")
    >>> train(["the cat sat", "the dog ran"] * 50, 30, path)
    >>> load(path).tokenize(["the cat"]).shape[0]
    1
"""

import io
import os

import sentencepiece
import tensorflow_text as tf_text

from zoo import fileio
from zoo.sources import DataError


# The translator's ids (the module docstring's); T5's are pad 0, end 1, unknown 2 and no
# begin token (its decoder starts from pad).
TRANSLATOR_IDS = {"pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3}
T5_IDS = {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}


def train(texts, vocab_size, path, normalization="nmt_nfkc", special_ids=None, user_symbols=(), options=None):
    """Learns a unigram vocabulary of at most `vocab_size` pieces and writes it to `path`.

    `normalization="identity"` keeps text byte-exact (use it for targets, so that
    detokenized outputs compare equal to references). `special_ids` maps sentencepiece's
    `pad_id`, `unk_id`, `bos_id`, `eos_id` (-1: none) to ids (default `TRANSLATOR_IDS`);
    `user_symbols` are pieces kept whole, right after the special ones (T5's sentinels).
    `options` are further `SentencePieceTrainer` settings (a language model's stream keeps
    its whitespace: `add_dummy_prefix=False, remove_extra_whitespaces=False`).
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"No training text to learn the vocabulary {os.path.basename(path)} from.")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        **(special_ids or TRANSLATOR_IDS),
        user_defined_symbols=list(user_symbols),
        # Small corpora (the tiny preset, tests) cannot fill a large vocabulary.
        hard_vocab_limit=False,
        normalization_rule_name=normalization,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1,
        # Numbers are read digit by digit: whole-number pieces ("2021-03") would make dates and
        # quantities thousands of rare tokens to learn one by one.
        split_digits=True,
        minloglevel=2,
        **(options or {}),
    )
    fileio.write_atomic(path, model.getvalue())


def load(path):
    """A `tensorflow_text.FastSentencepieceTokenizer` for the `.model` file at `path`.

    Not `SentencepieceTokenizer`: its model lives in a kernel-owned resource that
    `tf.random.set_seed` (which clears eager kernel caches) silently destroys, after which
    every tokenize fails with "Resource ... SentencepieceResource does not exist". The fast
    tokenizer keeps its model in a constant, gives the same ids, and has TFLite kernels.
    """
    return tf_text.FastSentencepieceTokenizer(model=fileio.read_bytes(path))


def vocab_size(path):
    """Pieces in the `.model` file at `path`.

    Read with the sentencepiece library, without building TensorFlow ops.
    """
    return processor(path).vocab_size()


def processor(path):
    """The sentencepiece library's processor of the `.model` file at `path` (any filesystem)."""
    return sentencepiece.SentencePieceProcessor(model_proto=fileio.read_bytes(path))
