"""An encoder-decoder LSTM translator with attention, greedy and beam-search decoding."""

import keras
from keras import ops

from zoo.text import decoding
from zoo.text.lstm import LSTM
from zoo.translator.attention import Attention

PAD, UNK, BOS, EOS = 0, 1, 2, 3


@keras.saving.register_keras_serializable(package="zoo")
class Seq2SeqTranslator(keras.Model):
    """Embeddings, a (bi)LSTM encoder, an LSTM decoder fed by teacher forcing, attention.

    Token ids: 0 pads, 2 begins and 3 ends a target sequence. The model supplies one decoding
    step; greedy and beam search are the zoo's shared ones (`zoo/text/decoding.py`), loops in
    the graph over fixed-size buffers that export to SavedModel and TFLite as they are.

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes.
        embedding_dim: size of both embeddings.
        units: LSTM state size (split between directions when `bidirectional`).
        num_layers: LSTM layers in the encoder and in the decoder.
        bidirectional: whether the encoder reads both ways.
        attention: `"luong"`, `"bahdanau"` or `"none"`.
        dropout: dropout rate between layers.

    Example:
        >>> import numpy as np
        >>> model = Seq2SeqTranslator(20, 20, embedding_dim=8, units=8)
        >>> logits = model({"source": np.ones((2, 5), "int32"),
        ...                 "target_in": np.ones((2, 4), "int32")})
        >>> tuple(logits.shape)
        (2, 4, 20)
        >>> tuple(model.greedy_decode(np.ones((2, 5), "int32"), max_length=6).shape)
        (2, 6)
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        embedding_dim=64,
        units=128,
        num_layers=1,
        bidirectional=True,
        attention="luong",
        dropout=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention not in ("luong", "bahdanau", "none"):
            raise ValueError(f"attention must be 'luong', 'bahdanau' or 'none', got {attention!r}.")
        if bidirectional and units % 2:
            raise ValueError(f"units must be even with a bidirectional encoder, got {units}.")
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.attention_score = attention
        self.dropout_rate = dropout

        self.source_embedding = keras.layers.Embedding(source_vocab_size, embedding_dim, name="source_embedding")
        self.target_embedding = keras.layers.Embedding(target_vocab_size, embedding_dim, name="target_embedding")
        self.encoder_layers = []
        for i in range(num_layers):
            if bidirectional:
                lstm = LSTM(units // 2, return_sequences=True, return_state=True)
                layer = keras.layers.Bidirectional(lstm, name=f"encoder_{i}")
            else:
                layer = LSTM(units, return_sequences=True, return_state=True, name=f"encoder_{i}")
            self.encoder_layers.append(layer)
        self.decoder_layers = [
            LSTM(units, return_sequences=True, return_state=True, name=f"decoder_{i}")
            for i in range(num_layers)
        ]
        self.attention = None if attention == "none" else Attention(units, attention, name="attention")
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        self.projection = keras.layers.Dense(target_vocab_size, name="projection")

    def build(self, input_shape=None):
        self.source_embedding.build((None, None))
        self.target_embedding.build((None, None))
        width = self.embedding_dim
        for layer in self.encoder_layers:
            layer.build((None, None, width))
            width = self.units
        width = self.embedding_dim
        for layer in self.decoder_layers:
            layer.build((None, None, width))
            width = self.units
        if self.attention is not None:
            self.attention.memory_dense.build((None, None, self.units))
            if self.attention.score == "bahdanau":
                self.attention.query_dense.build((None, None, self.units))
                self.attention.v.build((None, None, self.units))
            self.attention.output_dense.build((None, None, 2 * self.units))
            self.attention.built = True
        self.projection.build((None, None, self.units))
        self.built = True

    # Encoder.
    def encode(self, source_ids, training=False):
        """Returns (memory [B, S, units], per-layer [h, c] states, source mask [B, S])."""
        if not self.built:  # decoding before any call
            self.build()
        mask = ops.not_equal(source_ids, PAD)
        x = self.dropout(self.source_embedding(source_ids), training=training)
        states = []
        for layer in self.encoder_layers:
            out = layer(x, mask=mask, training=training)
            if self.bidirectional:
                x, h_fwd, c_fwd, h_bwd, c_bwd = out
                states.append([ops.concatenate([h_fwd, h_bwd], -1), ops.concatenate([c_fwd, c_bwd], -1)])
            else:
                x, h, c = out
                states.append([h, c])
            x = self.dropout(x, training=training)
        return x, states, mask

    def _output(self, y, memory, mask, keys=None, training=False):
        if self.attention is not None:
            y = self.dropout(self.attention(y, memory, mask, keys=keys), training=training)
        return self.projection(y)

    def call(self, inputs, training=False):
        """Teacher-forced logits [B, T, target_vocab] for `inputs["target_in"]`."""
        memory, states, mask = self.encode(inputs["source"], training=training)
        y = self.dropout(self.target_embedding(inputs["target_in"]), training=training)
        for layer, state in zip(self.decoder_layers, states):
            y, _, _ = layer(y, initial_state=state, training=training)
            y = self.dropout(y, training=training)
        return self._output(y, memory, mask, training=training)

    # Decoding: the model's step; the searches live in zoo/text/decoding.py.
    def decoding_step(self, tokens, t, states, context):
        """Logits [N, vocab] of the token after `tokens` [N], and the LSTM states after it."""
        memory, mask, keys = context
        y = self.target_embedding(tokens)
        new_states = []
        for layer, state in zip(self.decoder_layers, states):
            y, state = layer.cell(y, state, training=False)
            new_states.append(list(state))
        logits = self._output(ops.expand_dims(y, 1), memory, mask, keys)
        return ops.squeeze(logits, 1), new_states

    def _prepare_decoding(self, source_ids):
        """(initial LSTM states, constant context) of a batch of source ids."""
        memory, states, mask = self.encode(source_ids)
        keys = self.attention.keys(memory) if self.attention is not None else memory
        return states, (memory, mask, keys)

    def greedy_decode(self, source_ids, max_length):
        """Greedy decoding: ids [B, max_length], each row ending in EOS then PAD."""
        states, context = self._prepare_decoding(source_ids)
        return decoding.greedy_search(self.decoding_step, states, context, ops.shape(source_ids)[0],
                                      max_length, BOS, EOS, PAD)

    def beam_search(self, source_ids, max_length, beam_size=4, length_penalty=0.6):
        """Beam search (`decoding.beam_search`): the best of `beam_size` hypotheses per row,
        ids [B, max_length]."""
        states, context = self._prepare_decoding(source_ids)
        return decoding.beam_search(self.decoding_step, states, context, ops.shape(source_ids)[0],
                                    max_length, BOS, EOS, PAD, beam_size, length_penalty,
                                    vocab_size=self.target_vocab_size)

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "attention": self.attention_score,
            "dropout": self.dropout_rate,
        }
