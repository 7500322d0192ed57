"""The registry of zoo entries, filled at each entry's definition site.

Example:
    >>> from zoo import registry
    >>> sorted(registry.names())[:2]  # registration order depends on what was imported first
    ['bert_classifier', 'bert_mlm']
    >>> registry.get("bert_classifier").task_metric
    'accuracy'
"""

import importlib

_ENTRIES = {}
# Modules whose import registers the zoo's own entries, in `zoo list` order; imported on the
# registry's first use (TensorFlow comes with them).
ENTRY_MODULES = ("zoo.translator.entry", "zoo.vae.entry", "zoo.gan.entry", "zoo.bert.classifier", "zoo.bert.mlm",
                 "zoo.t5.entry", "zoo.t5.pretrain", "zoo.lstm_lm.entry")
_loaded = []


def _load():
    if not _loaded:
        _loaded.append(True)
        for module in ENTRY_MODULES:
            importlib.import_module(module)


def register(name):
    """Class decorator that registers a zoo entry under `name`.

    Raises:
        ValueError: if `name` is already registered.
    """

    def decorator(cls):
        if name in _ENTRIES:
            raise ValueError(
                f"A zoo entry named {name!r} is already registered "
                f"({_ENTRIES[name].__module__}.{_ENTRIES[name].__qualname__}); "
                f"names must be unique."
            )
        cls.name = name
        _ENTRIES[name] = cls
        return cls

    return decorator


def get(name):
    """Returns the entry class registered as `name`.

    Raises:
        KeyError: naming the known entries when `name` is unknown.
    """
    _load()
    try:
        return _ENTRIES[name]
    except KeyError:
        known = ", ".join(sorted(_ENTRIES)) or "(none)"
        raise KeyError(f"Unknown model {name!r}; known models: {known}.") from None


def names():
    """The registered names, in registration order."""
    _load()
    return list(_ENTRIES)


def unregister(name):
    """Removes `name` (for tests that register throw-away entries)."""
    _ENTRIES.pop(name, None)
