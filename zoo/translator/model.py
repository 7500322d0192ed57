"""An encoder-decoder LSTM translator with attention, greedy and beam-search decoding."""

import keras
from keras import ops

from zoo.translator.attention import Attention

PAD, UNK, BOS, EOS = 0, 1, 2, 3
NEG_INF = -1e9


def _argmax(x):
    # keras.ops.argmax on TensorFlow adds a BitwiseAnd (for -0.0) that TFLite lacks as a
    # builtin; top_k breaks ties towards the lower index just the same.
    return ops.cast(ops.top_k(x, 1)[1][..., 0], "int32")


@keras.saving.register_keras_serializable(package="zoo")
class Seq2SeqTranslator(keras.Model):
    """Embeddings, a (bi)LSTM encoder, an LSTM decoder fed by teacher forcing, attention.

    Token ids: 0 pads, 2 begins and 3 ends a target sequence. Both decoders run inside the
    graph (`keras.ops.while_loop` over fixed-size buffers, no TensorArray), so they export to
    SavedModel and TFLite as they are.

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
                lstm = keras.layers.LSTM(units // 2, return_sequences=True, return_state=True)
                layer = keras.layers.Bidirectional(lstm, name=f"encoder_{i}")
            else:
                layer = keras.layers.LSTM(units, return_sequences=True, return_state=True, name=f"encoder_{i}")
            self.encoder_layers.append(layer)
        self.decoder_layers = [
            keras.layers.LSTM(units, return_sequences=True, return_state=True, name=f"decoder_{i}")
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

    # Decoding: one step, then the two searches built on it.
    def _step(self, tokens, states, memory, mask, keys):
        y = self.target_embedding(tokens)
        new_states = []
        for layer, state in zip(self.decoder_layers, states):
            y, state = layer.cell(y, state, training=False)
            new_states.append(list(state))
        logits = self._output(ops.expand_dims(y, 1), memory, mask, keys)
        return ops.squeeze(logits, 1), new_states

    def _prepare_decoding(self, source_ids):
        memory, states, mask = self.encode(source_ids)
        keys = self.attention.keys(memory) if self.attention is not None else memory
        return memory, states, mask, keys

    def greedy_decode(self, source_ids, max_length):
        """Greedy decoding: ids [B, max_length], each row ending in EOS then PAD."""
        memory, states, mask, keys = self._prepare_decoding(source_ids)
        batch = ops.shape(source_ids)[0]
        positions = ops.arange(max_length, dtype="int32")

        def cond(t, previous, states, finished, output):
            return ops.logical_and(t < max_length, ops.logical_not(ops.all(finished)))

        def body(t, previous, states, finished, output):
            logits, states = self._step(previous, states, memory, mask, keys)
            token = _argmax(logits)
            token = ops.where(finished, PAD, token)
            output = ops.where(ops.expand_dims(ops.equal(positions, t), 0), ops.expand_dims(token, 1), output)
            finished = ops.logical_or(finished, ops.equal(token, EOS))
            return t + 1, token, states, finished, output

        loop_vars = (
            ops.convert_to_tensor(0, "int32"),
            ops.full((batch,), BOS, "int32"),
            states,
            ops.zeros((batch,), "bool"),
            ops.zeros((batch, max_length), "int32"),
        )
        return ops.while_loop(cond, body, loop_vars)[-1]

    def beam_search(self, source_ids, max_length, beam_size=4, length_penalty=0.6):
        """Beam search: the best of `beam_size` hypotheses per row, ids [B, max_length].

        Scores are summed log-probabilities; finished hypotheses are ranked with the GNMT
        length penalty `((5 + length) / 6) ** length_penalty`.
        """
        memory, states, mask, keys = self._prepare_decoding(source_ids)
        batch = ops.shape(source_ids)[0]
        k, vocab = beam_size, self.target_vocab_size
        memory, mask, keys = (ops.repeat(x, k, axis=0) for x in (memory, mask, keys))
        states = [[ops.repeat(s, k, axis=0) for s in layer] for layer in states]
        positions = ops.arange(max_length, dtype="int32")
        # A finished hypothesis may only be extended by PAD, at no cost.
        pad_only = ops.where(ops.equal(ops.arange(vocab), PAD), 0.0, NEG_INF)
        # All beams start equal: keep only the first alive so the top-k is not k copies.
        initial_scores = ops.tile(ops.expand_dims(ops.where(ops.arange(k) == 0, 0.0, NEG_INF), 0), (batch, 1))
        row_offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * k, 1)

        def cond(t, previous, states, finished, scores, output):
            return ops.logical_and(t < max_length, ops.logical_not(ops.all(finished)))

        def body(t, previous, states, finished, scores, output):
            logits, states = self._step(previous, states, memory, mask, keys)
            log_probs = ops.reshape(ops.log_softmax(logits, axis=-1), (batch, k, vocab))
            log_probs = ops.where(ops.expand_dims(finished, -1), pad_only, log_probs)
            candidates = ops.reshape(ops.expand_dims(scores, -1) + log_probs, (batch, k * vocab))
            scores, best = ops.top_k(candidates, k)
            beam = ops.cast(best // vocab, "int32")
            token = ops.cast(best % vocab, "int32")
            rows = ops.reshape(beam + row_offsets, (-1,))
            states = [[ops.take(s, rows, axis=0) for s in layer] for layer in states]
            output = ops.reshape(ops.take(ops.reshape(output, (-1, max_length)), rows, axis=0), (batch, k, max_length))
            output = ops.where(ops.equal(positions, t), ops.expand_dims(token, -1), output)
            finished = ops.logical_or(ops.reshape(ops.take(ops.reshape(finished, (-1,)), rows), (batch, k)), ops.equal(token, EOS))
            return t + 1, ops.reshape(token, (-1,)), states, finished, scores, output

        loop_vars = (
            ops.convert_to_tensor(0, "int32"),
            ops.full((batch * k,), BOS, "int32"),
            states,
            ops.zeros((batch, k), "bool"),
            initial_scores,
            ops.zeros((batch, k, max_length), "int32"),
        )
        _, _, _, _, scores, output = ops.while_loop(cond, body, loop_vars)
        lengths = ops.cast(ops.sum(ops.cast(ops.not_equal(output, PAD), "int32"), axis=-1), "float32")
        ranked = scores / ops.power((5.0 + lengths) / 6.0, length_penalty)
        best = _argmax(ranked)
        rows = ops.arange(batch, dtype="int32") * k + best
        return ops.take(ops.reshape(output, (-1, max_length)), rows, axis=0)

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
