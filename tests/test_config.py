import dataclasses

import pytest

from trainers import TrainerConfig
from zoo.config import ConfigError, apply_overrides, from_dict
from zoo.translator.config import TranslatorConfig


def test_overrides_are_typed():
    model, trainer = apply_overrides(
        [TranslatorConfig(), TrainerConfig()],
        ["units=64", "bidirectional=false", "learning_rate=3e-4", "attention=bahdanau"],
    )
    assert (model.units, model.bidirectional, model.attention) == (64, False, "bahdanau")
    assert trainer.learning_rate == pytest.approx(3e-4)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'unitz'.*Valid keys: .*units"):
        apply_overrides([TranslatorConfig(), TrainerConfig()], ["unitz=3"])


def test_bad_value_names_key_and_type():
    with pytest.raises(ConfigError, match=r"units=many: expected a value of type int"):
        apply_overrides([TranslatorConfig()], ["units=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides([TranslatorConfig()], ["units"])


def test_bad_choice_names_key():
    with pytest.raises(ConfigError, match="--config attention"):
        apply_overrides([TranslatorConfig()], ["attention=dot"])


def test_round_trip_and_unknown_stored_key():
    config = TranslatorConfig.PRESETS["tiny"]()
    assert from_dict(TranslatorConfig, dataclasses.asdict(config), "x") == config
    with pytest.raises(ConfigError, match="zoo.json.*unknown keys \\['bogus'\\]"):
        from_dict(TranslatorConfig, {"bogus": 1}, "/w/zoo.json")


def test_a_renamed_key_of_an_older_workdir_still_loads():
    from zoo.t5.config import T5Config

    assert from_dict(T5Config, {"seed": 7}, "/w/zoo.json").sample_seed == 7
