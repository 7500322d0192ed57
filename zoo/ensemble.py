"""Ensembles of models that predict distributions: the one formula for averaging them."""

import math

from keras import ops


def ensemble_logits(logits, temperature):
    """Logits whose distribution at `temperature` is the mean of the members' distributions at it.

    An ensemble predicts, and teaches, through the average of its members' (softened) predictions
    (Hinton et al. 2015, section 3); returning it as logits keeps one softmax and one KL formula.

    Example:
        >>> import numpy as np
        >>> both = ensemble_logits([np.log([[0.9, 0.1]]), np.log([[0.5, 0.5]])], 1.0)
        >>> np.round(np.exp(np.asarray(both)), 3)
        array([[0.7, 0.3]], dtype=float32)
    """
    if len(logits) == 1:
        return logits[0]
    log_p = ops.stack([ops.log_softmax(ops.cast(t, "float32") / temperature, axis=-1) for t in logits])
    return temperature * (ops.logsumexp(log_p, axis=0) - math.log(len(logits)))
