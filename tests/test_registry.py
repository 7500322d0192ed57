import dataclasses

import pytest

import zoo  # noqa: F401  (imports every entry)
from trainers import TrainerConfig
from zoo import registry

EXPECTED = {"translator", "vae", "gan", "bert_classifier", "bert_mlm", "t5", "t5_pretrain", "lstm_lm"}


def test_registry_holds_every_entry():
    assert EXPECTED <= set(registry.names())
    for name in registry.names():
        cls = registry.get(name)
        assert cls.name == name and cls.description and cls.config_class.PRESETS.keys() >= {"tiny", "small", "base"}


def test_no_model_setting_shadows_a_trainer_setting():
    # `--config KEY=VALUE` goes to the first config with that key: a model field named like a
    # trainer field (T5's sampling `seed` once did) would leave the trainer's unreachable.
    trainer_keys = {f.name for f in dataclasses.fields(TrainerConfig)}
    for name in registry.names():
        model_keys = {f.name for f in dataclasses.fields(registry.get(name).config_class)}
        assert not model_keys & trainer_keys, (name, model_keys & trainer_keys)


def test_duplicate_name_raises():
    with pytest.raises(ValueError, match="already registered"):
        @registry.register("translator")
        class Again:
            pass


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="known models: .*translator"):
        registry.get("no_such_model")


def test_register_then_unregister():
    @registry.register("throwaway_for_test")
    class Throwaway:
        pass

    try:
        assert registry.get("throwaway_for_test") is Throwaway
    finally:
        registry.unregister("throwaway_for_test")
    with pytest.raises(KeyError):
        registry.get("throwaway_for_test")
