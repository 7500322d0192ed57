"""The `gan` zoo entry: two training phases (discriminator, then generator), metrics, serving."""

import tensorflow as tf
from keras import ops

from zoo import registry
from zoo.entry import Phase, TrainingLength
from zoo.gan import losses
from zoo.gan.config import GanConfig
from zoo.gan.model import Gan
from zoo.images.entry import GenerativeImageEntry


@registry.register("gan")
class GanEntry(GenerativeImageEntry):
    """DCGAN by default, WGAN-GP with `--config gan_loss=wgan_gp`.

    Each trainer step runs two phases with their own optimizers: the discriminator (critic)
    on real images and on generated ones from the batch's `z_discriminator`, then the
    generator on `z_generator`. Data as for the VAE (folders, .npz, TFDS, builtin:shapes).

    Example:
        >>> import tempfile
        >>> from zoo import sources
        >>> entry = GanEntry(GanEntry.preset("tiny"), tempfile.mkdtemp())
        >>> entry.prepare(sources.parse("builtin:shapes"))
        >>> [p.name for p in entry.phases(entry.build_model())]
        ['discriminator', 'generator']
    """

    description = "DCGAN (or WGAN-GP): generator and discriminator as two phases of one trainer step."
    config_class = GanConfig
    tflite_signature = "generator"
    # The first phase's loss is the discriminator's: how well it tells real from generated says
    # little of the generator, so it is not called `val_loss` (which early stopping would
    # minimize); the validation figure is the Fréchet distance (`validation_metric`).
    validation_loss_name = "val_discriminator_loss"
    # DCGAN's recipe (Radford et al.): Adam lr 2e-4, beta_1 0.5, small batches, no clipping;
    # far better Fréchet distances on MNIST than the trainer's own defaults (WORKSPACE_NOTES.md,
    # "GAN against the keras-io ... peer").
    trainer_defaults = {"learning_rate": 2e-4, "beta_1": 0.5, "batch_size": 32, "clipnorm": 0.0}
    training_length = TrainingLength(steps=6000, min_epochs=2, max_epochs=200)

    def build_model(self):
        c = self.config
        return Gan(self.image_shape, latent_dim=c.latent_dim, generator_filters=c.generator_filters,
                   discriminator_filters=c.discriminator_filters, kernel_size=c.kernel_size,
                   output_kernel_size=c.output_kernel_size, batch_norm=c.batch_norm, name="gan")

    def batch_noise(self, count, seed, step):
        # One seed pair per batch; the three draws differ by their second seed word.
        def seed_of(k):
            return tf.stack([seed[0], seed[1] * 3 + k])

        return {"z_discriminator": tf.random.stateless_normal([count, self.latent_dim], seed=seed_of(0)),
                "z_generator": tf.random.stateless_normal([count, self.latent_dim], seed=seed_of(1)),
                "alpha": tf.random.stateless_uniform([count, 1, 1, 1], seed=seed_of(2))}

    def loss(self, model, batch, training):
        """The discriminator's (critic's) loss of each example."""
        real = batch["images"]
        fake = ops.stop_gradient(model.generator(batch["z_discriminator"], training=training))
        # One discriminator call over both halves (larger convolutions, one pass of the
        # weights); it has no batch statistics, so each example's logit is the same as alone.
        logits = ops.squeeze(model.discriminator(ops.concatenate([real, fake], 0), training=training), -1)
        real_logits, fake_logits = logits[:ops.shape(real)[0]], logits[ops.shape(real)[0]:]
        if self.config.gan_loss == "dcgan":
            return losses.dcgan_discriminator(real_logits, fake_logits)
        penalty = losses.gradient_penalty(lambda x: model.discriminator(x, training=training), real, fake,
                                          batch["alpha"])
        return losses.wgan_critic(real_logits, fake_logits) + self.config.gradient_penalty_weight * penalty

    def generator_loss(self, model, batch, training):
        fake = model.generator(batch["z_generator"], training=training)
        logits = ops.squeeze(model.discriminator(fake, training=training), -1)
        if self.config.gan_loss == "dcgan":
            return losses.dcgan_generator(logits)
        return losses.wgan_generator(logits)

    def phases(self, model):
        return [Phase("discriminator", self.loss, lambda m: m.discriminator.trainable_variables),
                Phase("generator", self.generator_loss, lambda m: m.generator.trainable_variables)]

    def decode(self, model, z):
        return model.generator(z, training=False)
