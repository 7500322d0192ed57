"""Attention of a decoder state over the encoder outputs (Luong 2015 or Bahdanau 2015)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class Attention(keras.layers.Layer):
    """Scores decoder states against encoder outputs and returns the attentional state.

    `score="luong"` is the multiplicative "general" score `h_t W h_s`; `score="bahdanau"` is
    the additive score `v tanh(W1 h_t + W2 h_s)`. Both are applied on top of the decoder LSTM
    (Luong placement), so training runs over all target steps at once and decoding one step
    at a time gives the same numbers.

    Args:
        units: size of the attentional state returned.
        score: `"luong"` or `"bahdanau"`.

    Example:
        >>> import numpy as np
        >>> layer = Attention(units=8)
        >>> out = layer(np.zeros((2, 3, 8)), np.zeros((2, 5, 8)), np.ones((2, 5), bool))
        >>> tuple(out.shape)
        (2, 3, 8)
    """

    def __init__(self, units, score="luong", **kwargs):
        super().__init__(**kwargs)
        if score not in ("luong", "bahdanau"):
            raise ValueError(f"attention score must be 'luong' or 'bahdanau', got {score!r}.")
        self.units = units
        self.score = score
        self.memory_dense = keras.layers.Dense(units, use_bias=False, name="memory")
        if score == "bahdanau":
            self.query_dense = keras.layers.Dense(units, use_bias=False, name="query")
            self.v = keras.layers.Dense(1, use_bias=False, name="v")
        self.output_dense = keras.layers.Dense(units, activation="tanh", name="attentional")

    def keys(self, memory):
        """Projects the encoder outputs once per source sentence."""
        return self.memory_dense(memory)

    def call(self, query, memory, memory_mask, keys=None):
        """Attends `query` [B, T, D] over `memory` [B, S, E] where `memory_mask` [B, S]."""
        if keys is None:
            keys = self.keys(memory)
        if self.score == "luong":
            scores = ops.einsum("btd,bsd->bts", query, keys)
        else:
            hidden = ops.tanh(ops.expand_dims(self.query_dense(query), 2) + ops.expand_dims(keys, 1))
            scores = ops.squeeze(self.v(hidden), -1)
        # Softmax in float32: under mixed precision -1e9 does not fit float16.
        scores = ops.cast(scores, "float32")
        mask = ops.expand_dims(ops.cast(memory_mask, "bool"), 1)
        scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        weights = ops.cast(ops.softmax(scores, axis=-1), memory.dtype)
        context = ops.einsum("bts,bse->bte", weights, memory)
        return self.output_dense(ops.concatenate([context, query], axis=-1))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "score": self.score}
