"""Keras callbacks the peers share (they stay plain `model.fit` recipes otherwise)."""

import time

import keras


class TimeLimit(keras.callbacks.Callback):
    """Stops `fit` at the first batch end after `seconds` of training (the equal-wall-time
    comparisons; the recipes themselves train a fixed number of epochs). With `start` (a
    `time.perf_counter()` value) the budget counts from there across several `fit` calls,
    else from each call's start; `spent` says whether it ran out."""

    def __init__(self, seconds, start=None):
        super().__init__()
        self.seconds, self.start = seconds, start
        self.spent = False

    def on_train_begin(self, logs=None):
        self.deadline = (time.perf_counter() if self.start is None else self.start) + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() >= self.deadline:
            self.spent = True
            self.model.stop_training = True
