"""What the `zoo` command does, as functions equally usable from Python.

Example:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> result = train("translator", workdir, preset="tiny", steps=2, batch_size=8)
    >>> len(predict(workdir, ["3rd of March 2021"]))
    1
"""

import dataclasses

from trainers import Trainer, TrainerConfig
from zoo import registry, sources, workdir as workdirs
from zoo.config import apply_overrides


def train(model, workdir, data=None, preset="small", steps=None, epochs=None, batch_size=None,
          overrides=(), evaluate=True):
    """Trains `model` into `workdir`, or resumes the training already there.

    Args:
        model: a registered name (`zoo list`).
        workdir: where config, vocabularies, checkpoints and logs go.
        data: a `--data` source; the model's own generated data by default.
        preset: "tiny", "small" or "base".
        steps, epochs, batch_size: trainer settings (`steps` wins over `epochs`).
        overrides: `KEY=VALUE` strings for model or trainer settings.

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
        trainer_config = apply_overrides([trainer_config], [o for o in overrides if not _is_model_key(cls, o)])[0]
        preset = record["preset"]
    else:
        model_config, trainer_config = apply_overrides([cls.preset(preset), TrainerConfig()], overrides)
        data = data or cls.default_data
    if steps is not None:
        trainer_config = dataclasses.replace(trainer_config, steps=steps)
    if epochs is not None:
        trainer_config = dataclasses.replace(trainer_config, epochs=epochs, steps=0)
    if batch_size is not None:
        trainer_config = dataclasses.replace(trainer_config, batch_size=batch_size)

    source = sources.parse(data)
    entry = cls(model_config, workdir)
    if workdirs.exists(workdir):
        entry.load_assets()
    else:
        entry.prepare(source)
    workdirs.write(workdir, model, preset, data, model_config, trainer_config)
    return Trainer(entry, trainer_config, workdir).train(source, evaluate=evaluate)


def _is_model_key(cls, override):
    key = override.split("=", 1)[0].strip()
    return key in {f.name for f in dataclasses.fields(cls.config_class)}


def restore(workdir):
    """(entry, model, data source) of the latest checkpoint in `workdir`."""
    cls, record, model_config, trainer_config = workdirs.read(workdir)
    entry = cls(model_config, workdir)
    entry.load_assets()
    trainer = Trainer(entry, trainer_config, workdir)
    if trainer.restore() is None:
        raise workdirs.WorkdirError(
            f"--workdir={workdir}: no checkpoint in {trainer.checkpoint_dir}; train first."
        )
    return entry, trainer, sources.parse(record["data"])


def evaluate(workdir, data=None):
    """Validation loss and task metrics of the latest checkpoint."""
    entry, trainer, source = restore(workdir)
    return trainer.evaluate(sources.parse(data) if data else source)


def predict(workdir, inputs):
    """Predictions of the latest checkpoint for raw inputs."""
    entry, trainer, _ = restore(workdir)
    return entry.predict(trainer.model, list(inputs))


def export(workdir, formats=("saved_model", "tflite"), num_checks=100):
    """Exports the latest checkpoint under `workdir/export/`; returns the manifest."""
    from export import exporter

    entry, trainer, source = restore(workdir)
    return exporter.export(entry, trainer.model, workdir, formats, source, num_checks=num_checks)
