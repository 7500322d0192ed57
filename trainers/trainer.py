"""The trainer: a loop it owns, on any `tf.distribute` strategy, with exact resume.

Keras 3 `fit` cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the
trainer runs its own loop: a per-replica step under `strategy.run` inside a `tf.function`,
losses scaled by the global batch, one optimizer per phase of the model's step.

Input: every worker runs the same seeded `tf.data` pipeline of global batches through a plain
iterator and hands each of its replicas that replica's slice of the global batch
(`experimental_distribute_values_from_function`; tf.data's DATA auto-sharding, done by hand).
So any strategy sees exactly the examples a single device would, step by step; and plain
iterators can be checkpointed (tf.distribute's distributed iterators cannot), so each worker
saves its input position beside the model checkpoint and a resumed run continues the stream
exactly. The cost: each worker tokenizes the whole global batch, cheap beside the model step.
"""

import dataclasses
import hashlib
import json
import math
import os
import signal
import socket
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from trainers import curves, distillation, precision, profiling, pruning
from trainers.config import TrainerConfig
from trainers.schedules import WarmupDecay
from trainers.strategy import is_chief, worker_id
from zoo import fileio, threads

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped on SIGTERM after a checkpoint; run again to resume


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the model)."""


class Preempted(RuntimeError):
    """Training stopped on SIGTERM after writing a checkpoint; running again resumes it."""


def make_optimizer(config, total_steps, policy="float32"):
    try:
        schedule = WarmupDecay(config.learning_rate, config.warmup_steps, total_steps, config.lr_schedule,
                               config.warmup_fraction)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if not 0.0 <= config.beta_1 < 1.0:
        raise TrainingError(f"--config beta_1={config.beta_1}: expected a value in [0, 1).")
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=schedule, beta_1=config.beta_1)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay,
                                           beta_1=config.beta_1)
    else:
        raise TrainingError(f"--config optimizer={config.optimizer}: expected 'adam' or 'adamw'.")
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class Trainer:
    """Trains a zoo entry's model on a strategy, checkpointing into `workdir/checkpoints`.

    Args:
        entry: a `zoo.entry.ZooEntry` whose assets are loaded.
        config: a `TrainerConfig`.
        workdir: where checkpoints, TensorBoard logs and `metrics.jsonl` go.
        strategy: a `tf.distribute.Strategy`; the default strategy if None.
        source: the training data, to size the learning-rate schedule in epochs.

    Example:
        >>> import tempfile, zoo
        >>> from zoo import sources
        >>> workdir = tempfile.mkdtemp()
        >>> entry = zoo.registry.get("translator")(zoo.registry.get("translator").preset("tiny"), workdir)
        >>> entry.prepare(sources.parse("builtin:dates"))
        >>> trainer = Trainer(entry, TrainerConfig(steps=2, batch_size=8, log_every=1), workdir)
        >>> result = trainer.train(sources.parse("builtin:dates"), evaluate=False)
        Precision: ...
        Training length: 2 steps (--steps).
        [train] step=1 loss=...
        [train] step=2 loss=...
        [done] worker=0 step=2 weights_sha256=...
        >>> sorted(result)
        ['loss', 'step']
    """

    def __init__(self, entry, config=None, workdir=None, strategy=None, source=None):
        self.entry = entry
        self.config = c = config or TrainerConfig()
        self.workdir = workdir or entry.workdir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        self.worker = worker_id(self.strategy)
        if c.batch_size % self.strategy.num_replicas_in_sync:
            raise TrainingError(
                f"--batch_size={c.batch_size} does not split evenly over "
                f"{self.strategy.num_replicas_in_sync} replicas."
            )
        profile = profiling.parse_steps(c.profile_steps)
        if c.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.policy, self.policy_reason = precision.choose(
            c.mixed_precision, tpu=isinstance(self.strategy, tf.distribute.TPUStrategy))
        keras.utils.set_random_seed(c.seed)
        self.profiler = profiling.StepProfiler(profile, os.path.join(self.workdir, "logs", "profile"),
                                               trace=self.chief) if profile else None
        self.steps_per_epoch = self.total_steps = None
        self.length_note = ""
        if source is not None:
            self._plan_length(source)
        # XLA (a TPU, jit_compile) compiles the step once per input shape; elsewhere batches
        # may be cut to their longest example.
        entry.static_shapes = bool(c.jit_compile) or isinstance(self.strategy, tf.distribute.TPUStrategy)
        entry.jit_compile = bool(c.jit_compile)
        entry.batch_size = c.batch_size
        # Layers take the policy when they are built; the global one is put back afterwards.
        with self.strategy.scope(), precision.policy_scope(self.policy):
            self.model = entry.build_model()
            self.model.build()
            self.phases = entry.phases(self.model)
            # Validation reports the task loss, also when training adds a teacher's term.
            self._task_loss = self.phases[0].loss
            self.teacher = None
            if c.teacher:
                self.teacher = distillation.Teacher(entry, c)
                self.phases[0] = dataclasses.replace(self.phases[0], loss=self.teacher.loss)
            # Where the learning-rate decay ends: the planned total, or the steps that fit a
            # time budget (moved during training, agreed by all workers; see `train`).
            self.planned_steps = tf.Variable(self.total_steps or 1, dtype=tf.int64, trainable=False,
                                             name="planned_steps")
            self.optimizers = [make_optimizer(c, self.planned_steps, self.policy) for _ in self.phases]
            for phase, optimizer in zip(self.phases, self.optimizers):
                optimizer.build(phase.variables(self.model))
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.pruner = pruning.Pruner(self.model, c, self.planned_steps, self.strategy) if c.prune_sparsity else None
            # Early stopping's state lives in the checkpoint: a resumed run counts the
            # evaluations since its checkpoint once, as a run never interrupted did.
            self.early_stopping = tf.train.Checkpoint(
                best=tf.Variable(float("nan"), dtype=tf.float64, trainable=False, name="best_value"),
                best_step=tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step"),
                bad_evaluations=tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_evaluations"))
        self.checkpoint_dir = os.path.join(self.workdir, "checkpoints")
        # Every worker must take part in a save; only the chief's lands in the real folder.
        self._save_dir = self.checkpoint_dir if self.chief else os.path.join(
            self.checkpoint_dir, f".worker-{self.worker}-tmp")
        self._stop_requested = False
        # Set the moment SIGTERM arrives (by a watcher thread, while a chunk of steps runs):
        # every step reads it and the workers agree on it, so a chunk of any length ends at
        # the next step (`_install_sigterm_handler`). A worker's own flag, outside the strategy.
        with tf.device("/cpu:0"):
            self._stop_flag = tf.Variable(0.0, trainable=False, name="stop_requested")
        self._validation_loss_fn = None
        self._broadcast_fn = None
        self.restored = None  # the checkpoint `restore` read
        self._multi_worker = isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
            self.strategy.extended._num_workers > 1  # noqa: SLF001

    def _plan_length(self, source):
        """Sets `steps_per_epoch` and `total_steps` (and says how the length was chosen)."""
        c = self.config
        examples = self.entry.num_examples(source, "train")
        self.steps_per_epoch = max(1, examples // c.batch_size)
        if c.steps:
            self.total_steps, self.length_note = c.steps, f"{c.steps:,} steps (--steps)"
            return
        epochs, how = c.epochs, "--epochs"
        if not epochs:
            length = self.entry.training_length
            epochs = length.epochs(examples, c.batch_size)
            how = (f"picked for {examples:,} training examples at batch {c.batch_size}: "
                   f"{self.entry.name} trains {length.describe()}; set --epochs or --steps to choose")
        self.total_steps = epochs * self.steps_per_epoch
        self.length_note = (f"{epochs} epoch{'s' * (epochs != 1)} of {self.steps_per_epoch:,} steps = "
                            f"{self.total_steps:,} steps ({how})")

    # Checkpoints.
    def _checkpoint(self, early_stopping=True, model_state=True, pruning_masks=True):
        objects = {f"optimizer_{p.name}": o for p, o in zip(self.phases, self.optimizers)}
        if self.pruner is not None and pruning_masks:  # outside the model: exports leave them out
            objects["pruning_masks"] = self.pruner.masks
        if early_stopping:  # not in checkpoints written before 2026-11-27
            objects["early_stopping"] = self.early_stopping
        if model_state:  # not in checkpoints written before 2026-11-28
            # Non-trainable weights (moving statistics, a language model's carried state):
            # the model's own tracking misses those kept in Python lists of layers or
            # variables, and the optimizers (which track the trainable ones) never see them.
            objects["model_state"] = [v.value for v in self.model.non_trainable_weights]
        # Dropout's random state lives in seed-generator variables that are not weights, and
        # the model's own checkpoint tracking misses them; without them a resumed run draws
        # other dropout masks than one never interrupted.
        weights = {id(v) for v in self.model.weights}
        seeds = [v.value for v in self.model.variables if id(v) not in weights]
        return tf.train.Checkpoint(model=self.model, step=self.step, seed_states=seeds,
                                   planned_steps=self.planned_steps, **objects)

    def _input_dir(self):
        return os.path.join(self.checkpoint_dir, "input", f"worker-{self.worker}")

    def restore(self, iterator=None, checkpoint=None):
        """Restores the latest checkpoint, or the one at the prefix `checkpoint` (and, when
        training, this worker's input position); returns its path (also in `restored`)."""
        latest = checkpoint or tf.train.latest_checkpoint(self.checkpoint_dir)
        self.restored = latest
        if not latest:
            return None
        # The reader takes the prefix itself (`tf.train.list_variables` asks whether it is a
        # folder first, which filesystems that know no folders, such as ram://, answer wrongly).
        stored = {name.split("/")[0] for name in tf.compat.v1.train.NewCheckpointReader(latest).get_variable_to_shape_map()}
        try:
            status = self._checkpoint("early_stopping" in stored, "model_state" in stored,
                                      "pruning_masks" in stored).restore(
                latest).assert_existing_objects_matched()
            if iterator is None:  # evaluate/predict/export: the optimizers' slots are not needed
                status.expect_partial()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise TrainingError(f"{latest}: the checkpoint does not fit this model and config ({e}).") from None
        if iterator is not None:
            step = int(self.step.numpy())
            position = os.path.join(self._input_dir(), f"input-{step}")
            if tf.io.gfile.exists(position + ".index"):
                tf.train.Checkpoint(iterator=iterator).read(position).assert_consumed()
            else:
                _log(f"Warning: no input position {position} for step {step}; the data stream restarts.")
        return latest

    def _save(self, manager, iterator, step):
        # The input position first: a kill between the two saves leaves the model checkpoint
        # at the previous step, whose input position is still on disk.
        input_checkpoint = tf.train.Checkpoint(iterator=iterator)
        fileio.makedirs(self._input_dir())
        input_checkpoint.write(os.path.join(self._input_dir(), f"input-{step}"))
        manager.save(checkpoint_number=step)
        keep = {int(os.path.basename(p).split("-")[-1]) for p in manager.checkpoints}
        for name in fileio.listdir(self._input_dir()):
            number = name.split(".")[0].split("-")[-1]
            if number.isdigit() and int(number) not in keep and int(number) != step:
                fileio.remove(os.path.join(self._input_dir(), name))
        if not self.chief:
            fileio.rmtree(self._save_dir)

    # Input.
    def _distribute(self, batch):
        if self.strategy.num_replicas_in_sync == 1:
            return batch
        per_replica = self.config.batch_size // self.strategy.num_replicas_in_sync

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.nest.map_structure(lambda t: t[i * per_replica:(i + 1) * per_replica], batch)

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    # The step.
    def _replica_step(self, batch, stop_flag):
        """One optimizer step of every phase; returns (losses, stop), `stop` > 0 when any
        worker's stop flag was set: it rides in the first phase's gradient all-reduce, so the
        workers agree on it at no extra collective."""
        ctx = tf.distribute.get_replica_context()
        losses = []
        stop = tf.identity(tf.cast(stop_flag, tf.float32))  # on this replica's device, for the all-reduce
        for phase, optimizer in zip(self.phases, self.optimizers):
            variables = phase.variables(self.model)
            scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            with tf.GradientTape() as tape:
                per_example = tf.cast(phase.loss(self.model, batch, training=True), tf.float32)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)
                target = optimizer.scale_loss(loss) if scaled else loss
            # Dense gradients everywhere: Keras's Adam updates IndexedSlices (embedding rows)
            # lazily, only the rows a batch touches, so keeping them sparse on one device but
            # not after an all-reduce would make a run depend on the replica count.
            grads = tape.gradient(target, variables)
            # Variables the loss does not reach (a pooler a masked LM never uses) are left out,
            # not given zero gradients, which weight decay would still shrink.
            variables = [v for v, g in zip(variables, grads) if g is not None]
            grads = [tf.convert_to_tensor(g) for g in grads if g is not None]
            replicas = ctx.num_replicas_in_sync
            if replicas > 1:
                # Clip the global gradient, not each replica's share of it.
                if not losses:
                    *grads, stop = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads + [stop])
                else:
                    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            if self.config.clipnorm:
                grads = self._clip(grads, variables, phase, optimizer if scaled else None)
            if replicas > 1:
                # The Keras optimizer sums gradients over replicas again: hand it each one's share.
                grads = [g / replicas for g in grads]
            optimizer.apply_gradients(zip(grads, variables))
            losses.append(loss)
        return tf.stack(losses), stop

    def _clip(self, grads, variables, phase, scaled_optimizer):
        """`grads` with the global norm of each clip group (the phase's `clip_groups`, or all of
        them as one) cut to `clipnorm`, measured in true (unscaled) units; a non-finite norm keeps
        its gradients non-finite, so the loss-scale optimizer still skips that step."""
        group_of = [0] * len(grads)
        if phase.clip_groups is not None:
            index = {id(v): i for i, group in enumerate(phase.clip_groups(self.model)) for v in group}
            group_of = [index[id(v)] for v in variables]
        factors = {}
        for group in sorted(set(group_of)):
            norm = tf.linalg.global_norm([g for g, k in zip(grads, group_of) if k == group])
            if scaled_optimizer is not None:
                norm = norm / tf.cast(scaled_optimizer.dynamic_scale, norm.dtype)
            factors[group] = self.config.clipnorm / tf.maximum(norm, self.config.clipnorm)
        return [g * tf.cast(factors[k], g.dtype) for g, k in zip(grads, group_of)]

    def _make_train_function(self):
        replica_step = self._replica_step
        if self.config.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_steps(iterator, count, stop_requested, planned_estimate):
            """Up to `count` steps; (losses of the last, stop, planned steps, steps done, the
            chunk's first step with a non-finite loss or 0). A stop request ends the chunk at
            the next step (agreed by every worker inside the step)."""
            one_replica = self.strategy.num_replicas_in_sync == 1

            def more(done, losses, non_finite_at, stopped):
                return tf.logical_and(done < count, tf.logical_not(stopped))

            def one_step(done, losses, non_finite_at, stopped):
                step_losses, agreed = self.strategy.run(
                    replica_step, args=(self._distribute(next(iterator)), self._stop_flag.read_value()))
                losses = self.strategy.reduce(tf.distribute.ReduceOp.SUM, step_losses, axis=None)
                done += 1
                if self.pruner is not None:
                    self.pruner.after_step(self.step + done)
                non_finite_at = tf.where(
                    tf.logical_and(non_finite_at == 0, tf.logical_not(tf.reduce_all(tf.math.is_finite(losses)))),
                    done, non_finite_at)
                if one_replica:
                    # Read beside the step, not after it: the loop's condition then waits on
                    # no step's result, and the next step may start early (deciding on the
                    # step's own outputs cost a few percent of the step rate: WORKSPACE_NOTES.md).
                    stopped = self._stop_flag.read_value() > 0
                else:
                    # Several replicas decide on the flag all-reduced inside the step: the same
                    # step on every worker (their all-reduce syncs every step anyway).
                    stopped = self.strategy.experimental_local_results(agreed)[0] > 0
                return done, losses, non_finite_at, stopped

            count = tf.cast(count, tf.int64)
            # One replica may stop before its first step; several must agree inside a step.
            stopped = self._stop_flag.read_value() > 0 if one_replica else tf.constant(False)
            done, losses, non_finite_at, stopped = tf.while_loop(
                more, one_step, (tf.constant(0, tf.int64), tf.zeros([len(self.phases)]), tf.constant(0, tf.int64),
                                 stopped))
            self.step.assign_add(done)
            # Every worker learns whether any was asked to stop between chunks, so all stop at
            # the same step, and all take the same plan (the mean of their time-budget estimates).
            flags = self.strategy.run(lambda: tf.identity(stop_requested))
            stop = tf.logical_or(stopped, self.strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None) > 0)
            estimates = self.strategy.run(lambda: tf.identity(planned_estimate))
            estimate = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, estimates, axis=None)
            self.planned_steps.assign(tf.maximum(self.step, tf.cast(tf.round(estimate), tf.int64)))
            return losses, stop, self.planned_steps.read_value(), done, non_finite_at

        return train_steps

    # Evaluation.
    def validation_loss(self, source, split="validation"):
        # Traced once per trainer, not at every evaluation.
        if self._validation_loss_fn is None:
            # reduce_retracing: batches cut to their longest example (`static_shapes` False)
            # come in several shapes; one trace with unknown lengths serves them all.
            self._validation_loss_fn = tf.function(
                lambda batch: self._task_loss(self.model, batch, training=False), reduce_retracing=True)
        total, count = 0.0, 0
        for batch in self.entry.dataset(source, split, self.config.batch_size, training=False):
            per_example = np.asarray(self._validation_loss_fn(batch), dtype=np.float64)
            total += float(per_example.sum())
            count += len(per_example)
        return total / max(count, 1)

    def evaluate(self, source, split="validation"):
        """The validation loss and the entry's task metrics on `split` of `source`."""
        metrics = {self.entry.validation_loss_name: self.validation_loss(source, split)}
        if self.pruner is not None:
            metrics["sparsity"] = self.pruner.sparsity()
        metrics.update(self.entry.evaluate(self.model, source, split))
        return metrics

    # Early stopping.
    def _best_path(self):
        return os.path.join(self.checkpoint_dir, "best", "best.json")

    def early_stopping_target(self):
        """(metric name, "min" or "max") that early stopping watches."""
        c = self.config
        task, task_mode = self.entry.validation_metric
        name = task if c.early_stopping_metric == "task" else c.early_stopping_metric
        mode = c.early_stopping_mode
        if mode == "auto":
            mode = task_mode if name == task else (
                "min" if "loss" in name or "distance" in name else "max")
        if mode not in ("min", "max"):
            raise TrainingError(f"--config early_stopping_mode={mode}: expected 'min', 'max' or 'auto'.")
        return name, mode

    def _track_best(self, metrics, step, best_manager):
        """Saves a best checkpoint on improvement; returns whether patience ran out."""
        c = self.config
        if not c.early_stopping_metric:
            return False
        name, mode = self.early_stopping_target()
        if name not in metrics:
            raise TrainingError(
                f"--config early_stopping_metric={c.early_stopping_metric}: not a validation metric; "
                f"metrics: {', '.join(sorted(metrics))} (or 'task')."
            )
        # Decided once for all workers: each takes the chief's value (a collective), so all
        # save the best checkpoint, or stop, at the same evaluation.
        value = self._chief_value(float(metrics[name]))
        s = self.early_stopping
        best = float(s.best.numpy())
        if math.isnan(best) or (value < best if mode == "min" else value > best):
            best_manager.save(checkpoint_number=step)
            s.best.assign(value)
            s.best_step.assign(step)
            s.bad_evaluations.assign(0)
        else:
            s.bad_evaluations.assign_add(1)
        if self.chief:  # for people and tools; training reads the checkpointed state
            _write_json(self._best_path(), {"metric": name, "value": float(s.best.numpy()),
                                            "step": int(s.best_step.numpy()),
                                            "bad_evaluations": int(s.bad_evaluations.numpy())})
        return int(s.bad_evaluations.numpy()) >= c.early_stopping_patience

    def _chief_value(self, value):
        """The chief's `value` on every worker; `value` itself with one worker."""
        if not self._multi_worker:
            return value
        if self._broadcast_fn is None:
            chief = float(self.chief)

            @tf.function
            def broadcast(x):
                # Each replica adds (x, 1) on the chief and (0, 0) elsewhere: the sum over
                # replicas divided by its count is the chief's x, however many replicas.
                parts = self.strategy.run(lambda: tf.stack([x * chief, tf.constant(chief, tf.float64)]))
                total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, parts, axis=None)
                return total[0] / total[1]

            self._broadcast_fn = broadcast
        return float(self._broadcast_fn(tf.constant(value, tf.float64)).numpy())

    # The loop.
    def train(self, source, evaluate=True):
        """Trains to `config.steps` (or `config.epochs`), resuming from the latest checkpoint.

        Returns:
            The last training loss, the step, and the last validation metrics.

        Raises:
            TrainingError: on a non-finite loss (the last good checkpoint is kept).
            Preempted: after SIGTERM, once a checkpoint is written.
        """
        c = self.config
        if self.steps_per_epoch is None:
            self._plan_length(source)
            self.planned_steps.assign(self.total_steps)
        steps_per_epoch, total = self.steps_per_epoch, self.total_steps
        iterator = iter(self.entry.dataset(source, "train", c.batch_size, training=True, seed=c.seed))
        manager = tf.train.CheckpointManager(self._checkpoint(), self._save_dir,
                                             max_to_keep=c.keep_checkpoints, checkpoint_name="ckpt")
        best_manager = tf.train.CheckpointManager(
            self._checkpoint(), os.path.join(self._save_dir, "best"), max_to_keep=1, checkpoint_name="best")
        resumed = self.restore(iterator)
        if not resumed:
            self.entry.initialize(self.model)
        step = start = int(self.step.numpy())
        if resumed:
            _log(f"Resumed from {resumed} at step {start}.")
        if not c.max_seconds:  # a resumed run may have been given more --steps
            self.planned_steps.assign(total)
        if self.teacher is not None:
            _log(distillation.describe(self.teacher))
        if self.pruner is not None:
            _log(f"Pruning: {self.pruner.describe()}.")
        _log(f"Precision: {self.policy} ({self.policy_reason}; --config mixed_precision=float32 turns it "
             "off)." if self.policy != "float32" else f"Precision: float32 ({self.policy_reason}).")
        _log(threads.describe())
        _log(f"Training length: {self.length_note}"
             + (f"; the schedule is fitted to --config max_seconds={c.max_seconds:g}." if c.max_seconds else "."))
        if self.profiler is not None and (warning := self.profiler.describe_start(start, total)):
            _log(warning)
        train_steps = self._make_train_function()
        writer = tf.summary.create_file_writer(os.path.join(self.workdir, "logs", "train" if self.chief else f"worker-{self.worker}"))
        progress = keras.utils.Progbar(total, verbose=1) if sys.stdout.isatty() and self.chief else None
        result = {"step": start}
        window_seconds, window_steps = 0.0, 0
        run_start = time.perf_counter()
        deadline = run_start + c.max_seconds if c.max_seconds else math.inf
        configured_total = total
        measured_from = None  # (time, step) after the first chunk, whose time is mostly tracing
        plan = float(self.planned_steps.numpy())  # kept until this run has measured its pace

        def evaluate_now(step):
            """Evaluates, logs, writes the chief's side outputs, tracks the best checkpoint;
            returns whether early stopping ends training here."""
            metrics = self.evaluate(source)
            result.update(metrics)
            self._log_row("validation", {"step": step, "epoch": step / steps_per_epoch, **metrics}, writer)
            if self.chief:
                self.entry.on_evaluation(self.model, source, self.workdir, step, step / steps_per_epoch)
            if self._track_best(metrics, step, best_manager):
                _log(f"Early stopping at step {step}: {self.early_stopping_target()[0]} has not improved "
                     f"for {c.early_stopping_patience} evaluations.")
                return True
            if self.chief:
                curves.plot(self.workdir)
            return False

        restore_signals = self._install_sigterm_handler()
        try:
            # A checkpoint at an evaluation's step is written before that evaluation: a run
            # resumed from it evaluates first, as the run it continues did (early stopping
            # then counts every evaluation once).
            if resumed and evaluate and 0 < step < total and step % steps_per_epoch == 0 and evaluate_now(step):
                total = step
            while step < total:
                boundaries = [total, _next_multiple(step, c.steps_per_execution)]
                boundaries += [_next_multiple(step, n) for n in (c.log_every, c.checkpoint_every, steps_per_epoch)]
                if self.profiler is not None:
                    boundaries += self.profiler.boundaries(step)
                    self.profiler.before_chunk(step)
                count = min(boundaries) - step
                chunk_start = time.perf_counter()
                estimate = self._budget_estimate(step, measured_from, deadline, configured_total, plan)
                losses, stop, planned, done, non_finite_at = train_steps(
                    iterator, tf.constant(count), tf.constant(int(self._stop_requested)),
                    tf.constant(estimate, tf.float64))
                losses = losses.numpy()
                count = int(done.numpy())  # fewer when a stop request ended it
                if int(non_finite_at.numpy()):
                    raise TrainingError(
                        f"Non-finite loss (NaN or inf) at step {step + int(non_finite_at.numpy())}; the last good checkpoint "
                        f"({manager.latest_checkpoint}) is kept.")
                window_seconds += time.perf_counter() - chunk_start
                step += count
                window_steps += count
                if c.max_seconds:
                    total = min(configured_total, int(planned.numpy()))
                    measured_from = measured_from or (time.perf_counter(), step)
                if self.profiler is not None and (summary := self.profiler.after_chunk(step, total)):
                    _log(summary)
                result = {"step": step, "loss": float(losses.sum())}
                preempted = bool(stop.numpy())
                if step >= total and total < configured_total:
                    _log(f"Stopping at step {step}: the --config max_seconds={c.max_seconds:g} budget is spent.")
                if progress is not None:
                    progress.update(step, [("loss", result["loss"])])
                # A chunk stopped before its first step (a SIGTERM between chunks) has no row.
                if window_steps and (step % c.log_every == 0 or step == total):
                    step_time = window_seconds / window_steps
                    # With --config max_seconds, training ends at the deadline if that comes first.
                    eta = min((total - step) * step_time, max(0.0, deadline - time.perf_counter()))
                    # Time inside the training function only: not logging, checkpoints or evaluation.
                    row = {**result, "examples_per_sec": c.batch_size / step_time, "step_time": step_time,
                           "learning_rate": self._learning_rate(), "eta_s": round(eta, 1)}
                    self._log_row("train", row, writer)
                    window_seconds, window_steps = 0.0, 0
                if preempted:
                    self._save(manager, iterator, step)
                    raise Preempted(f"Stopped on SIGTERM at step {step} after writing "
                                    f"{manager.latest_checkpoint}; run the same command to resume.")
                if step % c.checkpoint_every == 0 or step == total:
                    self._save(manager, iterator, step)
                if evaluate and (step % steps_per_epoch == 0 or step == total) and evaluate_now(step):
                    if step % c.checkpoint_every:
                        self._save(manager, iterator, step)
                    break
        finally:
            if restore_signals is not None:
                restore_signals()
            if self.profiler is not None and self.profiler.running:  # training ended inside the range
                try:
                    _log(self.profiler.stop(step))
                except Exception as e:  # noqa: BLE001  (never hide the error that ended training)
                    _log(f"Warning: the profile could not be summarized ({type(e).__name__}: {e}).")
        if self.chief and evaluate:  # the last step, the time budget or early stopping ended it
            tuned = self.entry.on_training_end(self.model, source)
            if tuned:
                result.update(tuned)
                self._log_row("tuned", {"step": step, **tuned}, writer)
        if self.chief and fileio.exists(os.path.join(self.workdir, "metrics.jsonl")):
            curves.plot(self.workdir)
        if not self.chief:
            fileio.rmtree(self._save_dir)
        # Lets workers (and users) check that every replica ended with the same weights.
        _log(f"[done] worker={self.worker} step={step} weights_sha256={self.weights_digest()}")
        return result

    @staticmethod
    def _budget_estimate(step, measured_from, deadline, configured_total, plan):
        """The step at which the time budget runs out, from this run's mean time per step since
        its first chunk (evaluations and checkpoints included), within `[step, configured_total]`;
        `plan` (the configured total, or a resumed run's last plan) until there is a measurement."""
        now = time.perf_counter()
        if math.isinf(deadline):
            return float(configured_total)
        if now >= deadline:
            return float(step)
        if measured_from is None or step == measured_from[1]:
            return float(min(plan, configured_total))
        seconds_per_step = (now - measured_from[0]) / (step - measured_from[1])
        return float(min(configured_total, step + (deadline - now) / seconds_per_step))

    def weights_digest(self):
        digest = hashlib.sha256()
        for v in self.model.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(v)).tobytes())
        return digest.hexdigest()[:16]

    def _install_sigterm_handler(self):
        """Makes SIGTERM stop training at the next step; returns what undoes it (None when not
        on the main thread: the caller handles signals).

        Python runs a signal handler only between bytecodes of the main thread, which sits in
        TensorFlow's C++ for a whole chunk of `steps_per_execution` steps. So the handler is
        also given a wakeup file descriptor (`signal.set_wakeup_fd`, written by the C-level
        handler the moment the signal arrives) that a watcher thread reads: it sets the stop
        flag that every step of the running chunk reads."""
        def handler(signum, frame):  # noqa: ARG001
            self._stop_requested = True
            self._stop_flag.assign(1.0)

        try:
            previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:
            return None
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        try:
            previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:
            previous_fd = None

        def watch():
            while True:
                try:
                    data = reader.recv(64)
                except OSError:
                    return
                if not data:
                    return
                if signal.SIGTERM in data:
                    _log("SIGTERM received: stopping at the next step, with a checkpoint.")
                    self._stop_flag.assign(1.0)

        watcher = threading.Thread(target=watch, name="sigterm-watcher", daemon=True)
        watcher.start()

        def restore():
            signal.signal(signal.SIGTERM, previous)
            if previous_fd is not None:
                signal.set_wakeup_fd(previous_fd)
            writer.close()
            reader.shutdown(socket.SHUT_RDWR)
            watcher.join(timeout=5)
            reader.close()

        return restore

    def _learning_rate(self):
        optimizer = self.optimizers[0]
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        return float(keras.ops.convert_to_numpy(inner.learning_rate))

    def _log_row(self, kind, row, writer):
        with writer.as_default(step=row["step"]):
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    tf.summary.scalar(f"{kind}/{key}", value)
        if self.chief:
            fileio.append_text(os.path.join(self.workdir, "metrics.jsonl"), json.dumps({"kind": kind, **row}) + "\n")
        _log(f"[{kind}] " + " ".join(f"{k}={_fmt(v)}" for k, v in row.items()))


def _write_json(path, value):
    fileio.write_atomic(path, json.dumps(value))


def _next_multiple(step, every):
    every = max(1, every)
    return (step // every + 1) * every


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _log(message):
    print(message, flush=True)
