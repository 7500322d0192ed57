"""Cross-entropy shared by the text models (translator, BERT classifier; T5 and the language model later),
and R-Drop's symmetric KL (the BERT classifier)."""

from keras import backend, ops


def token_cross_entropy(labels, logits, label_smoothing=0.0):
    """Cross-entropy of each position, `[..., T]`, optionally label-smoothed.

    With smoothing `e`, the target puts `1 - e` on the label and spreads `e` evenly over the
    vocabulary (Szegedy et al. 2016): `(1 - e) * -log p(label) + e * mean(-log p)`, where
    `mean(-log p) = logsumexp(logits) - mean(logits)`.

    `-log p(label)` is the fused sparse softmax cross-entropy (TensorFlow's
    `sparse_softmax_cross_entropy_with_logits`): picking the label's log-probability out of
    `log_softmax` instead made its gradient a scatter into the whole `[batch, T, vocabulary]`
    tensor, 20% of the translator's training op time (WORKSPACE_NOTES.md, "Session 12").

    Args:
        labels: int token ids `[..., T]`.
        logits: `[..., T, vocabulary]` (float32).
        label_smoothing: `e` in [0, 1).

    Example:
        >>> import numpy as np
        >>> logits = np.log(np.array([[[0.5, 0.25, 0.25]]], "float32"))
        >>> round(float(token_cross_entropy(np.array([[0]]), logits)[0, 0]), 4)  # -log 0.5
        0.6931
        >>> round(float(token_cross_entropy(np.array([[0]]), logits, 0.3)[0, 0]), 4)
        0.8318
    """
    if label_smoothing and backend.backend() == "tensorflow":
        return _tf_smoothed_cross_entropy(labels, logits, float(label_smoothing))
    nll = ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"), logits, from_logits=True)
    if not label_smoothing:
        return nll
    uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
    return (1.0 - label_smoothing) * nll + label_smoothing * uniform


def _tf_smoothed_cross_entropy(labels, logits, label_smoothing):
    """`token_cross_entropy` with smoothing, in one pass over the logits each way (TensorFlow).

    Written as `nll + e * (logit[label] - mean(logits))` (since `logsumexp = nll +
    logit[label]`), with its gradient `softmax - (1 - e) one_hot(label) - e / V` written out
    from the fused op's own `softmax - one_hot(label)`: the generic form (a `logsumexp`, then
    the sum of three gradients) took as many passes again over the `[batch, T, vocabulary]`
    logits (WORKSPACE_NOTES.md, "Session 13").
    """
    import tensorflow as tf  # the TensorFlow backend only (the caller checks)

    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)  # the loss in float32 whatever the caller's dtype
    if labels.shape.rank == logits.shape.rank:  # [..., 1] labels, as Keras's sparse loss accepts
        labels = tf.squeeze(labels, -1)
    vocab = tf.shape(logits)[-1]
    flat_labels = tf.reshape(labels, [-1])

    @tf.custom_gradient
    def smoothed(logits):
        flat = tf.reshape(logits, [-1, vocab])
        nll, softmax_less_one_hot = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=flat, labels=flat_labels)
        label_logit = tf.gather(flat, flat_labels, batch_dims=1)
        loss = nll + label_smoothing * (label_logit - tf.reduce_mean(flat, -1))

        def gradient(d_loss):
            uniform = label_smoothing / tf.cast(vocab, tf.float32)
            shift = tf.one_hot(flat_labels, vocab, on_value=label_smoothing - uniform, off_value=-uniform)
            # A gradient of this gradient would silently be wrong (the fused op's second output
            # has none): fail loudly instead, as TensorFlow's own sparse loss does.
            first_order = tf.raw_ops.PreventGradient(
                input=softmax_less_one_hot, message="second derivative of the label-smoothed cross-entropy")
            return tf.reshape((first_order + shift) * tf.reshape(d_loss, [-1, 1]), tf.shape(logits))

        return tf.reshape(loss, tf.shape(labels)), gradient

    return smoothed(logits)


def masked_mean(values, mask):
    """The mean of `values` [B, T] over the positions where `mask` [B, T] is 1, per example [B]
    (0 for an example with no position)."""
    return ops.sum(values * mask, -1) / ops.maximum(ops.sum(mask, -1), 1.0)


def symmetric_kl(logits_a, logits_b):
    """`(KL(p || q) + KL(q || p)) / 2` of the softmax distributions of two logits `[..., K]`,
    over the last axis, in nats (R-Drop's consistency term).

    Example:
        >>> import numpy as np
        >>> a, b = np.log([[0.5, 0.5]]), np.log([[0.75, 0.25]])
        >>> round(float(symmetric_kl(a, b)[0]), 4)  # (0.1438 + 0.1308) / 2
        0.1373
    """
    log_p = ops.log_softmax(ops.cast(logits_a, "float32"), axis=-1)
    log_q = ops.log_softmax(ops.cast(logits_b, "float32"), axis=-1)
    return 0.5 * ops.sum((ops.exp(log_p) - ops.exp(log_q)) * (log_p - log_q), axis=-1)
