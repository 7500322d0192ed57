"""What the `zoo` command does, as functions equally usable from Python.

Example:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> result = train("translator", workdir, preset="tiny", steps=2, batch_size=8)
    Precision: ...
    Training length: 2 steps (--steps).
    ...
    >>> sorted(result)[:3]
    ['bleu', 'chrf', 'exact_match']
    >>> len(predict(workdir, ["3rd of March 2021"]))
    1
"""

import dataclasses
import time

from trainers import Trainer, TrainerConfig, distillation
from trainers.strategy import is_chief, make_strategy
from zoo import fileio, registry, sources, threads, workdir as workdirs
from zoo.config import apply_overrides


def train(model, workdir, data=None, preset=None, steps=None, epochs=None, batch_size=None,
          overrides=(), evaluate=True, strategy="auto", tpu=None):
    """Trains `model` into `workdir`, or resumes the training already there.

    Args:
        model: a registered name (`zoo list`).
        workdir: where config, vocabularies, checkpoints and logs go.
        data: a `--data` source; the model's own generated data by default. Stored absolute.
        preset: "tiny", "small" (the default) or "base" (or a preset directory).
        steps, epochs, batch_size: trainer settings (`steps` wins over `epochs`).
        overrides: `KEY=VALUE` strings for model or trainer settings.
        strategy: a name from `trainers.strategy.STRATEGIES`, or a `tf.distribute.Strategy`.
        tpu: TPU name or address for `strategy="tpu"` (or "auto").

    Returns:
        The final step, loss and validation metrics.

    Raises:
        WorkdirError: on resume, for a setting that cannot change (naming it); settings that only
            affect evaluation and reporting (`EVALUATION_KEYS`) may change.
    """
    cls = registry.get(model)
    data = sources.absolute(data) if data else data
    overrides = [absolute_path_override(o) for o in overrides]
    threads.configure()  # before TensorFlow's runtime starts (a no-op once it has)
    if workdirs.exists(workdir):
        stored_cls, record, model_config, trainer_config = workdirs.read(workdir)
        if stored_cls is not cls:
            raise workdirs.WorkdirError(
                f"--workdir={workdir} holds a {record['model']!r} model, not {model!r}; "
                f"use another --workdir."
            )
        if preset is not None and preset != record["preset"] and cls.preset(preset) != cls.preset(record["preset"]):
            raise workdirs.WorkdirError(
                f"--preset={preset}: --workdir={workdir} was trained with --preset={record['preset']}; the "
                f"model cannot change on resume (leave --preset out, or use a new --workdir).")
        if data is not None and data != record["data"]:
            raise workdirs.WorkdirError(
                f"--data={data}: --workdir={workdir} was trained on --data={record['data']}; the training data "
                f"cannot change on resume (leave --data out, or use a new --workdir).")
        data = record["data"]
        model_config = resumed_model_config(cls, model_config, overrides, workdir)
        stored_teacher = trainer_config.teacher
        trainer_config = apply_overrides([trainer_config], [o for o in overrides if not _is_model_key(cls, o)])[0]
        if trainer_config.teacher != stored_teacher:
            raise workdirs.WorkdirError(
                f"--teacher={trainer_config.teacher or '(none)'}: --workdir={workdir} was trained with "
                f"--teacher={stored_teacher or '(none)'}; the teacher cannot change on resume (use a new --workdir).")
        preset = record["preset"]
    else:
        preset = preset or "small"
        model_config, trainer_config = initial_configs(cls, preset, overrides)
        data = data or cls.default_data
    if steps is not None:
        trainer_config = dataclasses.replace(trainer_config, steps=steps)
    if epochs is not None:
        trainer_config = dataclasses.replace(trainer_config, epochs=epochs, steps=0)
    if batch_size is not None:
        trainer_config = dataclasses.replace(trainer_config, batch_size=batch_size)

    source = sources.parse(data)
    if isinstance(strategy, str):
        strategy = make_strategy(strategy, tpu)
    entry = cls(model_config, workdir)
    if workdirs.exists(workdir):
        entry.load_assets()
    elif is_chief(strategy) and trainer_config.teacher:
        _take_teacher_assets(entry, trainer_config.teacher, source)
    elif is_chief(strategy):
        entry.prepare(source)
    else:
        # Other workers wait for the chief's vocabularies (shared storage) rather than learn
        # their own, which could differ.
        _wait_for(workdirs.config_path(workdir))
        entry.load_assets()
    if is_chief(strategy):  # after the assets: other workers wait for this file
        workdirs.write(workdir, model, preset, data, model_config, trainer_config)
    trainer = Trainer(entry, trainer_config, workdir, strategy=strategy, source=source)
    return trainer.train(source, evaluate=evaluate)


def _take_teacher_assets(entry, teacher, source):
    """A distilled student reads its inputs and predicts its outputs as the teacher does: it
    takes the teacher's assets (vocabularies, labels) instead of learning its own."""
    first = distillation.check_teachers(teacher, type(entry), entry.config)[0][0]
    fileio.copy_tree(fileio.join(first, "assets"), entry.assets_dir)
    entry.load_assets()
    entry.check_teacher_data(source, first)


def initial_configs(cls, preset, overrides=()):
    """(model config, trainer config) of a fresh workdir: the preset and the entry's trainer
    defaults, then the `KEY=VALUE` overrides."""
    model_config = apply_overrides([cls.preset(preset), TrainerConfig()], overrides)[0]
    defaults = dataclasses.replace(TrainerConfig(), **cls.trainer_defaults_for(model_config))
    return tuple(apply_overrides([cls.preset(preset), defaults], overrides))


# Model settings that only change how a trained model is evaluated, decoded or reported, or
# which data rows are read: they may change when a training resumes.
EVALUATION_KEYS = {"eval_examples", "skip_bad_rows", "decode", "beam_size", "length_penalty", "temperature",
                   "top_k", "top_p", "sample_seed", "max_length"}
# Settings holding paths: stored absolute, so the workdir works from any folder.
PATH_KEYS = {"validation_data", "init_from", "teacher", "preset_dir"}


def resumed_model_config(cls, stored, overrides, workdir):
    """The stored model config with the `EVALUATION_KEYS` overrides applied.

    Raises:
        WorkdirError: naming the first other model key whose value would change.
    """
    model_overrides = [o for o in overrides if _is_model_key(cls, o)]
    changed = apply_overrides([stored], model_overrides)[0]
    for field in dataclasses.fields(stored):
        old, new = getattr(stored, field.name), getattr(changed, field.name)
        if old != new and field.name not in EVALUATION_KEYS:
            raise workdirs.WorkdirError(
                f"--config {field.name}={new}: --workdir={workdir} was trained with {field.name}={old}; "
                f"model settings cannot change on resume, except {', '.join(sorted(EVALUATION_KEYS))} "
                f"(use a new --workdir).")
    return changed


def absolute_path_override(override):
    """`KEY=VALUE` with a local path VALUE of a `PATH_KEYS` key made absolute."""
    key, sep, value = override.partition("=")
    if sep and key.strip() in PATH_KEYS and value.strip():
        if key.strip() == "teacher":  # an ensemble: A,B,...; none at all is refused by check_teachers
            paths = distillation.teacher_paths(value)
            return f"teacher={','.join(fileio.absolute(p) for p in paths) if paths else value.strip()}"
        return f"{key.strip()}={fileio.absolute(value.strip())}"
    return override


def _wait_for(path, seconds=600):
    deadline = time.time() + seconds
    while not fileio.exists(path):
        if time.time() > deadline:
            raise workdirs.WorkdirError(f"{path} did not appear within {seconds} s (is the chief running?).")
        time.sleep(0.5)


def _is_model_key(cls, override):
    key = override.split("=", 1)[0].strip()
    return key in {f.name for f in dataclasses.fields(cls.config_class)}


def restore(workdir, checkpoint="latest", data=None, need_data=True):
    """(entry, trainer, data source) of a checkpoint of `workdir`: "latest", "best" (kept by
    early stopping) or a step number. The source is `data`, else the training data recorded in
    the workdir (None when not `need_data`: a workdir moved away from its data still predicts)."""
    cls, record, model_config, trainer_config = workdirs.read(workdir)
    entry = cls(model_config, workdir)
    entry.load_assets()
    # Serve and evaluate in float32, whatever precision the model trained in (its variables
    # are float32 either way). The teacher of a distilled model is not needed to serve or evaluate it.
    trainer = Trainer(entry, dataclasses.replace(trainer_config, mixed_precision="", teacher=""), workdir)
    if trainer.restore(checkpoint=checkpoint_path(trainer.checkpoint_dir, checkpoint, workdir)) is None:
        raise workdirs.WorkdirError(
            f"--workdir={workdir}: no checkpoint in {trainer.checkpoint_dir}; train first."
        )
    if data or not need_data:
        return entry, trainer, sources.parse(data) if data else None
    try:
        return entry, trainer, sources.parse(record["data"])
    except sources.DataError as e:
        raise sources.DataError(f"{e} The workdir was trained on it; give the data again with --data.") from None


def checkpoint_path(directory, which, workdir):
    """The prefix of checkpoint `which` ("latest", "best" or a step) in `directory`, None when
    there is no latest one.

    Raises:
        WorkdirError: naming `--checkpoint` and the checkpoints there are.
    """
    import tensorflow as tf

    which = str(which or "latest")
    if which == "latest":
        return tf.train.latest_checkpoint(directory)
    if which == "best":
        best = tf.train.latest_checkpoint(fileio.join(directory, "best"))
        if best is None:
            raise workdirs.WorkdirError(
                f"--checkpoint=best: --workdir={workdir} has no best checkpoint; it is kept when training "
                f"watches a metric (--config early_stopping_metric=task).")
        return best
    state = tf.train.get_checkpoint_state(directory)
    steps = sorted(int(p.rsplit("-", 1)[-1]) for p in (state.all_model_checkpoint_paths if state else []))
    if not which.isdigit() or int(which) not in steps:
        raise workdirs.WorkdirError(
            f"--checkpoint={which}: expected latest, best or the step of a checkpoint kept in {directory} "
            f"({', '.join(map(str, steps)) or 'none'}).")
    return fileio.join(directory, f"ckpt-{int(which)}")


def evaluate(workdir, data=None, checkpoint="latest"):
    """Validation loss and task metrics of a checkpoint (`restore`): on all of `data` when it is
    given (a file or folder whole, `tfds:NAME:SPLIT`'s split), else on the validation split of
    the training data. The metrics say how many examples were scored (`examples`).
    """
    entry, trainer, source = restore(workdir, checkpoint, data)
    split = "validation"
    if data:
        # Generated builtin data has no file to score whole: its validation split stands for it.
        if source.kind != "builtin":
            split = sources.ALL
            # All of it: the cap on examples scored after each training epoch does not apply.
            entry.config = dataclasses.replace(entry.config, **{k: 0 for k in ("eval_examples", "eval_characters")
                                                               if hasattr(entry.config, k)})
    metrics = trainer.evaluate(source, split)
    metrics.setdefault("examples", entry.num_examples(source, split))
    scored = f"all of {source}" if split == sources.ALL else "the validation split of the training data"
    print(f"Scored {metrics['examples']:,} examples: {scored}.", flush=True)
    entry.on_evaluation(trainer.model, source, workdir, int(trainer.step.numpy()), None)
    return metrics


def predict(workdir, inputs, checkpoint="latest"):
    """Predictions of a checkpoint (`restore`) for raw inputs."""
    entry, trainer, _ = restore(workdir, checkpoint, need_data=False)
    return entry.predict(trainer.model, list(inputs))


def export(workdir, formats=("saved_model", "tflite"), num_checks=100, quantize=("none",), int8_io=False,
           verify=True, max_abs_diff=1e-4, max_metric_drop=1.0, checkpoint="latest", data=None):
    """Exports a checkpoint (`restore`; the latest by default) under `workdir/export/`; returns
    the manifest, which records the checkpoint. Artifacts are checked on held-out examples of
    the training data, or of `data` when given (its 90/10 split; a workdir moved to another
    machine exports with its data given again).

    See `export.exporter.export` and `export.exporter.Verification` for the arguments.
    """
    from export import exporter

    entry, trainer, source = restore(workdir, checkpoint, data)
    if data and getattr(entry.config, "validation_data", ""):
        entry.config = dataclasses.replace(entry.config, validation_data="")
    checks = exporter.Verification(verify, max_abs_diff, max_metric_drop)
    return exporter.export(entry, trainer.model, workdir, formats, source, num_checks=num_checks,
                           quantize=quantize, int8_io=int8_io, checks=checks, sparsity=sparsity_report(trainer),
                           checkpoint={"path": trainer.restored, "step": int(trainer.step.numpy())})


def sparsity_report(trainer):
    """What a pruned model's manifest says of its sparsity (None when it was not pruned)."""
    c = trainer.config
    if trainer.pruner is None:
        return None
    return {"target": c.prune_sparsity, "structure": c.prune_structure, "variables": c.prune_variables,
            **trainer.pruner.report(), "all_parameters": trainer.model.count_params()}
