"""The `t5` entry: cached decoding, data split by input, errors, training, exports."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from zoo import registry, sources
from zoo.config import ConfigError
from zoo.sources import DataError
from zoo.t5 import model as t5
from zoo.t5.entry import split_by_input

E2E = os.path.join(helpers.ROOT, "..", "shared", "data", "text2text", "e2e.tsv")


def _tiny_lm(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return t5.build(vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                    key_value_dim=8, dropout=0.0)


def test_cached_steps_equal_the_uncached_forward_pass():
    lm = _tiny_lm()
    rng = np.random.RandomState(0)
    source = rng.randint(3, 40, (3, 9)).astype("int32")
    source[0, 5:] = t5.PAD
    tokens = rng.randint(3, 40, (3, 7)).astype("int32")
    decoder = np.concatenate([np.zeros((3, 1), "int32"), tokens[:, :-1]], axis=1)
    full = np.asarray(t5.logits(lm, t5.model_inputs(source, decoder, tokens)))
    cache, context = t5.empty_cache(lm, 3, 7), t5.encoder_context(lm, source)
    step = t5.step(lm)
    for position in range(7):
        logits, cache = step(decoder[:, position], position, cache, context)
        np.testing.assert_allclose(np.asarray(logits), full[:, position], rtol=1e-4, atol=1e-4)


def test_greedy_matches_teacher_forcing_and_beam_of_one():
    lm = _tiny_lm(1)
    source = np.random.RandomState(1).randint(3, 40, (4, 6)).astype("int32")
    greedy = np.asarray(t5.greedy(lm, source, 8))
    decoder = np.concatenate([np.zeros((4, 1), "int32"), greedy[:, :-1]], axis=1)
    logits = np.asarray(t5.logits(lm, t5.model_inputs(source, decoder, np.ones_like(decoder))))
    for row in range(4):
        end = next((i for i, t in enumerate(greedy[row]) if t in (t5.EOS, t5.PAD)), 8)
        np.testing.assert_array_equal(np.argmax(logits[row, :end], -1), greedy[row, :end])
    np.testing.assert_array_equal(np.asarray(t5.beam(lm, source, 8, beam_size=1)), greedy)


def test_padding_does_not_change_the_generation():
    lm = _tiny_lm(2)
    short = np.array([[5, 6, 7, 1]], "int32")
    padded = np.array([[5, 6, 7, 1, 0, 0, 0, 0]], "int32")
    np.testing.assert_array_equal(t5.beam(lm, short, 6, beam_size=3), t5.beam(lm, padded, 6, beam_size=3))
    np.testing.assert_array_equal(t5.sample(lm, short, 6, seed=3), t5.sample(lm, padded, 6, seed=3))


def test_rows_of_one_input_stay_on_one_side_and_are_scored_together(tmp_path):
    path = tmp_path / "d2t.tsv"
    rows = ["input\ttarget"] + [f"name : Place {i % 30} | near : Shop {i % 30 % 7}\tPlace {i % 30} is near "
                                f"Shop {i % 30 % 7}, version {i}" for i in range(120)]
    path.write_text("\n".join(rows) + "\n")
    entry, source = helpers.tiny_entry("t5", tmp_path / "w", str(path))
    train, held = entry.pairs(source, "train"), entry.pairs(source, "validation")
    assert len(train) + len(held) == 120
    assert not {i for i, _ in train} & {i for i, _ in held}
    inputs, references = entry.grouped(source, "validation")
    assert len(inputs) == 3 and all(len(r) == 4 for r in references)
    assert split_by_input([(i, 0) for i in "aabbc"], "train") == split_by_input([(i, 0) for i in "aabbc"], "train")


def test_bad_input_names_the_file_line_or_key(tmp_path):
    missing = tmp_path / "missing.tsv"
    missing.write_text("input\toutput\na\tb\n")
    cls = registry.get("t5")
    entry = cls(cls.preset("tiny"), str(tmp_path / "w1"))
    with pytest.raises(DataError, match=rf"{missing}:1: no column 'target'.*target_column"):
        entry.prepare(sources.parse(str(missing)))
    empty = tmp_path / "empty.tsv"
    empty.write_text("input\ttarget\na\tb\nc\t \n")
    entry = cls(cls.preset("tiny"), str(tmp_path / "w2"))
    with pytest.raises(DataError, match=rf"{empty}:3: missing target"):
        entry.prepare(sources.parse(str(empty)))
    with pytest.raises(ConfigError, match="decode='nucleus'"):
        cls.config_class(decode="nucleus")
    bert = tmp_path / "bert_preset"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"class_name": "BertBackbone", "config": {}}))
    with pytest.raises(ConfigError, match=r"config.json: a 'BertBackbone' preset; expected a T5Backbone"):
        cls.preset(str(bert))


def test_a_local_keras_hub_preset_gives_its_vocabulary_and_weights(tmp_path):
    import keras_hub

    entry, source = helpers.tiny_entry("t5", tmp_path / "learned")
    c = entry.config
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=entry.vocabulary_size, num_layers=c.num_layers, num_heads=c.num_heads,
        hidden_dim=c.hidden_dim, intermediate_dim=c.intermediate_dim, key_value_dim=c.key_value_dim,
        dropout=0.0, activation=c.activation, use_gated_activation=c.use_gated_activation)
    tokenizer = keras_hub.models.T5Tokenizer(proto=entry.vocabulary_path)
    preset = tmp_path / "preset"
    backbone.save_to_preset(str(preset))
    tokenizer.save_to_preset(str(preset))
    cls = registry.get("t5")
    config = cls.preset(str(preset))
    assert (config.num_layers, config.hidden_dim, config.vocabulary_size) == (2, 32, entry.vocabulary_size)
    started = cls(config, str(tmp_path / "from_preset"))
    started.prepare(source)
    model = started.build_model()
    started.initialize(model)
    for a, b in zip(model.backbone.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_t5_passes_the_shared_checks(tmp_path):
    manifest = helpers.check_entry("t5", tmp_path)
    tflite_ops = {a["signature"]: a["ops"] for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert set(tflite_ops) == {"greedy_tokens", "beam_search_tokens"}
    assert all("WHILE" in ops for ops in tflite_ops.values())
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    assert set(saved["signatures"]) >= {"serving_default", "greedy", "beam_search", "sample"}
