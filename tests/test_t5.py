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


def test_bfloat16_attention_takes_its_scores_and_softmax_in_float32():
    import keras
    from keras_hub.src.models.t5.t5_multi_head_attention import T5MultiHeadAttention

    from trainers import precision

    with precision.policy_scope("mixed_bfloat16"):
        lm = _tiny_lm()
    attention = [layer for layer in lm._flatten_layers() if isinstance(layer, T5MultiHeadAttention)]  # noqa: SLF001
    assert len(attention) == 2 + 2 * 2  # encoder self; decoder self and cross, per layer
    hidden = keras.ops.ones((2, 5, 16), "bfloat16")
    for layer in attention:
        assert layer.compute_dtype == "bfloat16" and layer.key_projector.compute_dtype == "bfloat16"
        assert layer.query_projector.compute_dtype == layer.dropout_layer.compute_dtype == "float32"
    # What the layer's own call computes: the dtype of the scores its softmax takes, and of
    # the weights its dropout passes on to the product with the values.
    seen = []
    layer = attention[0]
    softmax, dropout_call = keras.ops.nn.softmax, layer.dropout_layer.call
    keras.ops.nn.softmax = lambda x, axis=-1: seen.append(("softmax", x.dtype.name)) or softmax(x, axis=axis)
    layer.dropout_layer.call = lambda x, training=False: seen.append(("dropout", x.dtype.name)) or dropout_call(
        x, training)
    try:
        output = layer(hidden, training=False)[0]
    finally:
        keras.ops.nn.softmax = softmax
        del layer.dropout_layer.call
    assert seen == [("softmax", "float32"), ("dropout", "float32")]
    assert keras.backend.standardize_dtype(output.dtype) == "bfloat16"  # the output projection's
    output = lm.backbone({"encoder_token_ids": np.ones((2, 5), "int32"), "encoder_padding_mask": np.ones((2, 5), bool),
                          "decoder_token_ids": np.ones((2, 3), "int32"),
                          "decoder_padding_mask": np.ones((2, 3), bool)})
    assert np.isfinite(np.asarray(keras.ops.cast(output["decoder_sequence_output"], "float32"))).all()


def test_greedy_matches_teacher_forcing_and_beam_of_one():
    lm = _tiny_lm(1)
    source = np.random.RandomState(1).randint(3, 40, (4, 6)).astype("int32")
    greedy = np.asarray(t5.greedy(lm, source, 8))
    decoder = np.concatenate([np.zeros((4, 1), "int32"), greedy[:, :-1]], axis=1)
    logits = np.array(t5.logits(lm, t5.model_inputs(source, decoder, np.ones_like(decoder))))
    logits[..., t5.PAD] = -np.inf  # decoding never emits PAD before EOS
    for row in range(4):
        end = next((i for i, t in enumerate(greedy[row]) if t in (t5.EOS, t5.PAD)), 8)
        np.testing.assert_array_equal(np.argmax(logits[row, :end], -1), greedy[row, :end])
    np.testing.assert_array_equal(np.asarray(t5.beam(lm, source, 8, beam_size=1)), greedy)


@pytest.mark.slow
def test_generation_under_xla_equals_the_graph_generation(tmp_path):
    # The trainer's jit_compile=True compiles evaluate/predict's decoding loop with XLA.
    entry, source = helpers.tiny_entry("t5", tmp_path)
    model = entry.build_model()
    inputs, _ = entry.grouped(source, "validation", 5)
    for method in ("greedy", "beam"):
        entry.jit_compile = False
        graph = entry.generate(model, inputs, method, batch_size=4)
        entry.jit_compile = True
        assert entry.generate(model, inputs, method, batch_size=4) == graph, method
    # One shape for every batch of a length bucket, the last, shorter one included.
    assert entry._xla_ids_fn(model, "greedy").experimental_get_tracing_count() == 1


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


@pytest.mark.slow
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
    manifest = helpers.check_entry("t5", tmp_path, custom_op_signatures=("generate_text",))
    tflite_ops = {a["signature"]: a["ops"] for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert set(tflite_ops) == {"greedy_tokens", "beam_search_tokens", "generate_text"}
    assert all("WHILE" in ops for ops in tflite_ops.values())
    text_model = next(a for a in manifest["artifacts"] if a.get("signature") == "generate_text")
    assert set(text_model["custom_ops"]) <= {"TFText>FastSentencepieceTokenize", "TFText>FastSentencepieceDetokenize"}
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    assert set(saved["signatures"]) >= {"serving_default", "greedy", "beam_search", "sample"}


@pytest.mark.slow
def test_saved_model_samples_what_keras_samples_for_a_seed(tmp_path):
    from export import exporter
    from trainers import Trainer, TrainerConfig

    entry, source = helpers.tiny_entry("t5", tmp_path / "w")
    trainer = Trainer(entry, TrainerConfig(steps=3, batch_size=8), str(tmp_path / "w"))
    trainer.train(source, evaluate=False)
    model = exporter.float32_model(entry, trainer.model)  # what the export holds, whatever `auto` picked
    manifest = exporter.export(entry, model, str(tmp_path / "w"), formats=("saved_model",), source=source,
                               num_checks=8)
    loaded = tf.saved_model.load(manifest["artifacts"][0]["path"])
    inputs = tf.constant(entry.grouped(source, "validation", 8)[0])
    settings = dict(seed=tf.constant(5), temperature=tf.constant(1.5), top_k=tf.constant(0),
                    top_p=tf.constant(0.95))
    keras_text = entry._sample_fn(model)(inputs, **settings)["outputs"].numpy()
    served = loaded.signatures["sample"](inputs=inputs, **settings)["outputs"].numpy()
    assert keras_text.tolist() == served.tolist()
    other_seed = loaded.signatures["sample"](inputs=inputs, **{**settings, "seed": tf.constant(6)})["outputs"]
    assert other_seed.numpy().tolist() != served.tolist()
    greedy = loaded.signatures["greedy"](inputs=inputs)["outputs"].numpy()
    zero_temperature = loaded.signatures["sample"](inputs=inputs, **{**settings, "temperature": tf.constant(0.0)})
    assert zero_temperature["outputs"].numpy().tolist() == greedy.tolist()


def _write(path, header, rows):
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def test_a_mixture_trains_on_each_source_with_its_prefix_and_rate(tmp_path):
    _write(tmp_path / "pairs.tsv", "input\ttarget", [f"word {i}\tmot {i}" for i in range(60)])
    _write(tmp_path / "d2t.csv", "mr,ref", [f'"name : Place {i % 20} | near : Shop {i % 5}",Place {i % 20} is near '
                                            f"Shop {i % 5}" for i in range(80)])
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"sources": [
        {"data": "pairs.tsv", "prefix": "translate: ", "rate": 3},
        {"data": "d2t.csv", "prefix": "data to text: ", "rate": 1, "input_column": "mr", "target_column": "ref"}]}))
    entry, source = helpers.tiny_entry("t5", tmp_path / "w", str(mix))
    train = entry.pairs(source, "train")
    assert {i.split(": ")[0] for i, _ in train} == {"translate", "data to text"}
    assert len(train) == 54 + 72
    batch = next(iter(entry.dataset(source, "train", 400, training=True)))
    inputs = [t.decode() for t in entry.tokenizer.detokenize(batch["inputs"]).numpy()]
    share = np.mean([t.startswith("translate: ") for t in inputs])
    assert 0.68 < share < 0.82, share  # rate 3 : 1
    again = next(iter(entry.dataset(source, "train", 400, training=True)))
    np.testing.assert_array_equal(batch["inputs"], again["inputs"])
    model = entry.build_model()
    result = entry.evaluate(model, source, "validation")
    assert {"bleu/pairs", "chrf/pairs", "bleu/d2t", "chrf/d2t", "slot_accuracy"} <= set(result)


@pytest.mark.parametrize("spec,message", [
    ({"sources": [{"data": "pairs.tsv", "rate": -1}]}, r"sources\[0\]\.rate: expected a positive number, got -1"),
    ({"sources": [{"data": "pairs.tsv", "rate": "often"}]}, r"sources\[0\]\.rate: expected a positive number"),
    ({"sources": [{"data": "nowhere.tsv"}]}, r"sources\[0\]\.data: --data=.*nowhere.tsv: no such file"),
    ({"sources": [{"data": "pairs.tsv", "weight": 2}]}, r"sources\[0\]: unknown keys \['weight'\]"),
    ({"sources": []}, r"at least one source"),
])
def test_bad_mixtures_name_the_file_and_key(tmp_path, spec, message):
    from zoo.t5.entry import read_mixture

    _write(tmp_path / "pairs.tsv", "input\ttarget", ["a\tb"])
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps(spec))
    with pytest.raises(DataError, match=rf"{mix}: .*{message}|{mix}: {message}"):
        read_mixture(str(mix))


def test_tfds_text_to_text_sets(tmp_path):
    import tensorflow_datasets as tfds

    cls = registry.get("t5")
    entry = cls(cls.preset("tiny"), str(tmp_path))
    source = sources.parse("tfds:ted_hrlr_translate/pt_to_en")
    with tfds.testing.mock_data(num_examples=30, policy=tfds.testing.MockPolicy.USE_CODE):
        entry.prepare(source)
        batch = next(iter(entry.dataset(source, "train", 8, training=True)))
        assert entry.num_examples(source, "validation") == 30
    assert batch["inputs"].shape[0] == 8
    assert int(tf.reduce_sum(tf.cast(batch["labels"] == t5.EOS, tf.int32))) == 8


def test_delexicalization_in_python_and_in_the_graph_agree():
    from zoo.text import slots

    keys = ("name", "near")
    mrs = ["name : The Mill | Type : pub | near : Café (Rouge)",
           "Type : pub | name : A\\B+C | area : riverside",
           "name : Blue Spice",
           "Type : coffee shop | area : city centre"]
    outputs = ["<name> is near <near> .", "<name> by the river, not <near>", "<name><name>", "A coffee shop ."]
    graph_delex = [t.decode() for t in slots.tf_delexicalize(tf.constant(mrs), keys).numpy()]
    assert graph_delex == [slots.delexicalize(m, keys) for m in mrs]
    assert graph_delex[0] == "name : <name> | Type : pub | near : <near>"
    graph_relex = slots.tf_relexicalize(tf.constant(mrs), tf.constant(outputs), keys).numpy()
    assert [t.decode() for t in graph_relex] == [slots.relexicalize(m, o, keys) for m, o in zip(mrs, outputs)]
    assert graph_relex[0].decode() == "The Mill is near Café (Rouge) ."
    assert graph_relex[1].decode() == "A\\B+C by the river, not <near>"  # no near in that input


def test_delexicalized_training_pairs_and_vocabulary(tmp_path):
    path = tmp_path / "d2t.tsv"
    rows = ["input\ttarget"] + [f"name : Place {i % 30} | near : Shop {i % 7}\tPlace {i % 30} sits near Shop "
                                f"{i % 7} ." for i in range(90)]
    path.write_text("\n".join(rows) + "\n")
    cls = registry.get("t5")
    config = cls.preset("tiny")
    config.delexicalize = "name,near"
    entry = cls(config, str(tmp_path / "w"))
    source = sources.parse(str(path))
    entry.prepare(source)
    pairs = entry.training_pairs(entry.pairs(source, "train"))
    assert all(i.startswith("name : <name> | near : <near>") and t == "<name> sits near <near> ." for i, t in pairs)
    processor = __import__("sentencepiece").SentencePieceProcessor(model_file=entry.vocabulary_path)
    assert processor.encode("<name> sits near <near>", out_type=str)[0] in ("<name>", "▁<name>", "▁")
    assert processor.piece_to_id("<name>") != processor.unk_id()
    servables = entry.serving_functions(entry.build_model())
    assert "generate_text" not in servables  # TFLite has no regular expressions
