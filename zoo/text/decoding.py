"""Greedy search, beam search and sampling over a model's step function, in `keras.ops`.

Every generator of the zoo (the translator, T5, the language model) supplies one function

    step(tokens [N], t, state, context) -> (logits [N, vocab], state)

that feeds the token at position `t` and returns the logits of the next one. `state` changes
from step to step (LSTM states, a self-attention key/value cache of fixed size); `context`
does not (encoder outputs, a cross-attention cache). Both are nested structures of tensors
whose first axis is the row. Beam search repeats both for its beams and reorders `state`
after each step; the model never writes a search of its own.

The loops are `keras.ops.while_loop`s over fixed-size buffers (no TensorArray), the argmax
is a `top_k` and random numbers come from integer arithmetic, so a loop frozen into TFLite
uses builtin ops only (WHILE, GATHER, TOPK_V2, CUMSUM, FLOOR_MOD). keras-hub's samplers are
the reference for the behaviour of each search; they are not used because they draw with
`random.categorical` (TF's and TFLite's kernels give different numbers for one seed) and
keep a dynamic prompt length.

Example:
    >>> import numpy as np
    >>> table = np.log(np.array([[.1, .2, .7], [.1, .8, .1], [.9, .05, .05]], "float32"))
    >>> def step(tokens, t, state, context):  # a bigram model: the next token's log-probs
    ...     return ops.take(table, tokens, axis=0), state
    >>> np.asarray(greedy_search(step, (), (), batch=1, max_length=4, start_id=0,
    ...                          end_id=0, pad_id=-1)).tolist()
    [[2, 0, -1, -1]]
"""

import keras
from keras import ops

NEG_INF = -1e9

# Three small multiplicative generators (after Wichmann and Hill, 1982): every product stays
# below 2**31, so int32 arithmetic gives the same numbers on every backend and in TFLite.
_MODULI = (30269, 30307, 30323)
_MULTIPLIERS = (171, 172, 170)


def argmax(x):
    """Index of the largest value on the last axis, as int32.

    `keras.ops.argmax` on TensorFlow adds a BitwiseAnd (for -0.0) that TFLite lacks as a
    builtin; `top_k` breaks ties towards the lower index just the same.
    """
    return ops.cast(ops.top_k(x, 1)[1][..., 0], "int32")


def _mix(x, modulus, multiplier):
    # Quadratic rounds: a linear generator alone makes draws at consecutive steps differ by
    # a constant (a Weyl sequence), which sampling must not see.
    for _ in range(3):
        x = ops.mod(x * x + multiplier * x + 1, modulus)
    return x


def uniform(seed, t, rows, per_row=True):
    """Numbers in [0, 1), one per row, from a seed and a step: a counter-based generator.

    The same (seed, t, row) always gives the same number, whatever the batch, backend or
    runtime, so a resumed or exported generation draws what the first one drew.

    Args:
        seed: int32 scalar (any value, negative included).
        t: int32 scalar, the decoding step.
        rows: how many numbers (a Python int or a scalar tensor).
        per_row: rows draw different numbers; when False every row draws row 0's (a
            prompt's sample then does not depend on its place in a batch).
    """
    seed = ops.cast(seed, "int32")
    t = ops.cast(t, "int32")
    row = ops.arange(rows, dtype="int32")
    if not per_row:
        row = row * 0
    total = 0.0
    for salt, (modulus, multiplier) in enumerate(zip(_MODULI, _MULTIPLIERS)):
        x = _mix(ops.mod(seed, modulus) + salt, modulus, multiplier)
        x = _mix(ops.mod(x + ops.mod(t, modulus), modulus), modulus, multiplier)
        x = _mix(ops.mod(x + ops.mod(row, modulus), modulus), modulus, multiplier)
        total = total + ops.cast(x, "float32") / float(modulus)
    return ops.mod(total, 1.0)


def _repeat(structure, times):
    return keras.tree.map_structure(lambda x: ops.repeat(x, times, axis=0), structure)


def _take_rows(structure, rows):
    return keras.tree.map_structure(lambda x: ops.take(x, rows, axis=0), structure)


def _initial(batch, start_id):
    """Step 0 and the first input tokens: `start_id` is one id for every row, or one per row
    (of the `batch` given: beam search's rows are batch x beams)."""
    return ops.convert_to_tensor(0, "int32"), ops.broadcast_to(ops.cast(start_id, "int32"), (batch,))


def _write(output, t, token):
    """`output` [..., T] with column `t` set to `token` [...] (no scatter: TFLite-friendly)."""
    positions = ops.arange(ops.shape(output)[-1], dtype="int32")
    return ops.where(ops.equal(positions, t), ops.expand_dims(token, -1), output)


def _no_pad(logits, pad_id):
    """`logits` [..., V] with `pad_id` ruled out: a hypothesis still running never emits the
    padding that marks finished ones (else it would end early, and its length, counted in
    non-pad tokens, would shrink the length penalty)."""
    return ops.where(ops.equal(ops.arange(ops.shape(logits)[-1]), pad_id), NEG_INF, logits)


def _search(step, state, context, batch, max_length, start_id, end_id, pad_id, choose, length=None):
    """The loop of greedy search and sampling: `choose(logits, t) -> tokens`; it stops after
    `length` steps (a tensor allowed, at most `max_length`, the buffer's size)."""
    limit = max_length if length is None else ops.minimum(ops.cast(length, "int32"), max_length)

    def cond(t, previous, state, finished, output):
        return ops.logical_and(t < limit, ops.logical_not(ops.all(finished)))

    def body(t, previous, state, finished, output):
        logits, state = step(previous, t, state, context)
        token = ops.where(finished, pad_id, choose(_no_pad(ops.cast(logits, "float32"), pad_id), t))
        output = _write(output, t, token)
        finished = ops.logical_or(finished, ops.equal(token, end_id))
        return t + 1, token, state, finished, output

    t, start = _initial(batch, start_id)
    loop_vars = (t, start, state, ops.zeros((batch,), "bool"), ops.full((batch, max_length), pad_id, "int32"))
    return ops.while_loop(cond, body, loop_vars)[-1]


def greedy_search(step, state, context, batch, max_length, start_id, end_id, pad_id=0):
    """The most likely token at every step: ids [batch, max_length], each row ending in
    `end_id` then `pad_id` (or cut at `max_length`)."""
    return _search(step, state, context, batch, max_length, start_id, end_id, pad_id,
                   lambda logits, t: argmax(logits))


def sample(step, state, context, batch, max_length, start_id, end_id, pad_id=0, seed=0,
           temperature=1.0, top_k=0, top_p=1.0, length=None, per_row=True):
    """Draws each token from the model's distribution: ids [batch, max_length].

    Args:
        seed: int scalar; the same seed gives the same tokens (see `uniform`).
        temperature: divides the logits; 0 or less picks the most likely token (greedy).
        top_k: keep only the `top_k` most likely tokens (0: all).
        top_p: keep the most likely tokens whose probabilities sum to at least `top_p`
            (nucleus sampling; 1: all). With `top_k`, both limits apply.
        length: tokens to draw at most (<= `max_length`; None: `max_length`).
        per_row: rows draw different numbers (see `uniform`); False gives every row the
            draws it would have alone, so a batch of prompts samples what each would alone.

    All four may be tensors (a serving signature's inputs). The draw is an inverse-CDF
    lookup of `uniform(seed, t, row)` in the sorted, cut, renormalized distribution.
    """
    temperature = ops.cast(temperature, "float32")
    top_k = ops.cast(top_k, "int32")
    top_p = ops.cast(top_p, "float32")

    def choose(logits, t):
        vocab = ops.shape(logits)[-1]
        greedy = argmax(logits)
        scaled = logits / ops.maximum(temperature, 1e-6)
        values, indices = ops.top_k(scaled, vocab)  # sorted, most likely first
        probs = ops.softmax(values, axis=-1)
        rank = ops.arange(vocab, dtype="int32")
        k = ops.where(top_k > 0, ops.minimum(top_k, vocab), vocab)
        # A token stays when the tokens ranked before it hold less than top_p (the first
        # always stays).
        before = ops.cumsum(probs, axis=-1) - probs
        keep = ops.logical_or(ops.logical_and(ops.expand_dims(rank < k, 0), before < top_p),
                              ops.expand_dims(rank == 0, 0))
        kept = ops.where(keep, probs, 0.0)
        cumulative = ops.cumsum(kept, axis=-1)
        target = ops.expand_dims(uniform(seed, t, ops.shape(logits)[0], per_row), -1) * cumulative[:, -1:]
        # The first rank whose cumulative probability exceeds the draw.
        choice = ops.sum(ops.cast(cumulative <= target, "int32"), axis=-1)
        last = ops.sum(ops.cast(keep, "int32"), axis=-1) - 1
        choice = ops.minimum(choice, last)
        drawn = ops.take_along_axis(indices, ops.expand_dims(choice, -1), axis=-1)[:, 0]
        return ops.where(temperature > 0.0, ops.cast(drawn, "int32"), greedy)

    return _search(step, state, context, batch, max_length, start_id, end_id, pad_id, choose, length)


def beam_search(step, state, context, batch, max_length, start_id, end_id, pad_id=0, beam_size=4,
                length_penalty=0.6, vocab_size=None, return_scores=False):
    """The best of `beam_size` hypotheses per row: ids [batch, max_length].

    Hypotheses are scored by summed log-probabilities; a finished one is only extended by
    `pad_id` at no cost. The final choice divides each score by the GNMT length penalty
    `((5 + length) / 6) ** length_penalty` (length counts the tokens up to and including
    `end_id`). `vocab_size` is needed when the logits' last axis is not static.

    Returns:
        ids [batch, max_length]; with `return_scores`, also every hypothesis
        ([batch, beam_size, max_length]) and its summed log-probability ([batch, beam_size]).
    """
    k = beam_size
    state, context = _repeat(state, k), _repeat(context, k)
    row_offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * k, 1)
    # All beams start equal: only the first is alive, so the top-k is not k copies.
    initial_scores = ops.tile(ops.expand_dims(ops.where(ops.arange(k) == 0, 0.0, NEG_INF), 0), (batch, 1))

    def cond(t, previous, state, finished, scores, output):
        return ops.logical_and(t < max_length, ops.logical_not(ops.all(finished)))

    def body(t, previous, state, finished, scores, output):
        logits, state = step(previous, t, state, context)
        vocab = vocab_size or ops.shape(logits)[-1]
        log_probs = ops.reshape(ops.log_softmax(ops.cast(logits, "float32"), axis=-1), (batch, k, vocab))
        pad_only = ops.where(ops.equal(ops.arange(vocab), pad_id), 0.0, NEG_INF)
        log_probs = ops.where(ops.expand_dims(finished, -1), pad_only, _no_pad(log_probs, pad_id))
        candidates = ops.reshape(ops.expand_dims(scores, -1) + log_probs, (batch, k * vocab))
        scores, best = ops.top_k(candidates, k)
        beam = ops.cast(best // vocab, "int32")
        token = ops.cast(best % vocab, "int32")
        rows = ops.reshape(beam + row_offsets, (-1,))
        state = _take_rows(state, rows)
        output = ops.reshape(ops.take(ops.reshape(output, (-1, max_length)), rows, axis=0), (batch, k, max_length))
        output = _write(output, t, token)
        finished = ops.logical_or(ops.reshape(ops.take(ops.reshape(finished, (-1,)), rows), (batch, k)),
                                  ops.equal(token, end_id))
        return t + 1, ops.reshape(token, (-1,)), state, finished, scores, output

    t, start = _initial(batch * k, start_id)
    loop_vars = (t, start, state, ops.zeros((batch, k), "bool"), initial_scores,
                 ops.full((batch, k, max_length), pad_id, "int32"))
    _, _, _, _, scores, output = ops.while_loop(cond, body, loop_vars)
    lengths = ops.cast(ops.sum(ops.cast(ops.not_equal(output, pad_id), "int32"), axis=-1), "float32")
    ranked = scores / ops.power((5.0 + lengths) / 6.0, length_penalty)
    rows = ops.arange(batch, dtype="int32") * k + argmax(ranked)
    best = ops.take(ops.reshape(output, (-1, max_length)), rows, axis=0)
    if return_scores:
        return best, output, scores
    return best
