"""Cross-entropy shared by the text models (translator, BERT classifier; T5 and the language model later)."""

from keras import ops


def token_cross_entropy(labels, logits, label_smoothing=0.0):
    """Cross-entropy of each position, `[..., T]`, optionally label-smoothed.

    With smoothing `e`, the target puts `1 - e` on the label and spreads `e` evenly over the
    vocabulary (Szegedy et al. 2016): `(1 - e) * -log p(label) + e * mean(-log p)`.

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
    log_probs = ops.log_softmax(logits, axis=-1)
    nll = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1), -1)
    if not label_smoothing:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)


def masked_mean(values, mask):
    """The mean of `values` [B, T] over the positions where `mask` [B, T] is 1, per example [B]
    (0 for an example with no position)."""
    return ops.sum(values * mask, -1) / ops.maximum(ops.sum(mask, -1), 1.0)
