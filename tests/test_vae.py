"""The `vae` entry: ELBO in nats, KL warm-up, training with grids each epoch, exports."""

import dataclasses
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import exporter
from tests import helpers
from trainers import Trainer, TrainerConfig
from zoo import sources
from zoo.images import shapes
from zoo.images.entry import FRECHET_SEED, latents
from zoo.vae.entry import Vae, kl_weight
from zoo.config import ConfigError
from zoo.vae.config import VaeConfig
from zoo.vae.model import AutoregressiveFlowStep, ResidualBlock, VariationalAutoencoder


def _fix_posterior_and_decoder(model, mean, log_variance, logit=0.0):
    """Makes q(z|x) = N(mean, exp(log_variance)) for every x, and every pixel logit `logit`."""
    kernel, bias = model.encoder.get_layer("posterior").get_weights()
    moments = np.concatenate([np.full(model.latent_dim, mean), np.full(model.latent_dim, log_variance)])
    model.encoder.get_layer("posterior").set_weights([np.zeros_like(kernel), moments])
    kernel, bias = model.decoder.get_layer("logits").get_weights()
    model.decoder.get_layer("logits").set_weights([np.zeros_like(kernel), np.full_like(bias, logit)])


def test_neg_elbo_is_in_nats_on_an_analytic_case():
    model = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8))
    x = np.random.RandomState(0).uniform(0, 1, (5, 28, 28, 1)).astype("float32")
    noise = np.random.RandomState(1).randn(5, 3).astype("float32")
    # Every pixel p = sigmoid(0) = 0.5: -log p(x|z) = 784 log 2 for any x in [0, 1].
    # q(z|x) = N(0.5, e^-1) per dimension: KL = 3/2 (0.25 + e^-1 - 1 + 1).
    _fix_posterior_and_decoder(model, 0.5, -1.0)
    reconstruction, kl = (np.asarray(t) for t in model.neg_elbo_terms(x, noise))
    np.testing.assert_allclose(reconstruction, 784 * math.log(2), rtol=1e-5)
    np.testing.assert_allclose(kl, 1.5 * (0.25 + math.exp(-1.0)), rtol=1e-5)
    # With logits l, -log p(x|z) = sum softplus(l) - x l.
    _fix_posterior_and_decoder(model, 0.0, 0.0, logit=2.0)
    reconstruction, kl = (np.asarray(t) for t in model.neg_elbo_terms(x, noise))
    expected = (np.log1p(np.exp(2.0)) - 2.0 * x.astype(np.float64)).reshape(5, -1).sum(1)
    np.testing.assert_allclose(reconstruction, expected, rtol=1e-5)
    np.testing.assert_allclose(kl, 0.0, atol=1e-6)


def test_residual_block_is_relu_of_input_plus_two_convolutions():
    block = ResidualBlock(3, 3)
    x = np.random.RandomState(0).randn(2, 5, 5, 3).astype("float32")
    y = np.asarray(block(x))
    (k1, b1), (k2, b2) = block.inner.get_weights(), block.outer.get_weights()

    def conv(v, k, b):  # "same" 3x3 convolution
        return tf.nn.conv2d(v, k, 1, "SAME").numpy() + b

    expected = np.maximum(x + conv(np.maximum(conv(x, k1, b1), 0.0), k2, b2), 0.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert ResidualBlock.from_config(block.get_config()).filters == 3


def test_residual_blocks_follow_each_resolution_and_old_checkpoints_still_load(tmp_path):
    model = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8), res_blocks=2)
    names = [layer.name for layer in model.decoder.layers]
    assert names[2:] == ["deconv_0", "deconv_0_res_0", "deconv_0_res_1",
                         "deconv_1", "deconv_1_res_0", "deconv_1_res_1", "logits"], names
    encoder = [layer.name for layer in model.encoder.layers]
    assert encoder[:6] + encoder[7:] == ["conv_0", "conv_0_res_0", "conv_0_res_1", "conv_1", "conv_1_res_0",
                                         "conv_1_res_1", "posterior"], encoder  # [6]: a Flatten
    restored = VariationalAutoencoder.from_config(model.get_config())
    assert restored.res_blocks == 2 and len(restored.trainable_weights) == len(model.trainable_weights)
    # Without blocks the layers are those of the models before them: their checkpoints load
    # (paths follow the layers' positions).
    plain = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8))
    plain_encoder = [layer.name for layer in plain.encoder.layers]  # [2]: a Flatten
    assert plain_encoder[:2] + plain_encoder[3:] == ["conv_0", "conv_1", "posterior"], plain_encoder
    x = np.random.RandomState(0).uniform(0, 1, (2, 28, 28, 1)).astype("float32")
    path = tf.train.Checkpoint(model=plain).write(str(tmp_path / "ckpt"))
    again = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8), res_blocks=0)
    tf.train.Checkpoint(model=again).read(path).assert_existing_objects_matched()
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(plain(x)), atol=1e-6)
    small = Vae.preset("small")
    assert (small.res_blocks, small.full_size_blocks) == (1, False)
    assert (small.pixel_context, small.free_bits) == (0, 0.0)
    # `small` leaves out the blocks at the image's size; the layout of session 14's `small`
    # (a block there too) stays the default, so its workdirs (no such key) restore.
    lighter = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8), res_blocks=1,
                                     full_size_blocks=False)
    assert [layer.name for layer in lighter.decoder.layers][2:] == ["deconv_0", "deconv_0_res_0", "deconv_1",
                                                                     "logits"]
    assert VariationalAutoencoder.from_config(lighter.get_config()).full_size_blocks is False
    assert VaeConfig().full_size_blocks is True


def _pixel_model(channels=1):
    keras.utils.set_random_seed(0)
    # 16 hidden channels: some ReLU stays open at every pixel, so a change reaches the logits.
    model = VariationalAutoencoder((12, 12, channels), latent_dim=3, filters=(16, 8), pixel_context=5)
    # Non-zero biases everywhere, so a wrong window or offset shows in the numbers.
    for weight in model.weights:
        if "bias" in weight.path:
            noise = np.random.RandomState(len(weight.path)).randn(*weight.shape)
            weight.assign(noise.astype("float32") * 0.3)
    return model


@pytest.mark.parametrize("channels", [1, 3])
def test_pixel_context_sees_only_earlier_pixels_in_raster_order(channels):
    model = _pixel_model(channels)
    z = np.random.RandomState(0).randn(2, 3).astype("float32")
    x = np.random.RandomState(1).uniform(0, 1, (2, 12, 12, channels)).astype("float32")
    before = np.asarray(model.decode_logits(z, x))
    for row, column in [(0, 0), (5, 7), (11, 11), (6, 0)]:
        changed = x.copy()
        changed[:, row, column, :] = 1.0 - changed[:, row, column, :]
        moved = np.abs(np.asarray(model.decode_logits(z, changed)) - before).max(axis=(0, 3)) > 1e-6
        order = np.arange(144).reshape(12, 12)
        position = row * 12 + column
        assert not moved[order <= position].any(), (row, column)  # neither earlier pixels nor itself
        # The 5x5 window reaches the next pixel and the two rows below (where they exist).
        assert moved[order == position + 1].all() or position == 143


def test_pixel_context_decoding_fills_each_pixel_with_its_mean_given_the_earlier_ones():
    model = _pixel_model()
    z = np.random.RandomState(0).randn(3, 3).astype("float32")
    images = np.asarray(model.decode(z))
    assert images.shape == (3, 12, 12, 1) and 0 < images.min() and images.max() < 1
    # Teacher-forced on its own output, the one-pass likelihood gives back each pixel's mean.
    means = 1.0 / (1.0 + np.exp(-np.asarray(model.decode_logits(z, images))))
    np.testing.assert_allclose(means, images, atol=1e-5)
    assert np.abs(images[0] - images[1]).max() > 1e-3  # the latent vector still matters
    restored = VariationalAutoencoder.from_config(model.get_config())
    assert restored.pixel_context == 5 and len(restored.weights) == len(model.weights)


def test_free_bits_floor_each_dimensions_kl_in_training_only():
    model = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8))
    x = np.random.RandomState(0).uniform(0, 1, (2, 28, 28, 1)).astype("float32")
    noise = np.zeros((2, 3), "float32")
    _fix_posterior_and_decoder(model, 0.5, 0.0)  # KL 0.125 per dimension
    _, kl = model.neg_elbo_terms(x, noise)
    _, floored = model.neg_elbo_terms(x, noise, free_bits=0.5)
    _, above = model.neg_elbo_terms(x, noise, free_bits=0.1)
    np.testing.assert_allclose(np.asarray(kl), 3 * 0.125, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(floored), 3 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(above), 3 * 0.125, rtol=1e-6)
    with pytest.raises(ConfigError, match="pixel_context=4"):
        VaeConfig(pixel_context=4)
    with pytest.raises(ConfigError, match="free_bits"):
        VaeConfig(free_bits=-1.0)


@pytest.mark.parametrize("reverse", [False, True])
def test_flow_step_is_autoregressive_and_its_log_determinant_is_the_jacobians(reverse):
    step = AutoregressiveFlowStep(5, 16, 7, reverse=reverse)
    step.build()
    rng = np.random.RandomState(0)
    for weight in step.weights:  # away from the near-identity start, so the check has teeth
        weight.assign(rng.randn(*weight.shape).astype("float32") * 0.5)
    z = tf.constant(rng.randn(3, 5).astype("float32"))
    context = tf.constant(rng.randn(3, 7).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(z)
        out, log_det = step(z, context)
    jacobian = tape.batch_jacobian(out, z).numpy()  # [batch, out, in]
    np.testing.assert_allclose(log_det, np.linalg.slogdet(jacobian)[1], rtol=1e-4, atol=1e-5)
    # Output i depends on input i (its gate) and on the inputs before it in the step's order.
    order = np.arange(5)[::-1] if reverse else np.arange(5)
    rank = np.argsort(order)
    later = rank[None, :] > rank[:, None]  # [out, in]: the input comes after the output
    assert np.all(np.abs(jacobian[:, later]) < 1e-7) and np.all(np.abs(jacobian[:, ~later]) > 0)


def test_flow_posterior_kl_estimate_and_encode():
    model = VariationalAutoencoder((28, 28, 1), latent_dim=3, filters=(4, 8), iaf_steps=2, iaf_hidden=8)
    x = np.random.RandomState(0).uniform(0, 1, (1, 28, 28, 1)).astype("float32")
    # The encoder gives mean 0.5, log-variance -1 and a zero context; with every gate shut
    # (sigmoid = 1) the flow is the identity, so the one-sample KL estimates average to the
    # Gaussian's exact KL over many draws of the noise.
    kernel, _ = model.encoder.get_layer("posterior").get_weights()
    moments = np.concatenate([np.full(3, 0.5), np.full(3, -1.0), np.zeros(8)])
    model.encoder.get_layer("posterior").set_weights([np.zeros_like(kernel), moments])
    for step in model.flow:
        step.b_gate.assign(np.full(3, 30.0, "float32"))
    noise = np.random.RandomState(1).randn(20000, 3).astype("float32")
    _, kl = model.neg_elbo_terms(np.repeat(x, len(noise), 0), noise)
    exact = 1.5 * (0.25 + math.exp(-1.0) - 1.0 + 1.0)
    assert abs(float(np.mean(kl)) - exact) < 0.05
    np.testing.assert_allclose(model.encode(x)[0], [[0.5] * 3], atol=1e-6)
    # Open gates move the latent vector: encode gives where the mean flows to.
    for step in model.flow:
        step.b_gate.assign(np.zeros(3, "float32"))
        step.b_shift.assign(np.full(3, 2.0, "float32"))
    assert np.all(np.abs(np.asarray(model.encode(x)[0]) - 0.5) > 0.1)
    with pytest.raises(ConfigError, match="free_bits"):
        VaeConfig(iaf_steps=2, free_bits=0.5)


def test_gaussian_likelihood_in_nats():
    model = VariationalAutoencoder((8, 8, 3), latent_dim=2, filters=(4,), likelihood="gaussian")
    _fix_posterior_and_decoder(model, 0.0, 0.0)  # mean pixel 0.5
    model.log_scale.assign(np.log([0.1, 0.2, 0.5]).astype("float32"))
    x = np.random.RandomState(2).uniform(0, 1, (4, 8, 8, 3))
    reconstruction, _ = model.neg_elbo_terms(x.astype("float32"), np.zeros((4, 2), "float32"))
    sigma = np.array([0.1, 0.2, 0.5])
    expected = 0.5 * ((x - 0.5) / sigma) ** 2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)
    expected = expected.reshape(4, -1).sum(1)
    np.testing.assert_allclose(np.asarray(reconstruction), expected, rtol=1e-5)


def test_kl_warmup_and_beta_in_the_training_loss(tmp_path):
    np.testing.assert_allclose(np.asarray(kl_weight([1.0, 50.0, 100.0, 400.0], beta=4.0, warmup_steps=100)),
                               [0.04, 2.0, 4.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(kl_weight([1.0, 7.0], beta=0.5)), [0.5, 0.5])
    config = Vae.preset("tiny")
    config.beta, config.kl_warmup_steps, config.free_bits = 2.0, 10, 0.5
    entry = Vae(config, str(tmp_path))
    entry.prepare(sources.parse("builtin:shapes"))
    source = sources.parse("builtin:shapes")
    model = entry.build_model()
    batches = iter(entry.dataset(source, "train", 4, training=True))
    for step in (1, 2, 3):
        batch = next(batches)
        np.testing.assert_array_equal(batch["step"], [step] * 4)  # the trainer step that takes the batch
    reconstruction, kl = (np.asarray(t) for t in model.neg_elbo_terms(batch["images"], batch["noise"], True,
                                                                      free_bits=config.free_bits))
    np.testing.assert_allclose(entry.loss(model, batch, training=True), reconstruction + 2.0 * 3 / 10 * kl,
                               rtol=1e-6)
    assert config.free_bits and (kl >= config.free_bits * config.latent_dim - 1e-6).all()
    reconstruction, kl = (np.asarray(t) for t in model.neg_elbo_terms(batch["images"], batch["noise"]))
    np.testing.assert_allclose(entry.loss(model, batch, training=False), reconstruction + kl, rtol=1e-6)


def _small_npz(tmp_path, count=200, size=28, channels=1):
    images, labels = shapes.draw(count, size, channels, seed=5)
    path = tmp_path / "images.npz"
    np.savez(path, x_train=images, y_train=labels)
    return str(path)


def test_training_writes_grids_each_epoch_from_fixed_latents(tmp_path):
    # 200 images: 180 train, 20 validation; batch 30 -> 6 steps an epoch.
    entry, source = helpers.tiny_entry("vae", tmp_path / "w", data=_small_npz(tmp_path))
    first = entry.fixed_latents()
    np.testing.assert_array_equal(first, Vae(Vae.preset("tiny"), str(tmp_path)).fixed_latents())
    before = entry.evaluate(entry.build_model(), source, "validation")
    config = TrainerConfig(steps=12, batch_size=30, log_every=6, clipnorm=0.0, learning_rate=1e-2)
    trainer = Trainer(entry, config, str(tmp_path / "w"))
    result = trainer.train(source)
    assert result["neg_elbo"] == pytest.approx(result["reconstruction"] + result["kl"])
    assert result["neg_elbo"] < before["neg_elbo"] - 30
    assert result["val_loss"] == pytest.approx(result["neg_elbo"], rel=1e-4)
    # The Fréchet distance is that of the samples of the fixed Fréchet latents to the validation
    # images; it sits between that of two real image sets (the floor) and the untrained model's.
    scorer, data = entry.scorer(), entry.data(source)
    real = data.split("validation")[0][:entry.config.frechet_examples]
    samples = entry.generate(trainer.model, latents(len(real), FRECHET_SEED, entry.latent_dim).numpy())
    assert result["frechet_distance"] == pytest.approx(scorer.distance(samples, real), rel=1e-6)
    floor = scorer.distance(data.split("train")[0][:len(real)], real)
    assert 5 * floor < result["frechet_distance"] < 0.2 * before["frechet_distance"], (floor, result, before)
    names = sorted(os.listdir(tmp_path / "w" / "images"))
    kinds = ("interpolation", "reconstructions", "samples")
    assert names == [f"epoch00{e}-{kind}.png" for e in (1, 2) for kind in kinds]
    rows = [json.loads(line) for line in open(tmp_path / "w" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows if r["kind"] == "validation"] == [1.0, 2.0]
    # The same latent vectors each epoch: the sample grids differ only because the model learned.
    np.testing.assert_array_equal(entry.fixed_latents(), first)
    samples = [tf.io.decode_png(tf.io.read_file(str(tmp_path / "w" / "images" / f"epoch00{e}-samples.png")))
               .numpy() for e in (1, 2)]
    assert samples[0].shape == (4 * 30 + 2, 4 * 30 + 2, 1) and not np.array_equal(*samples)
    again = entry.on_evaluation(trainer.model, source, str(tmp_path / "again"), 12, 2.0)
    np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(again[0])).numpy(), samples[1])


@pytest.mark.slow
def test_resume_draws_the_same_noise(tmp_path):
    data = _small_npz(tmp_path)

    def run(workdir, stops):
        entry, source = helpers.tiny_entry("vae", workdir, data=data)
        for steps in stops:
            config = TrainerConfig(steps=steps, batch_size=16, log_every=2, checkpoint_every=2)
            trainer = Trainer(entry, config, str(workdir))
            trainer.train(source, evaluate=False)
        return [np.array(v) for v in trainer.model.weights]

    for a, b in zip(run(tmp_path / "straight", [6]), run(tmp_path / "resumed", [2, 6])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size,channels", [(32, 3), (64, 3)])
def test_rgb_images_build_and_train(size, channels, tmp_path):
    entry, source = helpers.tiny_entry("vae", tmp_path / "w", data=_small_npz(tmp_path, 60, size, channels))
    assert entry.image_shape == (size, size, channels)
    result, before, after = helpers.train_weights(entry, source, tmp_path / "w", steps=2)
    assert np.isfinite(result["loss"]) and any(not np.array_equal(b, a) for b, a in zip(before, after))
    assert entry.generate(entry.build_model(), entry.fixed_latents()[:2]).shape == (2, size, size, channels)


def test_predict_writes_sample_grids_and_reconstructions(tmp_path):
    entry, source = helpers.tiny_entry("vae", tmp_path)
    model = entry.build_model()
    image = tmp_path / "digit.png"
    tf.io.write_file(str(image), tf.io.encode_png(shapes.draw(1, 28, 1, seed=0)[0][0]))
    paths = entry.predict(model, ["9:3", str(image)])
    assert paths == [str(tmp_path / "predictions" / "samples-9-seed3.png"),
                     str(tmp_path / "predictions" / "reconstruction-digit.png")]
    assert tf.io.decode_png(tf.io.read_file(paths[0])).shape == (3 * 30 + 2, 3 * 30 + 2, 1)
    assert tf.io.decode_png(tf.io.read_file(paths[1])).shape == (32, 62, 1)
    with pytest.raises(sources.DataError, match=r"input 'lots': expected COUNT or COUNT:SEED"):
        entry.predict(model, ["lots"])


@pytest.mark.slow
def test_vae_passes_the_shared_checks(tmp_path):
    manifest = helpers.check_entry("vae", tmp_path)
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    assert saved["signatures"] == ["encode", "reconstruct", "sample", "serving_default"]
    assert [a["signature"] for a in manifest["artifacts"] if a["format"] == "tflite"] == ["decoder"]


@pytest.mark.slow
def test_signatures_and_int8_decoder(tmp_path):
    entry, source = helpers.tiny_entry("vae", tmp_path)
    # Three doublings from 4x4 reach 32: the decoder crops to 28 (a slice op in TFLite too).
    entry.config = dataclasses.replace(entry.config, filters=(4, 8, 8))
    config = TrainerConfig(steps=40, batch_size=32, log_every=20, clipnorm=0.0)
    trainer = Trainer(entry, config, str(tmp_path))
    trainer.train(source, evaluate=False)
    model = exporter.float32_model(entry, trainer.model)  # what the export holds, whatever `auto` picked
    manifest = exporter.export(entry, model, str(tmp_path), formats=("saved_model", "tflite"),
                               source=source, num_checks=40, quantize=("none", "int8"),
                               checks=exporter.Verification(max_metric_drop=0.5))
    by_q = {a.get("quantization"): a for a in manifest["artifacts"]}
    assert by_q["none"]["parity"]["mismatches"] == 0
    int8 = by_q["int8"]
    assert int8["full_integer"] and int8["builtin_ops_only"] and int8["parity"]["drop"] <= 0.5
    assert trainer.model.decoder.layers[-1].name.startswith("cropping2d")
    assert int8["size_bytes"] < by_q["none"]["size_bytes"] * 1.5

    loaded = tf.saved_model.load(by_q[None]["path"])
    dim = entry.latent_dim
    sample = loaded.signatures["sample"](count=tf.constant(5), seed=tf.constant(3))
    assert sample["images"].dtype == tf.uint8 and sample["images"].shape == (5, 28, 28, 1)
    assert sample["z"].shape == (5, dim)
    again = loaded.signatures["serving_default"](z=sample["z"])["images"]
    np.testing.assert_array_equal(again, sample["images"])
    # `zoo predict 5:3` draws the same latent vectors as sample(count=5, seed=3).
    grid_png = tf.io.decode_png(tf.io.read_file(entry.predict(model, ["5:3"])[0])).numpy()
    np.testing.assert_array_equal(grid_png[2:30, 2:30], sample["images"][0])

    images = entry.data(source).split("validation")[0][:6]
    encoded = loaded.signatures["encode"](images=tf.constant(images))
    mean, log_variance = model.encode(images.astype("float32") / 255.0)
    np.testing.assert_allclose(encoded["mean"], mean, atol=1e-5)
    np.testing.assert_allclose(encoded["log_variance"], log_variance, atol=1e-5)
    reconstructed = loaded.signatures["reconstruct"](images=tf.constant(images))["images"].numpy()
    expected = np.round(np.clip(np.asarray(model(images.astype("float32") / 255.0)), 0, 1) * 255)
    assert reconstructed.dtype == np.uint8 and np.abs(reconstructed.astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_pixel_context_decoder_exports_its_loop_and_says_why_int8_is_skipped(tmp_path):
    entry, source = helpers.tiny_entry("vae", tmp_path)
    entry.config = dataclasses.replace(entry.config, pixel_context=5, free_bits=0.5)
    config = TrainerConfig(steps=30, batch_size=32, log_every=30, clipnorm=0.0)
    trainer = Trainer(entry, config, str(tmp_path))
    trainer.train(source, evaluate=False)
    model = exporter.float32_model(entry, trainer.model)
    manifest = exporter.export(entry, model, str(tmp_path), formats=("saved_model", "tflite"), source=source,
                               num_checks=8, quantize=("none", "dynamic", "int8"))
    tflite_rows = {a["quantization"]: a for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert set(tflite_rows) == {"none", "dynamic"} and tflite_rows["none"]["parity"]["mismatches"] == 0
    assert "WHILE" in tflite_rows["none"]["ops"]  # the pixel-by-pixel loop runs on the phone
    (skipped,) = manifest["skipped"]
    assert (skipped["signature"], skipped["quantization"]) == ("decoder", "int8")
    assert "without pixel_context" in skipped["reason"]
    # The served images are the loop's: each pixel the mean given the pixels before it.
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    z = latents(3, 4, entry.latent_dim)
    served = tf.saved_model.load(saved["path"]).signatures["serving_default"](z=z)["images"].numpy()
    expected = np.round(np.clip(np.asarray(model.decode(z)), 0, 1) * 255)
    assert np.abs(served.astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_cli_train_evaluate_predict_export(tmp_path):
    assert {"vae", "gan"} <= {line.split("\t")[0] for line in helpers.zoo_cli("list").stdout.splitlines()}
    workdir = str(tmp_path / "w")
    helpers.zoo_cli("train", "--model=vae", "--preset=tiny", f"--workdir={workdir}",
                    f"--data={_small_npz(tmp_path)}", "--steps=12", "--batch_size=30",
                    "--config=kl_warmup_steps=6", "--config=learning_rate=0.01")
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows if r["kind"] == "validation"] == [1.0, 2.0]
    assert len(os.listdir(os.path.join(workdir, "images"))) == 6

    metrics = json.loads(helpers.zoo_cli("evaluate", f"--workdir={workdir}").stdout.strip().splitlines()[-1])
    assert {"val_loss", "neg_elbo", "reconstruction", "kl", "frechet_distance"} <= set(metrics)
    # Training evaluates in its own precision (bfloat16 where `auto` picks it), `zoo evaluate`
    # in float32, as exports are: 440.19 against 440.23 nats on a bfloat16 machine.
    assert metrics["neg_elbo"] == pytest.approx(rows[-1]["neg_elbo"], rel=1e-3)

    out = helpers.zoo_cli("predict", f"--workdir={workdir}", "4:2").stdout.strip().splitlines()
    assert out == [f"4:2\t{os.path.join(workdir, 'predictions', 'samples-4-seed2.png')}"]
    assert os.path.getsize(out[0].split("\t")[1]) > 0

    manifest = json.loads(helpers.zoo_cli("export", f"--workdir={workdir}", "--quantize=none,int8",
                                          "--num_checks=10").stdout.strip().splitlines()[-1])
    kinds = sorted((a["format"], a.get("quantization") or "") for a in manifest["artifacts"])
    assert kinds == [("saved_model", ""), ("tflite", "int8"), ("tflite", "none")]
    assert manifest["training_metrics"]["neg_elbo"] == pytest.approx(rows[-1]["neg_elbo"])
