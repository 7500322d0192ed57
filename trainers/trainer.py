"""The trainer: a loop it owns, on any `tf.distribute` strategy, with exact resume.

Keras 3 `fit` cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the
trainer runs its own loop: a per-replica step under `strategy.run` inside a `tf.function`,
losses scaled by the global batch, one optimizer per phase of the model's step.
"""

import json
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from trainers.config import TrainerConfig


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the model)."""


def make_optimizer(config):
    kwargs = {"learning_rate": config.learning_rate}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **kwargs)
    raise TrainingError(f"--config optimizer={config.optimizer}: expected 'adam' or 'adamw'.")


class Trainer:
    """Trains a zoo entry's model on a strategy, checkpointing into `workdir/checkpoints`.

    Args:
        entry: a `zoo.entry.ZooEntry` whose assets are loaded.
        config: a `TrainerConfig`.
        workdir: where checkpoints, TensorBoard logs and `metrics.jsonl` go.
        strategy: a `tf.distribute.Strategy`; the default strategy if None.

    Example:
        >>> import tempfile, zoo
        >>> from zoo import sources
        >>> workdir = tempfile.mkdtemp()
        >>> entry = zoo.registry.get("translator")(zoo.registry.get("translator").preset("tiny"), workdir)
        >>> entry.prepare(sources.parse("builtin:dates"))
        >>> trainer = Trainer(entry, TrainerConfig(steps=2, batch_size=8, log_every=1), workdir)
        >>> sorted(trainer.train(sources.parse("builtin:dates"), evaluate=False))
        ['loss', 'step']
    """

    def __init__(self, entry, config=None, workdir=None, strategy=None):
        self.entry = entry
        self.config = config or TrainerConfig()
        self.workdir = workdir or entry.workdir
        self.strategy = strategy or tf.distribute.get_strategy()
        if self.config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(self.config.seed)
        with self.strategy.scope():
            self.model = entry.build_model()
            self.model.build()
            self.phases = entry.phases(self.model)
            self.optimizers = [make_optimizer(self.config) for _ in self.phases]
            for phase, optimizer in zip(self.phases, self.optimizers):
                optimizer.build(phase.variables(self.model))
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint_dir = os.path.join(self.workdir, "checkpoints")

    # Checkpoints.
    def _checkpoint(self, iterator=None):
        objects = {f"optimizer_{p.name}": o for p, o in zip(self.phases, self.optimizers)}
        if isinstance(iterator, tf.__internal__.tracking.Trackable):
            objects["iterator"] = iterator
        # Dropout's random state lives in seed-generator variables that are not weights, and
        # the model's own checkpoint tracking misses them; without them a resumed run draws
        # other dropout masks than one never interrupted.
        weights = {id(v) for v in self.model.weights}
        seeds = [v.value for v in self.model.variables if id(v) not in weights]
        return tf.train.Checkpoint(model=self.model, step=self.step, seed_states=seeds, **objects)

    def restore(self, iterator=None):
        """Restores the latest checkpoint, if any; returns its path or None."""
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            try:
                status = self._checkpoint(iterator).restore(latest).assert_existing_objects_matched()
                if iterator is None:  # evaluate/predict/export: the input position is not needed
                    status.expect_partial()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise TrainingError(
                    f"{latest}: the checkpoint does not fit this model and config ({e})."
                ) from None
        return latest

    # The step.
    def _replica_step(self, batch):
        ctx = tf.distribute.get_replica_context()
        global_batch = self.config.batch_size
        losses = []
        for phase, optimizer in zip(self.phases, self.optimizers):
            variables = phase.variables(self.model)
            with tf.GradientTape() as tape:
                per_example = phase.loss(self.model, batch, training=True)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            # Dense gradients everywhere: Keras's Adam updates IndexedSlices (embedding rows)
            # lazily, only the rows a batch touches, so keeping them sparse on one device but
            # not after an all-reduce would make a run depend on the replica count.
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
            replicas = ctx.num_replicas_in_sync
            if replicas > 1:
                # Clip the global gradient, not each replica's share of it.
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            if self.config.clipnorm:
                grads, _ = tf.clip_by_global_norm(grads, self.config.clipnorm)
            if replicas > 1:
                # The Keras optimizer sums gradients over replicas again: hand it each one's share.
                grads = [g / replicas for g in grads]
            optimizer.apply_gradients(zip(grads, variables))
            losses.append(loss)
        return tf.stack(losses)

    def _make_train_function(self):
        replica_step = self._replica_step
        if self.config.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_steps(iterator, count):
            losses = tf.zeros([len(self.phases)])
            for _ in tf.range(count):
                per_replica = self.strategy.run(replica_step, args=(next(iterator),))
                losses = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            self.step.assign_add(tf.cast(count, tf.int64))
            return losses

        return train_steps

    # Evaluation.
    def validation_loss(self, source):
        loss_fn = tf.function(lambda batch: self.phases[0].loss(self.model, batch, training=False))
        total, count = 0.0, 0
        for batch in self.entry.dataset(source, "validation", self.config.batch_size, training=False):
            per_example = loss_fn(batch).numpy()
            total += float(per_example.sum())
            count += len(per_example)
        return total / max(count, 1)

    def evaluate(self, source):
        metrics = {"val_loss": self.validation_loss(source)}
        metrics.update(self.entry.evaluate(self.model, source, "validation"))
        return metrics

    # The loop.
    def train(self, source, evaluate=True):
        """Trains to `config.steps` (or `config.epochs`), resuming from the latest checkpoint.

        Returns:
            The last training loss, the step, and the last validation metrics.
        """
        c = self.config
        steps_per_epoch = max(1, self.entry.num_examples(source, "train") // c.batch_size)
        total = c.steps or c.epochs * steps_per_epoch
        dataset = self.entry.dataset(source, "train", c.batch_size, training=True, seed=c.seed)
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        checkpoint = self._checkpoint(iterator)
        manager = tf.train.CheckpointManager(
            checkpoint, self.checkpoint_dir, max_to_keep=c.keep_checkpoints, checkpoint_name="ckpt"
        )
        resumed = self.restore(iterator)
        start = int(self.step.numpy())
        if resumed:
            _log(f"Resumed from {resumed} at step {start}.")
            if not isinstance(iterator, tf.__internal__.tracking.Trackable):
                # tf.distribute's DistributedIterator cannot be checkpointed.
                _log("Warning: this strategy's input iterator is not checkpointed; the data order "
                     "restarts from the beginning of the shuffled stream.")
        train_steps = self._make_train_function()
        writer = tf.summary.create_file_writer(os.path.join(self.workdir, "logs", "train"))
        progress = keras.utils.Progbar(total, verbose=1) if sys.stdout.isatty() else None
        result = {"step": start}
        step = start
        window_seconds, window_steps = 0.0, 0
        deadline = time.perf_counter() + c.max_seconds if c.max_seconds else math.inf
        while step < total:
            boundaries = [total, _next_multiple(step, c.steps_per_execution)]
            boundaries += [_next_multiple(step, n) for n in (c.log_every, c.checkpoint_every, steps_per_epoch)]
            count = min(boundaries) - step
            chunk_start = time.perf_counter()
            losses = train_steps(iterator, tf.constant(count)).numpy()
            window_seconds += time.perf_counter() - chunk_start
            step += count
            window_steps += count
            if not np.all(np.isfinite(losses)):
                raise TrainingError(
                    f"Non-finite loss {losses.tolist()} at step {step}; the last good checkpoint "
                    f"({manager.latest_checkpoint}) is kept."
                )
            result = {"step": step, "loss": float(losses.sum())}
            if time.perf_counter() >= deadline:
                _log(f"Stopping at step {step}: --config max_seconds={c.max_seconds} reached.")
                total = step
            if progress is not None:
                progress.update(step, [("loss", result["loss"])])
            if step % c.log_every == 0 or step == total:
                # Time inside the training function only: not logging, checkpoints or evaluation.
                row = {
                    **result,
                    "examples_per_sec": window_steps * c.batch_size / window_seconds,
                    "step_time": window_seconds / window_steps,
                    "learning_rate": float(keras.ops.convert_to_numpy(self.optimizers[0].learning_rate)),
                }
                self._log_row("train", row, writer)
                window_seconds, window_steps = 0.0, 0
            if step % c.checkpoint_every == 0 or step == total:
                manager.save(checkpoint_number=step)
            if evaluate and (step % steps_per_epoch == 0 or step == total):
                metrics = self.evaluate(source)
                result.update(metrics)
                self._log_row("validation", {"step": step, "epoch": step / steps_per_epoch, **metrics}, writer)
        return result

    def _log_row(self, kind, row, writer):
        with writer.as_default(step=row["step"]):
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    tf.summary.scalar(f"{kind}/{key}", value)
        with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"kind": kind, **row}) + "\n")
        _log(f"[{kind}] " + " ".join(f"{k}={_fmt(v)}" for k, v in row.items()))


def _next_multiple(step, every):
    every = max(1, every)
    return (step // every + 1) * every


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _log(message):
    print(message, flush=True)
