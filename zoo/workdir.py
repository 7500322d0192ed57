"""The workdir: one trained model's config, assets, checkpoints, logs and exports.

`zoo.json` records the model, preset, data and every setting, so `evaluate`, `predict` and
`export` need nothing but the workdir, and `train` on it resumes.
"""

import dataclasses
import json
import os

from trainers.config import TrainerConfig
from zoo import fileio, registry
from zoo.config import from_dict

CONFIG_FILE = "zoo.json"


class WorkdirError(ValueError):
    """A workdir that is missing, not a zoo workdir, or trained for another model."""


def config_path(workdir):
    return os.path.join(workdir, CONFIG_FILE)


def exists(workdir):
    return fileio.exists(config_path(workdir))


def write(workdir, model, preset, data, model_config, trainer_config):
    """Writes `zoo.json` atomically (a reader never sees half of it)."""
    fileio.makedirs(workdir)
    record = {
        "model": model,
        "preset": preset,
        "data": data,
        "model_config": dataclasses.asdict(model_config),
        "trainer_config": dataclasses.asdict(trainer_config),
    }
    write_json(config_path(workdir), record)


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically (a reader never sees half of it)."""
    fileio.write_atomic(path, json.dumps(value, indent=2))


def read(workdir):
    """Returns (entry class, record, model config, trainer config) of a workdir.

    Raises:
        WorkdirError: when the workdir has no readable `zoo.json`.
    """
    path = config_path(workdir)
    if not fileio.exists(path):
        raise WorkdirError(
            f"--workdir={workdir}: no {CONFIG_FILE} there; train a model into it first with "
            f"`zoo train --model=NAME --workdir={workdir}`."
        )
    try:
        record = json.loads(fileio.read_text(path))
        cls = registry.get(record["model"])
    except (json.JSONDecodeError, KeyError) as e:
        raise WorkdirError(f"{path}: not a valid zoo workdir config ({e}).") from None
    model_config = from_dict(cls.config_class, record["model_config"], f"{path} model_config")
    trainer_config = from_dict(TrainerConfig, record["trainer_config"], f"{path} trainer_config")
    return cls, record, model_config, trainer_config


def pretrained_workdir(path, models, config, keys):
    """(path, entry class, model config) of the `--init_from` workdir `path`, checked to hold
    one of `models` trained with the same `keys` (architecture) as `config`.

    Raises:
        ConfigError: naming `--init_from` and what differs.
    """
    from zoo.config import ConfigError

    if not exists(path):
        raise ConfigError(f"--init_from={path}: not a zoo workdir (no zoo.json); train {models[0]} there first.")
    cls, record, model_config, _ = read(path)
    if record["model"] not in models:
        raise ConfigError(f"--init_from={path}: holds a {record['model']!r} model; expected {' or '.join(models)}.")
    for key in keys:
        have, want = getattr(model_config, key), getattr(config, key)
        if have != want:
            raise ConfigError(f"--init_from={path}: trained with {key}={have}, this model has {want}; use the "
                              f"same --preset (or --config {key}={have}).")
    return path, cls, model_config


def pretrained_model(path, cls, model_config):
    """(model, checkpoint) of the latest checkpoint of the workdir `path`, for `--init_from`.

    Raises:
        ConfigError: when the workdir has no checkpoint.
    """
    import tensorflow as tf

    from zoo.config import ConfigError

    entry = cls(model_config, path)
    entry.load_assets()
    model = entry.build_model()
    latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
    if latest is None:
        raise ConfigError(f"--init_from={path}: no checkpoint in {path}/checkpoints.")
    tf.train.Checkpoint(model=model).read(latest).expect_partial()
    return model, latest
