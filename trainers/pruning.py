"""Gradual magnitude pruning for Keras 3 models, under any `tf.distribute` strategy.

The TensorFlow Model Optimization Toolkit prunes only legacy tf-keras models, so the trainer
does it itself: Zhu and Gupta's (2017) polynomial schedule raises each chosen weight's
sparsity from 0 to `prune_sparsity` between `prune_begin_step` and `prune_end_step`,
recomputing a mask from the weights' magnitudes every `prune_frequency` steps, and after every
optimizer step the weights are multiplied by their masks (so a pruned weight stays zero even
though Adam's moments keep moving it). The masks are variables the trainer owns, outside the
model: they are checkpointed beside it (exact resume) and never exported (the weights carry
the zeros).

Example:
    >>> schedule = PolynomialSparsity(0.8, begin_step=0, end_step=100, frequency=10)
    >>> [round(float(schedule(s)), 4) for s in (0, 10, 50, 100, 200)]
    [0.0, 0.2168, 0.7, 0.8, 0.8]
"""

import re

import numpy as np
import tensorflow as tf

# Trainable variables pruned by default: kernels of dense, einsum-dense, convolution and LSTM
# layers. Embedding tables, norms and biases are left dense (`prune_variables` changes it).
DEFAULT_VARIABLES = r"(^|/)(recurrent_)?kernel$"
STRUCTURES = ("unstructured", "2:4")


class PruningError(ValueError):
    """Pruning settings that cannot work (named by their `--config` key)."""


class PolynomialSparsity:
    """Zhu and Gupta's schedule: `s_t = s_f (1 - (1 - (t - t0) / (t1 - t0))^3)` rising from 0
    at `begin_step` to `target` at `end_step`, held at each mask update (every `frequency`
    steps, and at `end_step`) until the next.

    `end_step` is an int, or a callable returning it as a tensor (two thirds of the trainer's
    planned steps, which a time budget moves).
    """

    def __init__(self, target, begin_step, end_step, frequency):
        self.target, self.begin, self.frequency = float(target), int(begin_step), int(frequency)
        self.end_step = end_step

    def end(self):
        return tf.cast(self.end_step() if callable(self.end_step) else self.end_step, tf.int64)

    def __call__(self, step):
        step, end = tf.cast(step, tf.int64), self.end()
        # The sparsity of the last mask update at or before `step`.
        updated = tf.where(step >= end, end, self.begin + (step - self.begin) // self.frequency * self.frequency)
        progress = tf.clip_by_value(tf.cast(updated - self.begin, tf.float64)
                                    / tf.cast(tf.maximum(end - self.begin, 1), tf.float64), 0.0, 1.0)
        sparsity = self.target * (1.0 - (1.0 - progress) ** 3)
        return tf.where(step < self.begin, tf.constant(0.0, tf.float64), sparsity)

    def updates_at(self, step):
        """Whether the masks are recomputed after `step` (a tensor)."""
        step, end = tf.cast(step, tf.int64), self.end()
        on_grid = (step - self.begin) % self.frequency == 0
        return ((step >= self.begin) & (step <= end) & on_grid) | (step == end)


def magnitude_mask(weights, sparsity):
    """A 0/1 mask keeping the `1 - sparsity` largest `|weights|` (ties: the first kept)."""
    flat = tf.reshape(tf.abs(weights), [-1])
    size = tf.size(flat, tf.int64)
    drop = tf.cast(tf.round(tf.cast(size, tf.float64) * tf.cast(sparsity, tf.float64)), tf.int64)
    order = tf.argsort(flat, stable=True)  # ascending: the smallest first
    mask = tf.tensor_scatter_nd_update(tf.ones_like(flat), order[:drop, None], tf.zeros([drop], flat.dtype))
    return tf.reshape(mask, tf.shape(weights))


def structured_axis(shape):
    """The input-feature axis along which 2:4 groups run: a convolution kernel's input
    channels (`[h, w, in, out]`), else the first axis (a dense or einsum kernel's input)."""
    return len(shape) - 2 if len(shape) == 4 else 0


def two_four_mask(weights):
    """A 0/1 mask keeping the 2 largest `|weights|` in every 4 consecutive along the input axis."""
    axis = structured_axis(weights.shape)
    moved = tf.experimental.numpy.moveaxis(tf.abs(weights), axis, -1)
    groups = tf.reshape(moved, [-1, 4])
    keep = tf.math.top_k(groups, 2).indices
    mask = tf.reduce_sum(tf.one_hot(keep, 4, dtype=weights.dtype), axis=1)
    return tf.experimental.numpy.moveaxis(tf.reshape(mask, tf.shape(moved)), -1, axis)


def select(model, pattern=DEFAULT_VARIABLES, structure="unstructured"):
    """The model's trainable variables (of two or more axes) whose path matches `pattern`
    (comma-separated regular expressions searched in `variable.path`); for 2:4, those whose
    input axis holds whole groups of 4."""
    patterns = [re.compile(p.strip()) for p in pattern.split(",") if p.strip()]
    chosen = [v for v in model.trainable_variables
              if len(v.shape) >= 2 and any(p.search(v.path) for p in patterns)]
    if structure == "2:4":
        chosen = [v for v in chosen if v.shape[structured_axis(v.shape)] % 4 == 0]
    return chosen


class Pruner:
    """Masks of a model's chosen weights, updated and applied by the trainer.

    Args:
        model: the Keras model (built).
        config: a `TrainerConfig` with `prune_sparsity` > 0.
        total_steps: the planned steps, where the schedule ends when `prune_end_step` is 0.
        strategy: the trainer's strategy (the masks are created under its scope).
    """

    def __init__(self, model, config, total_steps, strategy):
        c = config
        if c.prune_structure not in STRUCTURES:
            raise PruningError(f"--config prune_structure={c.prune_structure}: expected one of {', '.join(STRUCTURES)}.")
        if c.prune_structure == "2:4" and c.prune_sparsity != 0.5:
            raise PruningError(f"--config prune_sparsity={c.prune_sparsity}: 2:4 pruning keeps 2 of every 4 "
                               f"weights; set prune_sparsity=0.5.")
        if not 0.0 < c.prune_sparsity < 1.0:
            raise PruningError(f"--config prune_sparsity={c.prune_sparsity}: expected a share in (0, 1).")
        if c.prune_frequency < 1:
            raise PruningError(f"--config prune_frequency={c.prune_frequency}: expected 1 or more steps.")
        if c.prune_end_step and c.prune_end_step <= c.prune_begin_step:
            raise PruningError(f"--config prune_end_step={c.prune_end_step}: expected a step after "
                               f"prune_begin_step={c.prune_begin_step}.")

        def end():  # two thirds of the planned steps (a variable, moved by a time budget)
            return tf.maximum(tf.cast(total_steps, tf.int64) * 2 // 3, c.prune_begin_step + 1)

        end_step = c.prune_end_step or (end if hasattr(total_steps, "assign") else int(end()))
        self.structure = c.prune_structure
        self.schedule = PolynomialSparsity(c.prune_sparsity, c.prune_begin_step, end_step, c.prune_frequency)
        self.strategy = strategy
        self.weights = select(model, c.prune_variables, c.prune_structure)
        if not self.weights:
            raise PruningError(f"--config prune_variables={c.prune_variables}: matches no trainable weight of "
                               f"{model.name}; paths look like {model.trainable_variables[0].path!r}.")
        with strategy.scope():
            self.masks = [tf.Variable(tf.ones(v.shape, v.dtype), trainable=False, name="mask",
                                      synchronization=tf.VariableSynchronization.ON_WRITE,
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                          for v in self.weights]

    def describe(self):
        s = self.schedule
        return (f"{len(self.weights)} weight tensors to {s.target:g} sparsity ({self.structure}) "
                f"from step {s.begin} to {int(s.end())}, masks updated every {s.frequency} steps")

    def _zeros(self):
        return [int(np.sum(np.asarray(w.numpy()) == 0)) for w in self.weights]

    def sparsity(self):
        """The share of zeros over all pruned weights now."""
        return sum(self._zeros()) / sum(int(np.prod(w.shape)) for w in self.weights)

    def report(self):
        """What an export's manifest says of the pruned weights: their overall share of zeros,
        their count beside the model's, and each tensor's share."""
        sizes = [int(np.prod(w.shape)) for w in self.weights]
        zeros = self._zeros()
        return {"pruned": round(sum(zeros) / sum(sizes), 4), "pruned_parameters": sum(sizes),
                "tensors": {w.path: round(z / n, 4) for w, z, n in zip(self.weights, zeros, sizes)}}

    def after_step(self, step):
        """Recomputes the masks when the schedule says so at `step`, then masks the weights.
        Called in cross-replica context after each optimizer step: every replica holds the
        same weights, so each computes the same masks on its own device."""
        update = self.schedule.updates_at(step)
        sparsity = self.schedule(step)
        extended = self.strategy.extended
        for weight, mask in zip(self.weights, self.masks):
            def recompute(mask, weight):
                # A cond, not a select: the sort runs only on the steps that update the masks.
                def new():
                    chosen = two_four_mask(weight) if self.structure == "2:4" else magnitude_mask(weight, sparsity)
                    return tf.cast(chosen, mask.dtype)

                return mask.assign(tf.cond(update, new, lambda: tf.identity(mask)))

            extended.update(mask, recompute, args=(weight.value,))
            extended.update(weight.value, lambda weight, mask: weight.assign(weight * mask), args=(mask,))
