"""T5 span corruption (`zoo/t5/spans.py`) and the `t5_pretrain` entry."""

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from trainers import Trainer, TrainerConfig
from zoo import registry, sources
from zoo.config import ConfigError
from zoo.t5 import spans


def test_corruption_of_a_hand_worked_mask():
    # a b [c d] e f [g h]  ->  inputs a b <0> e f <1>, targets <0> c d <1> g h
    ids = tf.constant([10, 11, 12, 13, 14, 15, 16, 17])
    mask = tf.constant([0, 0, 1, 1, 0, 0, 1, 1]) > 0
    inputs, targets = spans.corrupt(ids, mask, tf.constant([99, 98, 97]))
    assert inputs.numpy().tolist() == [10, 11, 99, 14, 15, 98]
    assert targets.numpy().tolist() == [99, 12, 13, 98, 16, 17]
    # One-token spans, the first at the start of the text.
    inputs, targets = spans.corrupt(ids, tf.constant([1, 0, 0, 1, 0, 0, 0, 1]) > 0, tf.constant([99, 98, 97]))
    assert inputs.numpy().tolist() == [99, 11, 12, 98, 14, 15, 16, 97]
    assert targets.numpy().tolist() == [99, 10, 98, 13, 97, 17]


def _runs(mask):
    """Lengths of the runs of equal values, and the first value."""
    changes = np.flatnonzero(np.diff(mask.astype(int))) + 1
    return np.diff(np.concatenate([[0], changes, [len(mask)]])), bool(mask[0])


def test_masks_have_t5s_density_span_count_and_order():
    lengths_seen = []
    for seed in range(200):
        mask = spans.noise_mask(100, tf.constant([seed, 7])).numpy()
        runs, first_is_noise = _runs(mask)
        assert mask.sum() == 15  # round(100 * 0.15)
        assert not first_is_noise and mask[-1]  # kept span first, dropped span last
        noise_runs = runs[1::2]
        assert len(noise_runs) == 5  # round(15 / 3) spans
        lengths_seen += noise_runs.tolist()
    assert abs(np.mean(lengths_seen) - 3.0) < 1e-9
    assert len(set(lengths_seen)) > 3  # the partition is random, not five spans of three
    a, b = (spans.noise_mask(100, tf.constant(s)).numpy() for s in ([1, 2], [1, 2]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, spans.noise_mask(100, tf.constant([1, 3])).numpy())
    # Short texts keep a token and drop one.
    for length in (2, 3, 5):
        mask = spans.noise_mask(length, tf.constant([0, 0])).numpy()
        assert mask.sum() == 1 and mask[-1]


def test_pretraining_data_round_trips_through_the_sentinels(tmp_path):
    path = tmp_path / "texts.txt"
    words = "the quick brown fox jumps over the lazy dog while seven tall ships sail past".split()
    path.write_text("\n".join(" ".join(np.random.RandomState(i).permutation(words)) for i in range(200)) + "\n")
    entry, source = helpers.tiny_entry("t5_pretrain", tmp_path / "w", str(path))
    batch = helpers.first_batch(entry, source, batch_size=8)
    inputs = entry.detokenize(batch["inputs"]).numpy()
    targets = entry.detokenize(batch["labels"]).numpy()
    for i, t in zip(inputs, targets):
        i, t = i.decode(), t.decode()
        assert "<extra_id_0>" in i and t.startswith("<extra_id_0>")
        # Putting the dropped spans back where their sentinels are gives a training text.
        pieces = t.split("<extra_id_")
        restored = i
        for piece in pieces[1:]:
            number, text = piece.split(">", 1)
            restored = restored.replace(f"<extra_id_{number}>", text, 1)
        assert sorted(restored.split()) == sorted(words)
    # The same stream position gives the same spans; the next epoch other ones.
    again = helpers.first_batch(entry, source, batch_size=8)
    np.testing.assert_array_equal(batch["inputs"], again["inputs"])


@pytest.mark.slow
def test_pretraining_resumes_exactly_and_starts_t5(tmp_path):
    entry, source = helpers.tiny_entry("t5_pretrain", tmp_path / "assets")
    config = TrainerConfig(steps=4, batch_size=8, log_every=1, checkpoint_every=2, seed=0, clipnorm=0.0)
    straight = Trainer(entry, config, str(tmp_path / "straight"))
    straight.train(source, evaluate=False)
    import dataclasses

    first = Trainer(entry, dataclasses.replace(config, steps=2), str(tmp_path / "resumed"))
    first.train(source, evaluate=False)
    second = Trainer(entry, config, str(tmp_path / "resumed"))
    second.train(source, evaluate=False)
    for a, b in zip(straight.model.weights, second.model.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    # `--init_from` starts t5 from these weights, with this vocabulary.
    helpers.zoo_cli("train", "--model=t5_pretrain", f"--workdir={tmp_path / 'pre'}", "--preset=tiny", "--steps=2",
                    "--config=eval_examples=16")
    helpers.zoo_cli("train", "--model=t5", f"--workdir={tmp_path / 'ft'}", "--preset=tiny", "--steps=1",
                    f"--init_from={tmp_path / 'pre'}", "--config=eval_examples=8")
    assert (tmp_path / "ft" / "assets" / "spm.model").read_bytes() == (tmp_path / "pre" / "assets" /
                                                                       "spm.model").read_bytes()
    cls = registry.get("t5")
    other = cls(cls.preset("tiny"), str(tmp_path / "bad"))
    other.config.init_from = str(tmp_path / "pre")
    other.config.num_layers = 3
    with pytest.raises(ConfigError, match="num_layers=2, this model has 3"):
        other.prepare(sources.parse("builtin:dates"))


def _preset_without_sentinels(path, texts, spare_rows):
    """A keras-hub T5 preset whose vocabulary, like Google's t5 SentencePiece models, has no
    `<extra_id_N>` pieces; its embedding has `spare_rows` rows after the pieces."""
    import keras_hub
    import sentencepiece

    from zoo.text import spm

    vocabulary = path.parent / f"{path.name}.spm"
    spm.train(texts, 200, str(vocabulary), normalization="identity", special_ids=spm.T5_IDS)
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(vocabulary)).vocab_size()
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=pieces + spare_rows, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        key_value_dim=8, dropout=0.0)
    backbone.save_to_preset(str(path))
    keras_hub.models.T5Tokenizer(proto=str(vocabulary)).save_to_preset(str(path))
    return pieces


def test_a_preset_vocabulary_without_sentinels_uses_t5s_ids_after_its_pieces(tmp_path):
    cls = registry.get("t5_pretrain")
    source = sources.parse("builtin:dates")
    texts = [t for pair in cls(cls.preset("tiny"), str(tmp_path / "probe")).pairs(source, "train") for t in pair]
    pieces = _preset_without_sentinels(tmp_path / "preset", texts[:2000], spare_rows=100 + 28)
    entry = cls(cls.preset(str(tmp_path / "preset")), str(tmp_path / "run"))
    entry.prepare(source)
    # `<extra_id_0>` is the last of the 100 ids after the pieces, `<extra_id_99>` the first.
    assert entry.sentinel_ids[0] == pieces + 99 and entry.sentinel_ids[99] == pieces
    inputs, _, labels = entry.corrupted(tf.constant(entry.token_rows(source, "train")[0]), tf.constant([0, 1]))
    assert pieces + 99 in inputs.numpy().tolist() and labels.numpy()[0] == pieces + 99
    # Ids without a piece (sentinels, spare rows) detokenize as the unknown piece, not an error.
    text = entry.detokenize(tf.constant([[entry.sentinel_ids[0], pieces + 120, 1]])).numpy()[0].decode()
    assert text.count("\u2047") == 2, text
    # An embedding with no room for the sentinels cannot pretrain: said at once, naming the preset.
    _preset_without_sentinels(tmp_path / "small", texts[:2000], spare_rows=10)
    with pytest.raises(ConfigError, match="no <extra_id_N> pieces.*100 sentinels"):
        cls(cls.preset(str(tmp_path / "small")), str(tmp_path / "run2")).prepare(source)
