"""Settings of the GAN entry, with its presets."""

import dataclasses
from typing import Tuple

from zoo.config import ConfigError
from zoo.images.config import ImageDataConfig
from zoo.vae.config import int_tuple

LOSSES = ("dcgan", "wgan_gp")


@dataclasses.dataclass
class GanConfig(ImageDataConfig):
    """GAN settings (and the image data ones, `zoo/images/config.py`); each is a `--config` key.

    Attributes:
        latent_dim: size of the generator's latent vectors.
        generator_filters: channels of the generator's transposed convolutions (one doubling each).
        discriminator_filters: channels of the discriminator's stride-2 convolutions.
        kernel_size: kernel size of the (transposed) convolutions.
        output_kernel_size: kernel size of the generator's last convolution.
        batch_norm: batch normalization in the generator (synchronized across replicas).
        gan_loss: "dcgan" (non-saturating cross-entropy) or "wgan_gp" (Wasserstein critic with
            a gradient penalty; one critic step per generator step, as the trainer runs one
            optimizer step per phase).
        gradient_penalty_weight: lambda of the WGAN-GP penalty.
    """

    latent_dim: int = 64
    generator_filters: Tuple[int, ...] = (128, 64)
    discriminator_filters: Tuple[int, ...] = (64, 128)
    kernel_size: int = 4
    output_kernel_size: int = 5
    batch_norm: bool = True
    gan_loss: str = "dcgan"
    gradient_penalty_weight: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        self.generator_filters = int_tuple(self.generator_filters, "generator_filters")
        self.discriminator_filters = int_tuple(self.discriminator_filters, "discriminator_filters")
        if self.gan_loss not in LOSSES:
            raise ConfigError(f"--config gan_loss={self.gan_loss}: expected one of {', '.join(LOSSES)}.")


def _tiny():
    return GanConfig(latent_dim=8, generator_filters=(16, 8), discriminator_filters=(8, 16),
                     output_kernel_size=3, eval_examples=64, frechet_examples=64, frechet_train_steps=20,
                     grid_size=4)


def _small():
    return GanConfig()


def _base():
    return GanConfig(latent_dim=128, generator_filters=(256, 128, 64), discriminator_filters=(64, 128, 256))


GanConfig.PRESETS = {"tiny": _tiny, "small": _small, "base": _base}
