"""A stacked-LSTM language model: next-token logits, a decoding step, a carried state."""

import keras
from keras import ops

from zoo.text import decoding
from zoo.text.lstm import LSTM

PAD, UNK, SEP = 0, 1, 2


@keras.saving.register_keras_serializable(package="zoo")
class LstmLanguageModel(keras.Model):
    """Embedding, stacked LSTMs with dropout, next-token logits (optionally tied embeddings).

    Called on ids [B, T] it returns logits [B, T, vocab]; given `initial_state` (a list of
    [h, c] per layer) it starts from there, and with `return_state` it also returns the
    states after the last token. Generation runs the shared searches of
    `zoo/text/decoding.py` over `decoding_step`.

    Args:
        vocab_size: tokens in the vocabulary.
        embedding_dim: size of the token embedding.
        units: LSTM state size.
        num_layers: stacked LSTM layers.
        dropout: rate between layers and on the last layer's output.
        embedding_dropout: rate on the embedded tokens.
        tie_embeddings: the output layer is the embedding matrix's transpose (after a
            projection to `embedding_dim` when `units` differs).
        carry_rows: when not 0, the model keeps `carry_rows` rows of LSTM states in
            non-trainable variables (`read_state`/`write_state`), for training that carries
            state from one window to the next; they are in every checkpoint of the model.

    Example:
        >>> import numpy as np
        >>> model = LstmLanguageModel(10, embedding_dim=4, units=6)
        >>> tuple(model(np.ones((2, 5), "int32")).shape)
        (2, 5, 10)
    """

    def __init__(self, vocab_size, embedding_dim=128, units=512, num_layers=2, dropout=0.2,
                 embedding_dropout=0.1, tie_embeddings=False, carry_rows=0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = num_layers
        self.dropout_rate = dropout
        self.embedding_dropout_rate = embedding_dropout
        self.tie_embeddings = tie_embeddings
        self.carry_rows = carry_rows
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.embedding_dropout = keras.layers.Dropout(embedding_dropout, name="embedding_dropout")
        self.lstm_layers = [LSTM(units, return_sequences=True, return_state=True, name=f"lstm_{i}")
                            for i in range(num_layers)]
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        self.projection = None
        if tie_embeddings:
            if units != embedding_dim:
                self.projection = keras.layers.Dense(embedding_dim, name="projection")
            self.output_layer = None
        else:
            self.output_layer = keras.layers.Dense(vocab_size, name="logits")
        self.carried = []

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        width = self.embedding_dim
        for layer in self.lstm_layers:
            layer.build((None, None, width))
            width = self.units
        if self.projection is not None:
            self.projection.build((None, None, self.units))
        if self.output_layer is not None:
            self.output_layer.build((None, None, self.units))
        else:
            self.output_bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="output_bias")
        if self.carry_rows and not self.carried:
            # Summed over replicas when assigned: each replica writes its own rows (zeros
            # elsewhere), so every replica holds every row (see `write_state`).
            self.carried = [self.add_weight(shape=(self.carry_rows, self.units), initializer="zeros",
                                            trainable=False, aggregation="sum", name=f"carried_{i}_{part}")
                            for i in range(self.num_layers) for part in ("h", "c")]
        self.built = True

    def logits(self, y):
        """Next-token logits of LSTM outputs [..., units]."""
        if self.output_layer is not None:
            return self.output_layer(y)
        if self.projection is not None:
            y = self.projection(y)
        table = ops.cast(self.embedding.embeddings, y.dtype)
        return ops.matmul(y, ops.transpose(table)) + ops.cast(self.output_bias, y.dtype)

    def call(self, inputs, initial_state=None, training=False, return_state=False):
        return self.forward(inputs, initial_state, training, return_state)

    def forward(self, inputs, initial_state=None, training=False, return_state=False, mask=None):
        """`call`, with a `mask` [B, T] of the positions that count (others keep the state)."""
        y = self.embedding_dropout(self.embedding(inputs), training=training)
        states = []
        for i, layer in enumerate(self.lstm_layers):
            if i:
                y = self.dropout(y, training=training)
            init = None if initial_state is None else initial_state[i]
            y, h, c = layer(y, initial_state=init, mask=mask, training=training)
            states.append([h, c])
        logits = self.logits(self.dropout(y, training=training))
        return (logits, states) if return_state else logits

    def zero_state(self, rows):
        return [[ops.zeros((rows, self.units)), ops.zeros((rows, self.units))] for _ in range(self.num_layers)]

    # Carried state (truncated backpropagation through time).
    def read_state(self, rows, reset):
        """The carried states of `rows` [b] (zeros where `reset` [b] is true)."""
        keep = ops.expand_dims(ops.cast(ops.logical_not(reset), "float32"), -1)
        flat = [ops.take(v, rows, axis=0) * keep for v in self.carried]
        return [flat[2 * i:2 * i + 2] for i in range(self.num_layers)]

    def write_state(self, rows, states):
        """Stores the states of `rows` [b]. Every other row is written as zeros: the variables
        sum what replicas assign, so each replica's rows land once in every copy."""
        flat = [s for pair in states for s in pair]
        onehot = ops.one_hot(rows, self.carry_rows, dtype="float32")  # [b, rows]
        for variable, state in zip(self.carried, flat):
            variable.assign(ops.matmul(ops.transpose(onehot), ops.stop_gradient(ops.cast(state, "float32"))))

    # Generation.
    def _cells(self, tokens, states):
        """The LSTM outputs [N, units] after one token per row, and the states after it."""
        y = self.embedding(tokens)
        new_states = []
        for layer, state in zip(self.lstm_layers, states):
            y, new = layer.cell(y, state, training=False)
            # Loops carry the states in the dtype they came in (a mixed-precision cell may
            # return another one, which a while loop refuses).
            new_states.append([ops.cast(n, s.dtype) for n, s in zip(new, state)])
        return y, new_states

    def decoding_step(self, tokens, t, states, context):
        """Logits [N, vocab] of the token after `tokens` [N] (padding never: it would end a
        text on a server but not on a phone), and the states after it."""
        y, states = self._cells(tokens, states)
        logits = self.logits(y)
        never = ops.where(ops.equal(ops.arange(self.vocab_size), PAD), decoding.NEG_INF, 0.0)
        return logits + ops.cast(never, logits.dtype), states

    def prime(self, prompt_ids):
        """(states after all but the last token, the last token) of left-padded prompts
        [B, P] (P >= 2; padding leaves the zero state as it is).

        A loop of cell steps, not the LSTM layer over a mask: on a GPU, Keras's cuDNN path
        accepts only right-padded masks (it fails on left padding and on empty rows)."""
        if not self.built:
            self.build()
        zeros = ops.zeros((ops.shape(prompt_ids)[0], self.units), self.compute_dtype)

        def body(i, states):
            token = ops.take(prompt_ids, i, axis=1)
            _, new = self._cells(token, states)
            real = ops.expand_dims(ops.not_equal(token, PAD), -1)
            return [[ops.where(real, n, o) for n, o in zip(pair_new, pair_old)]
                    for pair_new, pair_old in zip(new, states)]

        states = ops.fori_loop(0, ops.shape(prompt_ids)[1] - 1, body,
                               [[zeros, zeros] for _ in range(self.num_layers)])
        return states, prompt_ids[:, -1]

    def sample(self, prompt_ids, max_length, seed, temperature, top_k, top_p, length=None):
        """Continuations [B, max_length] of left-padded prompts [B, P], each ending at the
        separator then padding (`decoding.sample`); `length` (<= max_length) may stop sooner.
        Each row draws what it would draw alone (a phone's batch of one samples the text a
        server's batch gives that prompt)."""
        states, last = self.prime(prompt_ids)
        return decoding.sample(self.decoding_step, states, (), ops.shape(prompt_ids)[0], max_length, last, SEP,
                               PAD, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, length=length,
                               per_row=False)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "units": self.units, "num_layers": self.num_layers, "dropout": self.dropout_rate,
                "embedding_dropout": self.embedding_dropout_rate, "tie_embeddings": self.tie_embeddings,
                "carry_rows": self.carry_rows}
