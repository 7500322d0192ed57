"""The `gan` entry: losses, the WGAN-GP gradient penalty, two phases, sizes, exports."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from export import exporter
from tests import helpers
from trainers import Trainer, TrainerConfig
from zoo.gan import losses
from zoo.images import grid, shapes


def test_gradient_penalty_on_known_functions():
    rng = np.random.RandomState(0)
    real = tf.constant(rng.randn(4, 3, 3, 2), tf.float32)
    fake = tf.constant(rng.randn(4, 3, 3, 2), tf.float32)
    alpha = tf.constant(rng.uniform(size=(4, 1, 1, 1)), tf.float32)
    # A linear critic <w, x> has gradient w everywhere: penalty (|w| - 1)^2 for every example.
    w = tf.constant(rng.randn(3, 3, 2), tf.float32)
    penalty = losses.gradient_penalty(lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3]), real, fake, alpha)
    np.testing.assert_allclose(penalty, [(np.linalg.norm(w) - 1) ** 2] * 4, rtol=1e-5)
    # |x|^2 / 2 has gradient x: the penalty is (|x_hat| - 1)^2 at the interpolate x_hat.
    penalty = losses.gradient_penalty(lambda x: 0.5 * tf.reduce_sum(x * x, axis=[1, 2, 3]), real, fake, alpha)
    mixed = (alpha * real + (1 - alpha) * fake).numpy().reshape(4, -1)
    np.testing.assert_allclose(penalty, (np.linalg.norm(mixed, axis=1) - 1) ** 2, rtol=1e-5)
    # A 1-Lipschitz critic with unit gradient (a unit-norm linear map) is not penalized.
    unit = w / tf.norm(w)
    penalty = losses.gradient_penalty(lambda x: tf.reduce_sum(x * unit, axis=[1, 2, 3]), real, fake, alpha)
    np.testing.assert_allclose(penalty, 0.0, atol=1e-6)


def test_dcgan_losses_from_logits():
    zero = np.zeros(3, "float32")
    np.testing.assert_allclose(losses.dcgan_discriminator(zero, zero), 2 * math.log(2), rtol=1e-6)
    np.testing.assert_allclose(losses.dcgan_generator(zero), math.log(2), rtol=1e-6)
    # A confident, correct discriminator has a near-zero loss; the fooled generator a large one.
    assert float(losses.dcgan_discriminator(np.float32(20.0), np.float32(-20.0))) < 1e-8
    assert float(losses.dcgan_generator(np.float32(-20.0))) == pytest.approx(20.0, rel=1e-6)
    np.testing.assert_allclose(losses.wgan_critic(np.float32(3.0), np.float32(1.0)), -2.0)


def test_two_phases_own_disjoint_variables(tmp_path):
    entry, source = helpers.tiny_entry("gan", tmp_path)
    model = entry.build_model()
    discriminator, generator = entry.phases(model)
    d = {id(v) for v in discriminator.variables(model)}
    g = {id(v) for v in generator.variables(model)}
    assert not d & g and d | g == {id(v) for v in model.trainable_variables}
    config = TrainerConfig(steps=1, batch_size=8, log_every=1)
    trainer = Trainer(entry, config, str(tmp_path / "t"))
    before = [np.array(v) for v in trainer.model.trainable_variables]
    trainer.train(source, evaluate=False)
    # Each phase has an optimizer of its own, which took one step.
    assert len({id(o) for o in trainer.optimizers}) == 2
    assert [int(o.iterations.numpy()) for o in trainer.optimizers] == [1, 1]
    changed = [id(v) for v, b in zip(trainer.model.trainable_variables, before)
               if not np.array_equal(b, np.array(v))]
    assert set(changed) & {id(v) for v in trainer.model.discriminator.trainable_variables}
    assert set(changed) & {id(v) for v in trainer.model.generator.trainable_variables}
    # The same step (same weights, same batch) with a generator loss of zero gradient: the
    # discriminator ends where it did, so the generator's phase never moves it, and the generator
    # stays where it started, so the discriminator's phase never moves the generator.
    generator_loss = entry.generator_loss
    entry.generator_loss = lambda model, batch, training: 0.0 * generator_loss(model, batch, training)
    still = Trainer(entry, config, str(tmp_path / "still"))
    for v, b in zip(still.model.trainable_variables, before):
        v.assign(b)
    still.train(source, evaluate=False)
    for a, b in zip(still.model.discriminator.weights, trainer.model.discriminator.weights):
        np.testing.assert_array_equal(a, b)
    start = {id(v): b for v, b in zip(still.model.trainable_variables, before)}
    for v in still.model.generator.trainable_variables:
        np.testing.assert_array_equal(v, start[id(v)])


@pytest.mark.slow
def test_wgan_gp_trains_the_same_on_two_replicas(tmp_path):
    entry, source = helpers.tiny_entry("gan", tmp_path / "assets")
    entry.config = dataclasses.replace(entry.config, gan_loss="wgan_gp")
    batch = helpers.first_batch(entry, source)
    model = entry.build_model()
    critic = np.asarray(entry.loss(model, batch, training=True))
    generated = model(batch["z_discriminator"], training=True)  # batch statistics, as the loss uses
    real, fake = model.discriminator(batch["images"])[:, 0], model.discriminator(generated)[:, 0]
    penalty = losses.gradient_penalty(model.discriminator, batch["images"], generated, batch["alpha"])
    np.testing.assert_allclose(critic, fake - real + 10.0 * penalty, rtol=1e-4, atol=1e-5)
    helpers.check_training_steps(entry, source, tmp_path)


@pytest.mark.parametrize("size,channels", [(32, 3), (64, 3)])
def test_rgb_images_build_and_train(size, channels, tmp_path):
    images, labels = shapes.draw(60, size, channels, seed=2)
    np.savez(tmp_path / "rgb.npz", x_train=images, y_train=labels)
    entry, source = helpers.tiny_entry("gan", tmp_path / "w", data=str(tmp_path / "rgb.npz"))
    result, before, after = helpers.train_weights(entry, source, tmp_path / "w", steps=2)
    assert np.isfinite(result["loss"]) and any(not np.array_equal(b, a) for b, a in zip(before, after))
    model = entry.build_model()
    assert entry.generate(model, entry.fixed_latents()[:2]).shape == (2, size, size, channels)
    assert model.discriminator(np.zeros((1, size, size, channels), "float32")).shape == (1, 1)


def test_evaluation_writes_samples_and_interpolation(tmp_path):
    entry, source = helpers.tiny_entry("gan", tmp_path)
    model = entry.build_model()
    paths = entry.on_evaluation(model, source, str(tmp_path), step=7, epoch=0.4)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["epoch001-samples.png", "epoch001-interpolation.png"]
    samples, strip = (tf.io.decode_png(tf.io.read_file(p)).numpy() for p in paths)
    # The sample grid shows the fixed latent vectors' images, a 28x28 tile (and a 2-pixel gap) each.
    np.testing.assert_array_equal(samples, grid.make(entry.generate(model, entry.fixed_latents()), 4))
    assert strip.shape == (4 * 30 + 2, 10 * 30 + 2, 1)
    tiles = strip[2:, 2:].reshape(4, 30, 10, 30)[:, :28, :, :28].transpose(0, 2, 1, 3).astype(float)
    # Each row goes from the image of one latent vector to another's, in steps smaller than the
    # whole way.
    start, end = (grid.to_uint8(entry.generate(model, z))[..., 0]
                  for z in entry.interpolation_ends(model, source))
    np.testing.assert_array_equal(tiles[:, 0], start)
    np.testing.assert_array_equal(tiles[:, -1], end)
    whole = np.abs(tiles[:, -1] - tiles[:, 0]).mean((1, 2))
    steps = np.abs(np.diff(tiles, axis=1)).mean((2, 3))
    assert (whole > 0.2).all() and (steps < whole[:, None] / 2).all(), (whole, steps)
    metrics = entry.evaluate(model, source, "validation")
    assert metrics["frechet_distance"] == entry.evaluate(model, source, "validation")["frechet_distance"]
    assert entry.predict(model, ["4:1"])[0].endswith("predictions/samples-4-seed1.png")


@pytest.mark.slow
def test_gan_passes_the_shared_checks(tmp_path):
    manifest = helpers.check_entry("gan", tmp_path)
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    assert saved["signatures"] == ["sample", "serving_default"] and saved["tpu_func"] == "generator"
    assert [a["signature"] for a in manifest["artifacts"] if a["format"] == "tflite"] == ["generator"]


@pytest.mark.slow
def test_int8_generator_and_sample_signature(tmp_path):
    entry, source = helpers.tiny_entry("gan", tmp_path)
    # Three doublings from 4x4 reach 32: the generator crops to 28 (a slice op in TFLite too).
    entry.config = dataclasses.replace(entry.config, generator_filters=(16, 8, 8))
    trainer = Trainer(entry, TrainerConfig(steps=40, batch_size=32, log_every=20), str(tmp_path))
    trainer.train(source, evaluate=False)
    manifest = exporter.export(entry, trainer.model, str(tmp_path), formats=("saved_model", "tflite"),
                               source=source, num_checks=40, quantize=("none", "int8"), int8_io=True,
                               checks=exporter.Verification(max_metric_drop=0.5))
    by_q = {a.get("quantization"): a for a in manifest["artifacts"]}
    assert by_q["none"]["parity"]["mismatches"] == 0
    int8 = by_q["int8"]
    assert int8["full_integer"] and int8["op_sets"] == ["TFLITE_BUILTINS_INT8"]
    assert int8["parity"]["drop"] <= 0.5
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=int8["path"]).get_signature_runner("generator")
    assert runner.get_input_details()["z"]["dtype"] == np.int8
    assert runner.get_output_details()["images"]["shape"].tolist() == [1, 28, 28, 1]
    # The metric the export judges by sees a broken generator: noise scores far below Keras.
    inputs, references = entry.held_out_examples(source, 40)
    noise = list(np.random.RandomState(0).uniform(size=(40, 28, 28, 1)).astype("float32"))
    keras_images = list(entry.generate(trainer.model, np.asarray(inputs)))
    assert entry.score(noise, references) < entry.score(keras_images, references) - 1.0

    loaded = tf.saved_model.load(by_q[None]["path"])
    one = loaded.signatures["sample"](count=tf.constant(3), seed=tf.constant(11))
    two = loaded.signatures["sample"](count=tf.constant(3), seed=tf.constant(11))
    np.testing.assert_array_equal(one["images"], two["images"])
    assert one["images"].dtype == tf.uint8 and one["images"].shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(loaded.signatures["serving_default"](z=one["z"])["images"], one["images"])
    other = loaded.signatures["sample"](count=tf.constant(3), seed=tf.constant(12))["images"]
    assert not np.array_equal(other, one["images"])
    assert trainer.model.generator.layers[-2].name.startswith("cropping2d")


def test_cli_names_a_corrupt_image(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(shapes.draw(4, 28, 1, seed=0)[0]):
        tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(image))
    (folder / "9.jpg").write_bytes(b"\xff\xd8\xffnot a jpeg")
    proc = helpers.zoo_cli("train", "--model=gan", "--preset=tiny", f"--workdir={tmp_path / 'w'}",
                           f"--data={folder}", "--steps=1", check=False)
    assert proc.returncode == 2 and f"{folder / '9.jpg'}: cannot decode the image" in proc.stderr
    assert "skip_bad_images=true" in proc.stderr


def test_fresh_training_starts_from_dcgan_optimizer_settings():
    from trainers.trainer import make_optimizer
    from zoo import commands, registry

    _, trainer_config = commands.initial_configs(registry.get("gan"), "small")
    assert (trainer_config.learning_rate, trainer_config.beta_1, trainer_config.batch_size,
            trainer_config.clipnorm) == (2e-4, 0.5, 32, 0.0)
    assert make_optimizer(trainer_config, 10).beta_1 == 0.5
    # The user's settings win over the entry's; other entries keep the trainer's defaults.
    _, overridden = commands.initial_configs(registry.get("gan"), "small", ["beta_1=0.9", "batch_size=64"])
    assert (overridden.beta_1, overridden.batch_size, overridden.learning_rate) == (0.9, 64, 2e-4)
    _, vae = commands.initial_configs(registry.get("vae"), "small")
    assert (vae.beta_1, vae.learning_rate, vae.lr_schedule, vae.clipnorm) == (0.9, 2e-3, "cosine", 0.0)
    # Defaults can depend on the model config: a pretrained BERT gets a fine-tuning rate.
    bert = registry.get("bert_classifier")
    assert commands.initial_configs(bert, "small")[1].learning_rate == 5e-4
    assert commands.initial_configs(bert, "small", ["preset_dir=/models/bert"])[1].learning_rate == 5e-5
    assert commands.initial_configs(bert, "small", ["preset_dir=/m", "learning_rate=1e-4"])[1].learning_rate == 1e-4
    with pytest.raises(Exception, match="beta_1=1.5"):
        make_optimizer(dataclasses.replace(trainer_config, beta_1=1.5), 10)
