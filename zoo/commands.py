"""What the `zoo` command does, as functions equally usable from Python.

Example:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> result = train("translator", workdir, preset="tiny", steps=2, batch_size=8)
    Training length: 2 steps (--steps).
    ...
    >>> sorted(result)[:3]
    ['bleu', 'chrf', 'exact_match']
    >>> len(predict(workdir, ["3rd of March 2021"]))
    1
"""

import dataclasses
import time

import numpy as np

from trainers import Trainer, TrainerConfig
from trainers.strategy import is_chief, make_strategy
from zoo import fileio, registry, sources, workdir as workdirs
from zoo.config import apply_overrides


def train(model, workdir, data=None, preset="small", steps=None, epochs=None, batch_size=None,
          overrides=(), evaluate=True, strategy="auto", tpu=None):
    """Trains `model` into `workdir`, or resumes the training already there.

    Args:
        model: a registered name (`zoo list`).
        workdir: where config, vocabularies, checkpoints and logs go.
        data: a `--data` source; the model's own generated data by default.
        preset: "tiny", "small" or "base".
        steps, epochs, batch_size: trainer settings (`steps` wins over `epochs`).
        overrides: `KEY=VALUE` strings for model or trainer settings.
        strategy: a name from `trainers.strategy.STRATEGIES`, or a `tf.distribute.Strategy`.
        tpu: TPU name or address for `strategy="tpu"` (or "auto").

    Returns:
        The final step, loss and validation metrics.
    """
    cls = registry.get(model)
    if workdirs.exists(workdir):
        stored_cls, record, model_config, trainer_config = workdirs.read(workdir)
        if stored_cls is not cls:
            raise workdirs.WorkdirError(
                f"--workdir={workdir} holds a {record['model']!r} model, not {model!r}; "
                f"use another --workdir."
            )
        data = data or record["data"]
        changed = apply_overrides([model_config], [o for o in overrides if _is_model_key(cls, o)])[0]
        if changed != model_config:
            raise workdirs.WorkdirError(
                f"--workdir={workdir} was trained with other model settings; model --config keys "
                f"cannot change on resume (use a new --workdir)."
            )
        stored_teacher = trainer_config.teacher
        trainer_config = apply_overrides([trainer_config], [o for o in overrides if not _is_model_key(cls, o)])[0]
        if trainer_config.teacher != stored_teacher:
            raise workdirs.WorkdirError(
                f"--teacher={trainer_config.teacher or '(none)'}: --workdir={workdir} was trained with "
                f"--teacher={stored_teacher or '(none)'}; the teacher cannot change on resume (use a new --workdir).")
        preset = record["preset"]
    else:
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
    from trainers import distillation

    distillation.check_teacher(teacher, type(entry), entry.config)
    fileio.copy_tree(fileio.join(teacher, "assets"), entry.assets_dir)
    entry.load_assets()
    entry.check_teacher_data(source, teacher)


def initial_configs(cls, preset, overrides=()):
    """(model config, trainer config) of a fresh workdir: the preset and the entry's trainer
    defaults, then the `KEY=VALUE` overrides."""
    model_config = apply_overrides([cls.preset(preset), TrainerConfig()], overrides)[0]
    defaults = dataclasses.replace(TrainerConfig(), **cls.trainer_defaults_for(model_config))
    return tuple(apply_overrides([cls.preset(preset), defaults], overrides))


def _wait_for(path, seconds=600):
    deadline = time.time() + seconds
    while not fileio.exists(path):
        if time.time() > deadline:
            raise workdirs.WorkdirError(f"{path} did not appear within {seconds} s (is the chief running?).")
        time.sleep(0.5)


def _is_model_key(cls, override):
    key = override.split("=", 1)[0].strip()
    return key in {f.name for f in dataclasses.fields(cls.config_class)}


def restore(workdir):
    """(entry, model, data source) of the latest checkpoint in `workdir`."""
    cls, record, model_config, trainer_config = workdirs.read(workdir)
    entry = cls(model_config, workdir)
    entry.load_assets()
    # Serve and evaluate in float32, whatever precision the model trained in (its variables
    # are float32 either way).
    # The teacher of a distilled model is not needed to serve or evaluate it.
    trainer = Trainer(entry, dataclasses.replace(trainer_config, mixed_precision="", teacher=""), workdir)
    if trainer.restore() is None:
        raise workdirs.WorkdirError(
            f"--workdir={workdir}: no checkpoint in {trainer.checkpoint_dir}; train first."
        )
    return entry, trainer, sources.parse(record["data"])


def evaluate(workdir, data=None):
    """Validation loss and task metrics of the latest checkpoint."""
    entry, trainer, source = restore(workdir)
    source = sources.parse(data) if data else source
    metrics = trainer.evaluate(source)
    entry.on_evaluation(trainer.model, source, workdir, int(trainer.step.numpy()), None)
    return metrics


def predict(workdir, inputs):
    """Predictions of the latest checkpoint for raw inputs."""
    entry, trainer, _ = restore(workdir)
    return entry.predict(trainer.model, list(inputs))


def export(workdir, formats=("saved_model", "tflite"), num_checks=100, quantize=("none",), int8_io=False,
           verify=True, max_abs_diff=1e-4, max_metric_drop=1.0):
    """Exports the latest checkpoint under `workdir/export/`; returns the manifest.

    See `export.exporter.export` and `export.exporter.Verification` for the arguments.
    """
    from export import exporter

    entry, trainer, source = restore(workdir)
    checks = exporter.Verification(verify, max_abs_diff, max_metric_drop)
    return exporter.export(entry, trainer.model, workdir, formats, source, num_checks=num_checks,
                           quantize=quantize, int8_io=int8_io, checks=checks, sparsity=sparsity_report(trainer))


def sparsity_report(trainer):
    """What a pruned model's manifest says of its sparsity (None when it was not pruned)."""
    c = trainer.config
    if not c.prune_sparsity:
        return None
    from trainers import pruning

    tensors = pruning.sparsity_of(trainer.model, c.prune_variables, c.prune_structure)
    sizes = {v.path: int(np.prod(v.shape)) for v in pruning.select(trainer.model, c.prune_variables, c.prune_structure)}
    overall = sum(tensors[p] * sizes[p] for p in tensors) / max(sum(sizes.values()), 1)
    total = sum(int(np.prod(v.shape)) for v in trainer.model.weights)
    return {"target": c.prune_sparsity, "structure": c.prune_structure, "variables": c.prune_variables,
            "pruned": round(overall, 4), "pruned_parameters": sum(sizes.values()), "all_parameters": total,
            "tensors": tensors}
