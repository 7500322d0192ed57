"""The peer: keras-io `lstm_seq2seq` (Chollet), made word-level as its FAQ describes.

Recipe (keras.io/examples/nlp/lstm_seq2seq/ and the "ten-minute introduction to
sequence-to-sequence learning" post it comes from): an LSTM encoder whose final states start
an LSTM decoder fed by teacher forcing, a softmax over the target vocabulary, `rmsprop`,
batch 64, `model.fit`; then inference models (encoder; decoder step with states in and out)
and greedy decoding from a start token to an end token. Word-level per the post's FAQ: integer
word sequences through `Embedding(num_tokens, latent_dim)` layers instead of one-hot
characters. Its own best settings beyond the recipe: `mask_zero=True` so padding is neither
read nor scored, sparse targets (the same loss as one-hot categorical, without one-hot
tensors), and batched greedy decoding (the same argmax steps, all sentences at once).
"""

import re
import string
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.peer_callbacks import TimeLimit

START, END = "[start]", "[end]"
_PUNCT = re.escape(string.punctuation.replace("[", "").replace("]", "") + "«»¿¡’")


def _split_punctuation(text):
    # Words and punctuation as separate tokens, case kept, so the peer can write both.
    return tf.strings.regex_replace(text, f"([{_PUNCT}])", r" \1 ")


class Seq2SeqPeer:
    def __init__(self, sources, targets, vocab_size=None, latent_dim=256, embedding_dim=256,
                 max_source_length=24, max_target_length=24):
        self.max_target_length = max_target_length
        self.source_vectorizer = keras.layers.TextVectorization(
            max_tokens=vocab_size, standardize=_split_punctuation,
            output_sequence_length=max_source_length)
        self.target_vectorizer = keras.layers.TextVectorization(
            max_tokens=vocab_size, standardize=_split_punctuation,
            output_sequence_length=max_target_length + 1)
        self.source_vectorizer.adapt(tf.constant(sources))
        self.target_vectorizer.adapt(tf.constant([f"{START} {t} {END}" for t in targets]))
        self.target_vocab = self.target_vectorizer.get_vocabulary()
        num_encoder_tokens = self.source_vectorizer.vocabulary_size()
        num_decoder_tokens = len(self.target_vocab)

        encoder_inputs = keras.Input(shape=(None,), dtype="int32")
        x = keras.layers.Embedding(num_encoder_tokens, embedding_dim, mask_zero=True)(encoder_inputs)
        _, state_h, state_c = keras.layers.LSTM(latent_dim, return_state=True)(x)
        encoder_states = [state_h, state_c]
        decoder_inputs = keras.Input(shape=(None,), dtype="int32")
        self.decoder_embedding = keras.layers.Embedding(num_decoder_tokens, embedding_dim, mask_zero=True)
        self.decoder_lstm = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)
        self.decoder_dense = keras.layers.Dense(num_decoder_tokens, activation="softmax")
        y, _, _ = self.decoder_lstm(self.decoder_embedding(decoder_inputs), initial_state=encoder_states)
        self.model = keras.Model([encoder_inputs, decoder_inputs], self.decoder_dense(y))
        self.model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")

        # Inference models, as in the recipe.
        self.encoder_model = keras.Model(encoder_inputs, encoder_states)
        step_input = keras.Input(shape=(None,), dtype="int32")
        state_inputs = [keras.Input(shape=(latent_dim,)), keras.Input(shape=(latent_dim,))]
        y, h, c = self.decoder_lstm(self.decoder_embedding(step_input), initial_state=state_inputs)
        self.decoder_model = keras.Model([step_input] + state_inputs, [self.decoder_dense(y), h, c])

    def dataset(self, sources, targets, batch_size=64, shuffle=True):
        src = self.source_vectorizer(tf.constant(sources))
        tgt = self.target_vectorizer(tf.constant([f"{START} {t} {END}" for t in targets]))
        ds = tf.data.Dataset.from_tensor_slices(((src, tgt[:, :-1]), tgt[:, 1:]))
        if shuffle:
            ds = ds.shuffle(len(sources), seed=0).repeat()
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def fit(self, sources, targets, seconds=None, steps=None, batch_size=64, callbacks=()):
        """Trains with `model.fit` for `seconds` of wall time or `steps` steps."""
        callbacks = list(callbacks)
        if seconds:
            callbacks.append(TimeLimit(seconds))
        steps_per_epoch = steps or max(1, len(sources) // batch_size)
        epochs = 1 if steps else 10_000
        start = time.perf_counter()
        self.model.fit(self.dataset(sources, targets, batch_size), steps_per_epoch=steps_per_epoch,
                       epochs=epochs, callbacks=callbacks, verbose=0)
        return time.perf_counter() - start

    def translate(self, sources, batch_size=256):
        start_id = self.target_vocab.index(START)
        end_id = self.target_vocab.index(END)
        out = []
        for i in range(0, len(sources), batch_size):
            h, c = self.encoder_model(self.source_vectorizer(tf.constant(sources[i:i + batch_size])))
            token = tf.fill((h.shape[0], 1), start_id)
            words = [[] for _ in range(h.shape[0])]
            done = np.zeros(h.shape[0], bool)
            for _ in range(self.max_target_length):
                probs, h, c = self.decoder_model([token, h, c])
                token = tf.constant(np.argmax(probs.numpy()[:, -1], axis=-1).astype("int32")[:, None])
                for row, t in enumerate(token.numpy()[:, 0]):
                    if not done[row]:
                        if t == end_id:
                            done[row] = True
                        else:
                            words[row].append(self.target_vocab[t])
                if done.all():
                    break
            out += [_join(w) for w in words]
        return out


def _join(words):
    text = " ".join(w for w in words if w not in ("", "[UNK]"))
    return re.sub(r" ([.,!?;:)])", r"\1", text).replace(" ' ", "'").replace(" - ", "-")
