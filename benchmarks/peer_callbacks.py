"""Keras callbacks the peers share (they stay plain `model.fit` recipes otherwise)."""

import time

import keras


class TimeLimit(keras.callbacks.Callback):
    """Stops `fit` at the first batch end after `seconds` of training (the equal-wall-time
    comparisons; the recipes themselves train a fixed number of epochs)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.deadline = time.perf_counter() + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() >= self.deadline:
            self.model.stop_training = True
