import itertools
import json

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from zoo.translator.model import BOS, EOS, PAD, Seq2SeqTranslator


@pytest.mark.parametrize("attention,bidirectional", [("luong", True), ("bahdanau", False), ("none", True)])
def test_step_decoding_matches_teacher_forcing(attention, bidirectional):
    model = Seq2SeqTranslator(30, 25, embedding_dim=8, units=8, num_layers=2,
                              bidirectional=bidirectional, attention=attention)
    rng = np.random.RandomState(0)
    source = rng.randint(4, 30, (3, 7)).astype("int32")
    source[0, 4:] = PAD
    greedy = model.greedy_decode(source, 6).numpy()
    target_in = np.concatenate([np.full((3, 1), 2, "int32"), greedy[:, :5]], axis=1)
    logits = model({"source": source, "target_in": target_in}).numpy()
    logits[..., PAD] = -np.inf  # decoding never emits PAD before EOS
    # Rows stop being comparable after they end.
    for row in range(3):
        end = next((i for i, t in enumerate(greedy[row]) if t in (EOS, PAD)), 6)
        np.testing.assert_array_equal(np.argmax(logits[row, :end], -1), greedy[row, :end])


def test_beam_of_one_is_greedy_and_beams_rank_by_score():
    model = Seq2SeqTranslator(20, 20, embedding_dim=8, units=8, attention="luong")
    source = np.random.RandomState(1).randint(4, 20, (4, 5)).astype("int32")
    np.testing.assert_array_equal(model.beam_search(source, 7, beam_size=1).numpy(),
                                  model.greedy_decode(source, 7).numpy())
    beams = model.beam_search(source, 7, beam_size=3).numpy()
    assert beams.shape == (4, 7) and beams.dtype == np.int32

    # A beam as wide as the number of hypotheses (6 target ids, 3 steps: at most 6 ** 3) drops
    # none: it must return the best of all translations by the score beams rank by (summed
    # log-probabilities over the length penalty ((5 + length) / 6) ** alpha, length counting the
    # ids other than PAD), found here by brute force and teacher forcing; so it is never worse
    # than greedy. (A narrow beam can lose greedy's path, and then score below it.)
    model = Seq2SeqTranslator(20, 6, embedding_dim=8, units=8, attention="luong")
    source = np.random.RandomState(2).randint(4, 20, (8, 5)).astype("int32")
    model.build()
    # Untrained, the next-id distributions are near uniform and the best translation is just EOS:
    # sharpened, they depend on the source and the ids before.
    kernel, bias = model.projection.get_weights()
    model.projection.set_weights([300 * kernel, bias])
    greedy = model.greedy_decode(source, 3).numpy()

    def log_prob(source, ids):
        target_in = np.concatenate([np.full((len(ids), 1), BOS, "int32"), ids[:, :-1]], 1)
        log_probs = tf.nn.log_softmax(model({"source": source, "target_in": target_in})).numpy()
        picked = np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
        after_eos = np.cumsum(ids == EOS, 1) - (ids == EOS) > 0
        return np.where(after_eos, 0.0, picked).sum(1)

    def penalty(ids, alpha):
        return ((5.0 + (ids != PAD).sum(-1)) / 6.0) ** alpha

    def valid(ids):  # PAD after EOS only: a running hypothesis never emits it
        end = ids.index(EOS) + 1 if EOS in ids else len(ids)
        return PAD not in ids[:end] and set(ids[end:]) <= {PAD}

    every = np.array([ids for ids in itertools.product(range(6), repeat=3) if valid(ids)], "int32")
    for alpha in (0.6, 3.0):  # the default, and one that favours long translations more
        best = model.beam_search(source, 3, beam_size=6 ** 3, length_penalty=alpha).numpy()
        best_score = log_prob(source, best) / penalty(best, alpha)
        assert (best_score >= log_prob(source, greedy) / penalty(greedy, alpha) - 1e-4).all()
        for row in range(len(source)):
            scores = log_prob(np.repeat(source[row:row + 1], len(every), 0), every) / penalty(every, alpha)
            assert best_score[row] == pytest.approx(scores.max(), rel=1e-5, abs=1e-4), (alpha, row, best[row])


def test_padding_does_not_change_the_translation():
    model = Seq2SeqTranslator(20, 20, embedding_dim=8, units=8)
    short = np.array([[5, 6, 7]], "int32")
    padded = np.array([[5, 6, 7, 0, 0, 0]], "int32")
    np.testing.assert_array_equal(model.greedy_decode(short, 5), model.greedy_decode(padded, 5))


def test_detokenize_cuts_at_end_token(tmp_path):
    entry, _ = helpers.tiny_entry("translator", tmp_path)
    ids = entry.target_tokenizer.tokenize(["2021-03-03"]).to_tensor()
    tokens = tf.concat([ids, [[EOS, 7, 7]]], axis=1)
    assert entry.detokenize(tokens).numpy().tolist() == [b"2021-03-03"]


@pytest.mark.slow
def test_translator_passes_the_shared_checks(tmp_path):
    manifest = helpers.check_entry("translator", tmp_path)
    tflite_ops = {a["signature"]: a["ops"] for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert set(tflite_ops) == {"greedy_tokens", "beam_search_tokens"}
    assert all("WHILE" in ops for ops in tflite_ops.values())


def test_tsv_folder_and_columns(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.tsv").write_text("".join(f"x{i}\tignored\ty{i}\n" for i in range(30)))
    (folder / "b.tsv").write_text("".join(f"p{i}\tignored\tq{i}\n" for i in range(10)))
    from zoo import sources
    from zoo.translator.entry import Translator

    config = Translator.preset("tiny")
    config.target_column = 2
    entry = Translator(config, str(tmp_path / "w"))
    source = sources.parse(str(folder))
    assert entry.num_examples(source, "train") + entry.num_examples(source, "validation") == 40
    src, tgt = entry._texts(source, "train")
    assert all(t[0] in "yq" and s[0] in "xp" and s[1:] == t[1:] for s, t in zip(src, tgt))


def test_tfds_translation_source(tmp_path):
    import tensorflow_datasets as tfds

    from zoo import sources
    from zoo.translator.entry import Translator

    entry = Translator(Translator.preset("tiny"), str(tmp_path))
    source = sources.parse("tfds:ted_hrlr_translate/pt_to_en")
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        entry.prepare(source)
        batch = next(iter(entry.dataset(source, "train", 8, training=True)))
        assert entry.num_examples(source, "validation") == 40
    c = entry.config
    assert batch["source"].shape == (8, c.max_source_length)
    assert batch["labels"].shape == (8, c.max_target_length)
    assert int(tf.reduce_sum(tf.cast(batch["labels"] == EOS, tf.int32))) == 8


@pytest.mark.slow
def test_decoding_settings_are_chosen_on_validation_and_kept(tmp_path):
    from zoo.translator.entry import DECODING_FILE, DECODING_GRID

    entry, source = helpers.tiny_entry("translator", tmp_path)
    entry.config.eval_examples, entry.config.tune_decoding = 20, True
    model = entry.build_model()
    chosen = entry.on_training_end(model, source)
    record = json.load(open(tmp_path / "assets" / DECODING_FILE))
    assert len(record["tried"]) == len(DECODING_GRID) and record["examples"] == 20
    assert record["chrf"] == pytest.approx(chosen["chrf"])
    assert record["chrf"] == pytest.approx(max(record["tried"].values()), abs=1e-3)
    assert (entry.beam_size, entry.length_penalty) == (record["beam_size"], record["length_penalty"])
    # A new process (evaluate, predict, export) decodes with the chosen settings.
    again = type(entry)(entry.config, str(tmp_path))
    again.load_assets()
    assert (again.beam_size, again.length_penalty) == (record["beam_size"], record["length_penalty"])
    # Greedy decoding is the user's choice: nothing is tuned.
    entry.config.decode = "greedy"
    assert entry.on_training_end(model, source) == {}


def test_label_smoothing_applies_to_training_only(tmp_path):
    from zoo.text.losses import token_cross_entropy

    logits = np.log(np.array([[[0.5, 0.25, 0.25]]], "float32"))
    smoothed = float(token_cross_entropy(np.array([[0]]), logits, 0.3)[0, 0])
    assert smoothed == pytest.approx(0.7 * np.log(2) + 0.3 * -np.mean(np.log([0.5, 0.25, 0.25])), rel=1e-5)
    entry, source = helpers.tiny_entry("translator", tmp_path)
    model, batch = entry.build_model(), helpers.first_batch(entry, source)
    plain = np.asarray(entry.loss(model, batch, training=False))
    entry.config.label_smoothing = 0.0
    np.testing.assert_allclose(np.asarray(entry.loss(model, batch, training=True)), plain, rtol=1e-5)
    entry.config.label_smoothing = 0.1
    assert np.all(np.asarray(entry.loss(model, batch, training=True)) != plain)


@pytest.mark.parametrize("compiled", [False, True])
def test_smoothed_loss_and_its_gradient_equal_the_generic_form(compiled):
    # The smoothed loss's own gradient (one pass over the logits) against the textbook form
    # differentiated by TensorFlow: (1 - e) * -log p(label) + e * mean(-log p).
    import tensorflow as tf
    from zoo.text.losses import token_cross_entropy

    rng = np.random.RandomState(0)
    logits = tf.constant(3 * rng.normal(size=(3, 5, 11)).astype("float32"))
    labels = tf.constant(rng.randint(0, 11, (3, 5)))
    weights = tf.constant(rng.uniform(size=(3, 5)).astype("float32"))

    def both(logits):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            log_p = tf.nn.log_softmax(logits)
            generic = -0.8 * tf.gather(log_p, labels, batch_dims=2) - 0.2 * tf.reduce_mean(log_p, -1)
            ours = token_cross_entropy(labels, logits, 0.2)
            losses = [tf.reduce_sum(weights * value) for value in (generic, ours)]
        return generic, ours, [tape.gradient(loss, logits) for loss in losses]

    generic, ours, (d_generic, d_ours) = (tf.function(both) if compiled else both)(logits)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(generic), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(d_ours), np.asarray(d_generic), rtol=1e-5, atol=1e-6)


def test_smoothed_loss_takes_keras_label_shapes_computes_in_float32_and_refuses_a_second_derivative():
    import tensorflow as tf
    from zoo.text.losses import token_cross_entropy

    rng = np.random.RandomState(1)
    logits = tf.constant(3 * rng.normal(size=(4, 9)).astype("float32"))
    labels = tf.constant(rng.randint(0, 9, (4,)))
    reference = np.asarray(token_cross_entropy(labels, logits, 0.1))
    np.testing.assert_allclose(np.asarray(token_cross_entropy(labels[:, None], logits, 0.1)), reference, rtol=1e-6)
    from_bfloat16 = token_cross_entropy(labels, tf.cast(logits, tf.bfloat16), 0.1)
    assert from_bfloat16.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(from_bfloat16), reference, rtol=0.02)
    with tf.GradientTape() as outer:
        outer.watch(logits)
        with tf.GradientTape() as inner:
            inner.watch(logits)
            loss = tf.reduce_sum(token_cross_entropy(labels, logits, 0.1))
        first = inner.gradient(loss, logits)
    with pytest.raises(LookupError, match="second derivative"):
        outer.gradient(first, logits)


def test_running_hypotheses_never_emit_padding():
    """Even where PAD is the likeliest next id, greedy, beam and sampled outputs put PAD only
    after EOS (else a hypothesis would end early and its length penalty count fewer ids)."""
    from zoo.text import decoding

    model = Seq2SeqTranslator(20, 6, embedding_dim=8, units=8, attention="luong")
    source = np.random.RandomState(3).randint(4, 20, (4, 5)).astype("int32")
    model.build()
    kernel, bias = model.projection.get_weights()
    bias[PAD] = 50.0
    model.projection.set_weights([kernel, bias])
    states, context = model._prepare_decoding(source)
    outputs = [model.greedy_decode(source, 4).numpy(), model.beam_search(source, 4, beam_size=3).numpy(),
               np.asarray(decoding.sample(model.decoding_step, states, context, 4, 4, BOS, EOS, PAD, seed=1))]
    for ids in outputs:
        for row in ids.tolist():
            end = row.index(EOS) + 1 if EOS in row else len(row)
            assert PAD not in row[:end] and set(row[end:]) <= {PAD}, ids
