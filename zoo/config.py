"""Typed, documented configs with presets and `KEY=VALUE` overrides.

Model and trainer settings are dataclasses. `--config=KEY=VALUE` flags override any field of
either; a key that names no field raises an error listing the valid keys.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class C:
    ...     units: int = 8
    >>> apply_overrides([C()], ["units=16"])[0].units
    16
"""

import dataclasses
import json
import typing


class ConfigError(ValueError):
    """A config value or key that is wrong, with what was expected."""


def _coerce(value, field_type, key):
    origin = typing.get_origin(field_type)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(field_type) if a is not type(None)]
        if value.lower() in ("none", "null", ""):
            return None
        field_type = args[0]
    try:
        if field_type is bool:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if field_type in (int, float, str):
            return field_type(value)
        if origin in (tuple, list) or field_type in (tuple, list):
            items = json.loads(value) if value.startswith("[") else value.split(",")
            return tuple(items) if origin is tuple or field_type is tuple else list(items)
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(
            f"--config {key}={value}: expected a value of type "
            f"{getattr(field_type, '__name__', field_type)}."
        ) from None
    raise ConfigError(f"--config {key}: fields of type {field_type} cannot be set from flags.")


def valid_keys(configs):
    return sorted(f.name for c in configs for f in dataclasses.fields(c))


def apply_overrides(configs, overrides):
    """Returns copies of `configs` with `KEY=VALUE` strings applied.

    Each key must name a field of exactly one of the configs.

    Raises:
        ConfigError: for a malformed item, an unknown key (listing the valid ones) or a value
            of the wrong type.
    """
    configs = list(configs)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--config {item!r}: expected KEY=VALUE.")
        key, value = item.split("=", 1)
        key = key.strip()
        for i, config in enumerate(configs):
            fields = {f.name: f for f in dataclasses.fields(config)}
            if key in fields:
                hints = typing.get_type_hints(type(config))
                configs[i] = dataclasses.replace(
                    config, **{key: _coerce(value.strip(), hints[key], key)}
                )
                break
        else:
            raise ConfigError(
                f"--config {key}={value}: unknown key {key!r}. Valid keys: "
                f"{', '.join(valid_keys(configs))}."
            )
    return configs


def from_dict(cls, values, where):
    """Builds dataclass `cls` from a dict read from `where`, naming unknown keys.

    Keys a later version renamed (`cls.RENAMED`: {old: new}) are read under their new name, so
    workdirs written before a rename still load.
    """
    renamed = getattr(cls, "RENAMED", {})
    values = {renamed.get(key, key): value for key, value in values.items()}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {unknown} for {cls.__name__}; valid keys: {sorted(known)}."
        )
    hints = typing.get_type_hints(cls)
    fixed = {}
    for key, value in values.items():
        if isinstance(value, list) and typing.get_origin(hints[key]) is tuple:
            value = tuple(value)
        fixed[key] = value
    return cls(**fixed)


def keras_hub_preset_config(path, class_name):
    """The backbone config of a local keras-hub preset directory (`--preset=PATH`), checked to
    be a `class_name` preset.

    Raises:
        ConfigError: naming the folder or its `config.json` when it is not such a preset.
    """
    from zoo import fileio

    config_file = fileio.join(path, "config.json")
    if not fileio.isfile(config_file):
        raise ConfigError(f"--preset={path}: no config.json; expected a keras-hub preset directory "
                          f"(written by `save_to_preset`) or one of tiny, small, base.")
    stored = json.loads(fileio.read_text(config_file))
    if stored.get("class_name") != class_name:
        raise ConfigError(f"{config_file}: a {stored.get('class_name')!r} preset; expected a {class_name}.")
    return stored["config"]


def copy_backbone(source, target, keys, where):
    """Copies a keras-hub backbone's weights into `target` after checking that the two agree on
    the config `keys` (their architecture); `where` (`--preset=...`, `--init_from=...`) heads
    the error."""
    have, want = source.get_config(), target.get_config()
    for key in keys:
        if have.get(key) != want.get(key):
            raise ConfigError(f"{where}: its backbone has {key}={have.get(key)}, this model {want.get(key)}; "
                              f"use the same --preset (or --config {key}={have.get(key)}).")
    target.set_weights(source.get_weights())
