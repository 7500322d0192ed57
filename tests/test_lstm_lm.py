"""The `lstm_lm` entry: bits per character, carried state, sampling across runtimes, bad input."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from trainers import Trainer, TrainerConfig
from zoo import registry, sources
from zoo.lstm_lm import vocabulary
from zoo.lstm_lm.entry import split_tail
from zoo.lstm_lm.model import SEP, LstmLanguageModel

TEXT = "".join(f"{name}: {verb} the {thing}.\n" for name in ("ROMEO", "JULIET", "NURSE")
               for verb in ("take", "leave", "love", "fear") for thing in ("rose", "sword", "night", "moon", "day"))


def _entry(tmp_path, text=TEXT * 4, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    cls = registry.get("lstm_lm")
    config = dataclasses.replace(cls.preset("tiny"), **overrides)
    entry = cls(config, str(tmp_path / "work"))
    source = sources.parse(str(path))
    entry.prepare(source)
    return entry, source


def _uniform(model):
    """Zero output weights: every token equally likely."""
    model.build()
    for w in model.output_layer.weights:
        w.assign(np.zeros(w.shape, "float32"))
    return model


def test_bits_per_character_against_a_hand_computed_case(tmp_path):
    entry, source = _entry(tmp_path)
    model = _uniform(entry.build_model())
    result = entry.evaluate(model, source, "validation")
    validation = "".join(entry.documents(source, "validation"))
    # Uniform over V tokens: every character (and nothing else) costs log2(V) bits.
    assert result["characters"] == len(validation) == round(len(TEXT * 4) * 0.1)
    assert result["tokens"] == len(validation)  # the separator is the first input, not a target
    assert result["bits_per_character"] == pytest.approx(math.log2(entry.vocab.size), rel=1e-5)
    assert result["perplexity"] == pytest.approx(entry.vocab.size, rel=1e-4)
    # SentencePiece: the same characters over fewer tokens, each costing log2(V) bits.
    entry, source = _entry(tmp_path / "spm", vocabulary="spm", vocab_size=60)
    result = entry.evaluate(_uniform(entry.build_model()), source, "validation")
    tokens = len(entry.vocab.encode(validation))
    assert result["tokens"] == tokens < len(validation)
    assert result["bits_per_character"] == pytest.approx(tokens * math.log2(entry.vocab.size) / len(validation),
                                                         rel=1e-5)


def test_stream_scoring_equals_one_pass_over_each_part(tmp_path):
    entry, source = _entry(tmp_path)
    model = entry.build_model()  # untrained: the cost differs from token to token
    ids = entry.token_ids(source, "validation")
    total, tokens = entry.stream_nats(model, ids)
    inputs, labels = ids[:-1], ids[1:]
    streams = min(16, len(labels) // entry.config.sequence_length)
    length = -(-len(labels) // streams)
    expected = 0.0
    for k in range(streams):  # each part from a zero state in one call: no windows, no carried state
        part_in, part_labels = inputs[k * length:(k + 1) * length], labels[k * length:(k + 1) * length]
        log_probs = tf.nn.log_softmax(model(part_in[None]))[0].numpy()
        expected -= log_probs[np.arange(len(part_labels)), part_labels].sum()
    assert tokens == len(labels) and streams > 1 and length > entry.config.sequence_length
    assert total == pytest.approx(expected, rel=1e-4)  # float32 sums; one token missed or doubled is ~2e-3


def test_validation_is_the_texts_tail_and_vocabularies_round_trip(tmp_path):
    assert split_tail(["abcdefgh", "ij"], "validation", 0.3) == ["h", "ij"]
    assert split_tail(["abcdefgh", "ij"], "train", 0.3) == ["abcdefg"]
    entry, source = _entry(tmp_path)
    text = TEXT * 4
    assert "".join(entry.documents(source, "train")) + "".join(entry.documents(source, "validation")) == text
    for kind in ("char", "spm"):
        vocab = vocabulary.learn(kind, [text + "a\tb\r\n"], 60, str(tmp_path))
        sample = "JULIET: love\tthe moon.\r\nROMEO: " + "love " * 500 + "~é"
        ids = vocab.encode(sample)
        assert ids.tolist() == vocab.tf_encode(tf.constant([sample])).flat_values.numpy().tolist()
        known = sample[:-3]
        assert vocab.decode(vocab.encode(known)) == known
        assert vocab.tf_decode(vocab.tf_encode(tf.constant([known]))).numpy()[0].decode() == known


def test_carried_state_across_windows_equals_one_long_window():
    model = LstmLanguageModel(12, embedding_dim=6, units=8, num_layers=2, dropout=0.0, embedding_dropout=0.0)
    ids = np.random.default_rng(0).integers(3, 12, size=(3, 20)).astype("int32")
    whole = model(ids)
    first, states = model(ids[:, :7], return_state=True)
    second, states = model(ids[:, 7:15], initial_state=states, return_state=True)
    third = model(ids[:, 15:], initial_state=states)
    np.testing.assert_allclose(np.concatenate([first, second, third], axis=1), whole, atol=1e-5)


def _train(entry, source, workdir, steps, strategy=None, **settings):
    config = TrainerConfig(steps=steps, batch_size=4, log_every=1, checkpoint_every=3, seed=0,
                           steps_per_execution=1, **settings)
    trainer = Trainer(entry, config, str(workdir), strategy=strategy)
    trainer.train(source, evaluate=False)
    return trainer


def test_carried_state_training_resumes_exactly_and_mirrored_equals_one_device(tmp_path):
    entry, source = _entry(tmp_path, carry_state=True)
    batch = next(iter(entry.dataset(source, "train", 4, training=True)))
    assert batch["rows"].numpy().tolist() == [0, 1, 2, 3] and batch["reset"].numpy().all()
    batches = list(entry.dataset(source, "train", 4, training=True).take(3).as_numpy_iterator())
    for before, after in zip(batches, batches[1:]):  # each row reads on where it stopped
        np.testing.assert_array_equal(before["ids"][:, -1], after["ids"][:, 0])
        assert not after["reset"].any()
    # Exact resume in bfloat16 (what `auto` picks on bfloat16 hardware; the carried states are
    # then bfloat16 values), Mirrored == one device at float32 tolerances in float32.
    bf16 = {"mixed_precision": "mixed_bfloat16"}
    straight = _train(entry, source, tmp_path / "straight", 6, **bf16)
    assert len(straight.model.carried) == 2 and np.abs(straight.model.carried[0].numpy()).sum() > 0
    _train(entry, source, tmp_path / "resumed", 3, **bf16)
    resumed = _train(entry, source, tmp_path / "resumed", 6, **bf16)
    for a, b in zip(straight.model.weights, resumed.model.weights):  # the carried states included
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    one = _train(entry, source, tmp_path / "one", 6, mixed_precision="float32")
    mirrored = _train(entry, source, tmp_path / "mirrored", 6, strategy=helpers.mirrored(), mixed_precision="float32")
    for a, b in zip(one.model.weights, mirrored.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5, err_msg=a.path)


def test_sampling_is_seeded_and_honours_its_settings(tmp_path):
    entry, source = _entry(tmp_path, max_length=30)
    model = entry.build_model()
    prompts = ["ROMEO: ", "", "JULIET: love the"]
    once = entry.generate(model, prompts, seed=5, temperature=1.0)
    assert once == entry.generate(model, prompts, seed=5, temperature=1.0)
    assert once != entry.generate(model, prompts, seed=6, temperature=1.0)
    # A prompt samples the same text alone as in a batch (a phone runs batches of one).
    assert entry.generate(model, prompts[1:2], seed=5, temperature=1.0) == once[1:2]
    short = entry.generate(model, prompts, seed=5, temperature=1.0, max_length=4)
    assert all(len(s) <= 4 for s in short) and all(o.startswith(s) for s, o in zip(short, once))
    # A stop string cuts the text just before its first occurrence: take one the model writes.
    seed, text = next((seed, t) for seed in range(50)
                      for t in entry.generate(model, ["ROMEO: "], seed=seed, temperature=1.5) if len(t) > 12)
    stop = text[8:10]
    entry.config = dataclasses.replace(entry.config, stop=stop)
    entry._generate_fn.cache_clear()  # noqa: SLF001  (the served graph is traced with the config's stops)
    cut = entry.generate(model, ["ROMEO: "], seed=seed, temperature=1.5)[0]
    assert cut == text[:text.index(stop)] and len(cut) <= 8
    greedy = entry.generate(model, ["ROMEO: "] * 3, temperature=0.0, seed=1)
    assert len(set(greedy)) == 1 and greedy == entry.generate(model, ["ROMEO: "] * 3, temperature=0.0, seed=2)


@pytest.mark.slow
def test_export_samples_the_same_text_in_keras_saved_model_and_tflite(tmp_path):
    entry, source = _entry(tmp_path, max_length=20)
    manifest = helpers.check_export(entry, source, tmp_path / "export")
    artifacts = {a.get("signature", a["format"]): a for a in manifest["artifacts"] if a.get("quantization") in (None, "none")}
    assert artifacts["saved_model"]["signatures"] == ["generate", "score", "serving_default"]
    assert set(artifacts) >= {"sample_tokens", "step", "score_tokens"}
    assert artifacts["score_tokens"]["parity"]["metric"] == "bits_per_character"
    # A seed other than the configured one, in a fresh process with TensorFlow alone.
    # The float32 model the export holds (a bfloat16 one samples other texts).
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8, mixed_precision="float32"), str(tmp_path / "export"))
    prompts = ["ROMEO: ", "", "NURSE: fear"]
    settings = {"max_length": 12, "temperature": 1.2, "top_k": 5, "top_p": 0.9, "seed": 42}
    keras_text = entry.generate(trainer.model, prompts, **settings)
    script = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "s = json.loads(sys.argv[2])\n"
        "out = m.signatures['generate'](prompts=tf.constant(s.pop('prompts')), max_length=tf.constant(s['max_length']),"
        " temperature=tf.constant(s['temperature'], tf.float32), top_k=tf.constant(s['top_k']),"
        " top_p=tf.constant(s['top_p'], tf.float32), seed=tf.constant(s['seed']))\n"
        "scored = m.signatures['score'](texts=tf.constant(['ROMEO: love the day.', 'Zz']))\n"
        "print(json.dumps([[t.decode() for t in out['continuations'].numpy()],"
        " scored['bits_per_character'].numpy().tolist()]))\n")
    proc = subprocess.run([sys.executable, "-c", script, artifacts["saved_model"]["path"],
                           json.dumps({"prompts": prompts, **settings})], capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    served_text, served_bits = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served_text == keras_text
    keras_bits = entry._score_fn(trainer.model)(tf.constant(["ROMEO: love the day.", "Zz"]))  # noqa: SLF001
    np.testing.assert_allclose(served_bits, keras_bits["bits_per_character"].numpy(), rtol=1e-5)
    # Scoring one text is the stream scoring of its ids (after a separator), per character.
    nats, _ = entry.stream_nats(trainer.model, entry.stream(["ROMEO: love the day."]))
    assert served_bits[0] == pytest.approx(nats / math.log(2) / len("ROMEO: love the day."), rel=1e-4)
    from export import tflite

    servable = entry.serving_functions(trainer.model)["sample_tokens"]
    encoded = servable.encode(prompts)
    encoded.update({k: np.full(len(prompts), v, encoded[k].dtype) for k, v in settings.items()})
    outputs, _ = tflite.run_rows(artifacts["sample_tokens"]["path"], "sample_tokens", encoded)
    assert servable.decode(outputs) == keras_text


def test_bad_input_is_named(tmp_path):
    cls = registry.get("lstm_lm")
    entry = cls(cls.preset("tiny"), str(tmp_path / "work"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(sources.DataError, match=r"empty\.txt: empty"):
        entry.prepare(sources.parse(str(empty)))
    binary = tmp_path / "model.txt"
    binary.write_bytes(b"abc\n\x00\x01\x02")
    with pytest.raises(sources.DataError, match=r"model\.txt: a binary file \(NUL byte at offset 4\)"):
        entry.prepare(sources.parse(str(binary)))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"line one\ncaf\xe9\n")
    with pytest.raises(sources.DataError, match=r"latin\.txt:2: not UTF-8"):
        entry.prepare(sources.parse(str(latin)))
    entry, _ = _entry(tmp_path)
    assert len(entry.predict(entry.build_model(), ["x" * 64])) == 1  # exactly the most a prompt may have
    with pytest.raises(sources.DataError, match=r"prompt 2 .* has 70 tokens; .*max_prompt_length=64"):
        entry.predict(entry.build_model(), ["ok", "x" * 70])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_prompt_length=64"):
        entry._complete_fn(entry.build_model())(tf.constant(["x" * 70]))  # the served signature says it too


def test_tfds_text_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    cls = registry.get("lstm_lm")
    entry = cls(cls.preset("tiny"), str(tmp_path))
    source = sources.parse("tfds:tiny_shakespeare")
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        entry.prepare(source)
        batch = next(iter(entry.dataset(source, "train", 4, training=True)))
        assert entry.documents(source, "validation")  # the dataset's own validation split
    assert batch["ids"].shape == (4, entry.config.sequence_length + 1)


def test_shared_entry_checks(tmp_path):
    entry, source = _entry(tmp_path)
    helpers.check_config_round_trip(entry)
    helpers.check_keras_round_trip(entry, source, tmp_path)
    helpers.check_training_steps(entry, source, tmp_path)


def test_tied_embeddings_share_the_table():
    model = LstmLanguageModel(15, embedding_dim=6, units=8, tie_embeddings=True)
    logits = model(np.full((1, 3), SEP, "int32"))
    assert logits.shape == (1, 3, 15)
    names = [w.path for w in model.weights]
    assert not any("logits" in n for n in names) and any("projection" in n for n in names)
    untied = LstmLanguageModel(15, embedding_dim=6, units=8)
    untied(np.full((1, 3), SEP, "int32"))
    # No [units, vocab] kernel: a [units, embedding] projection and a bias over the vocabulary.
    assert untied.count_params() - model.count_params() == 8 * 15 - (8 * 6 + 6)
    # The logits are the projected outputs times the embedding table.
    y = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
    table = np.asarray(model.embedding.embeddings)
    np.testing.assert_allclose(model.logits(y), np.asarray(model.projection(y)) @ table.T, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.tie_embeddings


def test_a_folder_of_text_files_is_read_in_order_and_split_at_its_tail(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text("first document. " * 30, encoding="utf-8")
    (folder / "b" / "c.txt").write_text("second one! " * 30, encoding="utf-8")
    (folder / "notes.md").write_text("not read", encoding="utf-8")
    cls = registry.get("lstm_lm")
    entry = cls(cls.preset("tiny"), str(tmp_path / "work"))
    source = sources.parse(str(folder))
    entry.prepare(source)
    train, validation = entry.documents(source, "train"), entry.documents(source, "validation")
    assert train[0] == "first document. " * 30 and len(train) == 2 and len(validation) == 1
    assert train[1] + validation[0] == "second one! " * 30
    assert len(validation[0]) == round(len("first document. " * 30 + "second one! " * 30) * 0.1)
    ids = entry.token_ids(source, "train")
    assert (ids == SEP).sum() == 2 and ids[0] == SEP  # each document starts after a separator
    assert entry.vocab.encode("a").tolist() == [vocabulary.UNK]  # "a" is only in notes.md, which is not read
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    (empty / "x.md").write_text("text", encoding="utf-8")
    with pytest.raises(sources.DataError, match=r"empty_folder: the folder holds no \.txt files"):
        cls(cls.preset("tiny"), str(tmp_path / "w2")).prepare(sources.parse(str(empty)))


@pytest.mark.slow
def test_quantized_exports_are_judged_in_bits_per_character(tmp_path):
    from export import exporter

    entry, source = _entry(tmp_path, max_length=8)
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8), str(tmp_path / "work"))
    manifest = exporter.export(entry, trainer.model, str(tmp_path / "work"), formats=("tflite",), source=source,
                               num_checks=10, quantize=("none", "dynamic"))
    judged = {a["signature"]: a["parity"] for a in manifest["artifacts"] if a["quantization"] == "dynamic"}
    for name in ("step", "score_tokens"):
        assert judged[name]["verified"] and judged[name]["metric"] == "bits_per_character", judged
        assert abs(judged[name]["drop"]) < 0.05, judged  # lower is better: drop = quantized - Keras
    assert not judged["sample_tokens"]["verified"] and "note" in judged["sample_tokens"]
    checks = exporter.Verification(max_metric_drop=-1.0)  # any figure fails: the check runs
    with pytest.raises(exporter.ExportError, match=r"lstm_lm_step_dynamic\.tflite: bits_per_character worsens by"):
        exporter.export(entry, trainer.model, str(tmp_path / "work"), formats=("tflite",), source=source,
                        num_checks=10, quantize=("dynamic",), checks=checks)


def test_a_bfloat16_model_samples_and_scores(tmp_path):
    # Its cells may return states in another dtype than the loops carry (a while loop refuses
    # that): what `auto` trains on bfloat16 hardware must still generate in process.
    entry, source = _entry(tmp_path, max_length=8)
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8, mixed_precision="mixed_bfloat16"), str(tmp_path))
    assert trainer.model.compute_dtype == "bfloat16"
    texts = entry.generate(trainer.model, ["ROMEO: ", ""], seed=1, temperature=1.0)
    assert len(texts) == 2 and all(isinstance(t, str) and len(t) <= 8 for t in texts)
    bits = entry._score_fn(trainer.model)(tf.constant(["ROMEO: love"]))["bits_per_character"]  # noqa: SLF001
    assert np.isfinite(bits.numpy()).all()
