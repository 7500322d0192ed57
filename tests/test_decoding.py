"""The shared searches of `zoo/text/decoding.py`, on step functions whose answers are known."""

import itertools

import numpy as np
import pytest
from keras import ops

from zoo.text import decoding

START, END, PAD = 0, 1, 2


def _table_step(table):
    """A bigram model: the next token's logits depend only on the previous token. (The
    table is not `context`: that holds one row per generated row.)"""
    table = np.asarray(table, "float32")

    def step(tokens, t, state, context):
        return ops.take(table, tokens, axis=0), state

    return step, ()


def _sequence_log_prob(log_probs, sequence):
    total, previous = 0.0, START
    for token in sequence:
        total += log_probs[previous, token]
        if token == END:
            break
        previous = token
    return total


def test_greedy_follows_the_most_likely_token_and_pads_after_the_end():
    step, table = _table_step(np.log([[.1, .1, .1, .7], [.25] * 4, [.25] * 4, [.1, .8, .05, .05]]))
    ids = np.asarray(decoding.greedy_search(step, (), table, batch=2, max_length=5, start_id=START,
                                            end_id=END, pad_id=PAD))
    assert ids.tolist() == [[3, 1, PAD, PAD, PAD]] * 2


def test_beam_search_finds_the_best_sequence_that_greedy_misses():
    # Greedy takes 3 (0.6) and then must pay 0.5 * 0.5; 4 (0.4) leads to the end with 0.95.
    log_probs = np.log(np.array([
        [.001, .001, .001, .597, .4],    # start
        [.25, .25, .25, .25, .0001],     # end (never extended)
        [.25, .25, .25, .25, .0001],     # pad
        [.001, .499, .001, .499, .0001],  # 3
        [.01, .95, .01, .01, .02],       # 4
    ]) + 1e-9)
    step, table = _table_step(log_probs)
    greedy = np.asarray(decoding.greedy_search(step, (), table, 1, 3, START, END, PAD))[0]
    best = np.asarray(decoding.beam_search(step, (), table, 1, 3, START, END, PAD, beam_size=3,
                                           length_penalty=0.0))[0]
    # Every sequence of up to 3 tokens, brute force.
    candidates = [s for n in (1, 2, 3) for s in itertools.product(range(5), repeat=n)
                  if START not in s and PAD not in s and (END not in s[:-1])]
    brute = max(candidates, key=lambda s: _sequence_log_prob(log_probs, s) if s[-1] == END or len(s) == 3
                else -np.inf)
    assert greedy.tolist() == [3, 1, PAD]
    assert best.tolist()[:len(brute)] == list(brute) == [4, 1]
    assert _sequence_log_prob(log_probs, best) > _sequence_log_prob(log_probs, greedy)


def test_beam_scores_are_sorted_and_match_the_log_probabilities():
    rng = np.random.RandomState(0)
    probs = rng.dirichlet(np.ones(6), size=6)
    probs[:, [START, PAD]] = 1e-12  # never generated, so each hypothesis reads back unambiguously
    log_probs = np.log(probs / probs.sum(-1, keepdims=True)).astype("float32")
    step, table = _table_step(log_probs)
    _, hypotheses, scores = decoding.beam_search(step, (), table, 1, 4, START, END, PAD, beam_size=4,
                                                 length_penalty=0.0, return_scores=True)
    hypotheses, scores = np.asarray(hypotheses)[0], np.asarray(scores)[0]
    assert np.all(np.diff(scores) <= 1e-6), scores
    for sequence, score in zip(hypotheses, scores):
        tokens = [t for t in sequence if t != PAD]
        np.testing.assert_allclose(_sequence_log_prob(log_probs, tokens), score, rtol=1e-5)


def test_beam_of_one_is_greedy():
    rng = np.random.RandomState(3)
    step, table = _table_step(rng.randn(7, 7))
    np.testing.assert_array_equal(decoding.beam_search(step, (), table, 2, 6, START, END, PAD, beam_size=1),
                                  decoding.greedy_search(step, (), table, 2, 6, START, END, PAD))


def test_state_is_carried_and_reordered_per_beam():
    # A counter in the state: the logits favour token (count % 3) + 3, so the output is
    # 3, 4, 5, 3, ... only when each row's state follows its own hypothesis.
    def step(tokens, t, state, context):
        favoured = ops.mod(state, 3) + 3
        logits = ops.where(ops.expand_dims(favoured, -1) == ops.arange(6), 5.0, 0.0)
        return logits, state + 1

    for search in (decoding.greedy_search,
                   lambda *a: decoding.beam_search(*a, beam_size=3)):
        ids = np.asarray(search(step, ops.zeros((2,), "int32"), (), 2, 5, START, END, PAD))
        assert ids.tolist() == [[3, 4, 5, 3, 4]] * 2


def test_uniform_is_deterministic_spread_and_uncorrelated():
    draws = np.stack([np.asarray(decoding.uniform(7, t, 2000)) for t in range(20)])
    np.testing.assert_array_equal(draws[3], np.asarray(decoding.uniform(7, 3, 2000)))
    assert not np.array_equal(draws[3], np.asarray(decoding.uniform(8, 3, 2000)))
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.01
    counts = np.histogram(draws, bins=10, range=(0, 1))[0] / draws.size
    np.testing.assert_allclose(counts, 0.1, atol=0.01)
    # Consecutive steps of one row, and neighbouring rows of one step, are unrelated.
    assert abs(np.corrcoef(draws[:-1].ravel(), draws[1:].ravel())[0, 1]) < 0.03
    assert abs(np.corrcoef(draws[:, :-1].ravel(), draws[:, 1:].ravel())[0, 1]) < 0.03
    assert np.all(np.asarray(decoding.uniform(-5, 0, 10)) >= 0.0)


def _sampling_step(probs):
    return _table_step(np.log(np.asarray(probs, "float32")))


def _first_tokens(step, table, rows, **settings):
    ids = decoding.sample(step, (), table, rows, 1, START, END, PAD, **settings)
    return np.asarray(ids)[:, 0]


def test_sampling_follows_the_distribution_and_its_cuts():
    probs = [[.05, .05, .05, .5, .3, .05], *[[1 / 6] * 6] * 5]
    step, table = _sampling_step(probs)
    rows = 6000
    drawn = _first_tokens(step, table, rows, seed=11)
    frequencies = np.bincount(drawn, minlength=6) / rows
    # PAD (id 2 here) is never drawn before END: the others share its probability.
    np.testing.assert_allclose(frequencies, np.array([.05, .05, 0, .5, .3, .05]) / 0.95, atol=0.02)
    assert PAD not in drawn
    np.testing.assert_array_equal(drawn, _first_tokens(step, table, rows, seed=11))
    assert not np.array_equal(drawn, _first_tokens(step, table, rows, seed=12))
    # top_k=2 keeps 3 and 4 (0.5 : 0.3), top_p=0.6 keeps the same two, top_p=0.4 only 3.
    for settings in ({"top_k": 2}, {"top_p": 0.6}):
        frequencies = np.bincount(_first_tokens(step, table, rows, seed=1, **settings), minlength=6) / rows
        np.testing.assert_allclose(frequencies, [0, 0, 0, .625, .375, 0], atol=0.02)
    assert set(_first_tokens(step, table, 200, seed=1, top_p=0.4)) == {3}
    # Temperature: 0 is greedy, a low one sharpens, a high one flattens.
    assert set(_first_tokens(step, table, 200, seed=1, temperature=0.0)) == {3}
    sharp = np.mean(_first_tokens(step, table, rows, seed=2, temperature=0.3) == 3)
    flat = np.mean(_first_tokens(step, table, rows, seed=2, temperature=3.0) == 3)

    def share_of_3(temperature):  # p^(1/T), renormalized over the ids other than PAD
        p = np.array([.05, .05, .5, .3, .05]) ** (1 / temperature)
        return p[2] / p.sum()

    assert sharp == pytest.approx(share_of_3(0.3), abs=0.02) and share_of_3(0.3) > 0.8
    assert flat == pytest.approx(share_of_3(3.0), abs=0.02) and share_of_3(3.0) < 0.35


def test_sampling_settings_may_be_tensors():
    step, table = _sampling_step([[.05, .05, .05, .5, .3, .05], *[[1 / 6] * 6] * 5])
    as_numbers = _first_tokens(step, table, 300, seed=4, temperature=0.7, top_k=3, top_p=0.9)
    as_tensors = _first_tokens(step, table, 300, seed=ops.convert_to_tensor(4),
                               temperature=ops.convert_to_tensor(0.7), top_k=ops.convert_to_tensor(3),
                               top_p=ops.convert_to_tensor(0.9))
    np.testing.assert_array_equal(as_numbers, as_tensors)


def test_argmax_breaks_ties_towards_the_lower_index():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, -1.0, 2.0, 2.0]], "float32")
    assert np.asarray(decoding.argmax(x)).tolist() == [1, 2]
