"""T5's span corruption (Raffel et al. 2020, section 3.1.4), in TensorFlow ops for `tf.data`.

A share `density` of a text's tokens is dropped in spans of mean length `mean_span_length`.
The inputs keep the other tokens, each dropped span replaced by its own sentinel (the first
span by `<extra_id_0>`, the next by `<extra_id_1>`, ...); the targets are each sentinel
followed by the tokens it replaced. As in T5's `random_spans_noise_mask`, the text is cut into
alternating kept and dropped spans, starting with a kept one and ending with a dropped one;
both partitions are uniformly random, drawn from a stateless seed: the same seed gives the
same spans on any machine and after any resume.

Example:
    >>> import tensorflow as tf
    >>> ids = tf.range(10, 30)                                    # a text of 20 tokens
    >>> mask = noise_mask(20, tf.constant([1, 2]))
    >>> int(tf.reduce_sum(tf.cast(mask, tf.int32))), bool(mask[-1])    # 3 of 20 dropped, last
    (3, True)
    >>> inputs, targets = corrupt(ids, mask, tf.constant([99, 98, 97]))
    >>> int(tf.size(inputs)) + int(tf.size(targets)) == 20 + 2 * 1   # one span: one sentinel each
    True
"""

import tensorflow as tf


def span_counts(length, density=0.15, mean_span_length=3.0):
    """(noise tokens, noise spans) of a text of `length` tokens (int32 scalars): T5's rounding,
    at least one of each and at least one token kept."""
    length = tf.cast(length, tf.int32)
    noise = tf.cast(tf.round(tf.cast(length, tf.float32) * density), tf.int32)
    noise = tf.clip_by_value(noise, 1, tf.maximum(length - 1, 1))
    spans = tf.maximum(tf.cast(tf.round(tf.cast(noise, tf.float32) / mean_span_length), tf.int32), 1)
    return noise, spans


def _segment_lengths(items, segments, seed):
    """A uniformly random split of `items` into `segments` positive lengths."""
    first = tf.range(items - 1) < segments - 1  # segments - 1 boundaries among items - 1 gaps
    first = tf.random.experimental.stateless_shuffle(first, seed)
    first = tf.pad(first, [[1, 0]])
    segment = tf.cumsum(tf.cast(first, tf.int32))
    return tf.math.unsorted_segment_sum(tf.ones_like(segment), segment, segments)


def noise_mask(length, seed, density=0.15, mean_span_length=3.0):
    """bool [length]: the dropped tokens of a text of `length` >= 2 tokens."""
    length = tf.cast(length, tf.int32)
    noise, spans = span_counts(length, density, mean_span_length)
    spans = tf.minimum(spans, tf.minimum(noise, length - noise))
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    noise_lengths = _segment_lengths(noise, spans, seeds[0])
    kept_lengths = _segment_lengths(length - noise, spans, seeds[1])
    interleaved = tf.reshape(tf.stack([kept_lengths, noise_lengths], axis=1), [-1])
    starts = tf.cumsum(interleaved)[:-1]
    start_of_span = tf.scatter_nd(starts[:, None], tf.ones_like(starts), [length])
    return tf.equal(tf.cumsum(start_of_span) % 2, 1)


def corrupt(ids, mask, sentinel_ids):
    """(inputs, targets) of token ids [L] with the dropped positions `mask` [L].

    Inputs: the kept tokens, with sentinel i where dropped span i was. Targets: sentinel i then
    the tokens of span i, for every span in order. Neither has an end token yet.
    """
    previous = tf.pad(mask[:-1], [[1, 0]])
    span_start = tf.logical_and(mask, tf.logical_not(previous))
    span_index = tf.cumsum(tf.cast(span_start, tf.int32)) - 1
    sentinel = tf.gather(sentinel_ids, tf.maximum(span_index, 0))
    inputs = tf.boolean_mask(tf.where(span_start, sentinel, ids), tf.logical_or(tf.logical_not(mask), span_start))
    # Each dropped position contributes (its span's sentinel if it starts the span, itself).
    pairs = tf.stack([tf.where(span_start, sentinel, -1), tf.where(mask, ids, -1)], axis=1)
    flat = tf.reshape(pairs, [-1])
    return inputs, tf.boolean_mask(flat, flat >= 0)
