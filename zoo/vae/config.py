"""Settings of the VAE entry, with its presets."""

import dataclasses
from typing import Tuple

from zoo.config import ConfigError
from zoo.images.config import ImageDataConfig


def int_tuple(values, key):
    """A tuple of positive ints from a config value (`32,64` on the command line gives strings)."""
    try:
        result = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--config {key}={values}: expected comma-separated integers, e.g. 32,64.") from None
    if not result or min(result) < 1:
        raise ConfigError(f"--config {key}={values}: expected at least one positive integer.")
    return result


@dataclasses.dataclass
class VaeConfig(ImageDataConfig):
    """VAE settings (and the image data ones, `zoo/images/config.py`); each is a `--config` key.

    Attributes:
        latent_dim: size of the latent space.
        filters: channels of the encoder's stride-2 convolutions (the decoder mirrors them).
        dense_units: a dense layer after the convolutions (0: none).
        kernel_size: convolution kernel size.
        likelihood: "bernoulli" (pixel intensities in [0, 1] as Bernoulli means) or "gaussian"
            (learned per-channel scale).
        beta: weight of the KL term in the training loss (beta-VAE; 1 is the plain ELBO).
        kl_warmup_steps: the KL weight rises linearly from beta/kl_warmup_steps at the first step
            to beta at this step (0: beta from the start). Validation always reports the true
            negative ELBO (weight 1).
        res_blocks: residual blocks (two convolutions and a skip) after each strided
            convolution of the encoder and of the decoder (`small`: 1).
        full_size_blocks: the decoder's blocks at the image's own size too (`small`: no; those
            are a third of the model's arithmetic and were worth nothing measurable).
        pixel_context: kernel size (odd, >= 3) of a causal convolution over the pixels before
            each pixel in raster order, which the likelihood then also depends on (PixelVAE);
            0: pixels independent given the latent vector.
        free_bits: in the training loss, each latent dimension's KL counts as at least this
            many nats per image, so a decoder that could model the pixels alone (`pixel_context`)
            still uses the latent vector (0: off). Validation reports the true ELBO.
        iaf_steps: steps of an inverse autoregressive flow (Kingma et al., 2016) that the
            posterior's Gaussian samples go through, each a MADE network conditioned on the
            encoder (0: the posterior is the diagonal Gaussian itself). Sampling is unchanged.
        iaf_hidden: units of each flow step's network, and of the encoder's context vector.
    """

    latent_dim: int = 32
    filters: Tuple[int, ...] = (32, 64)
    dense_units: int = 0
    kernel_size: int = 3
    likelihood: str = "bernoulli"
    beta: float = 1.0
    kl_warmup_steps: int = 0
    res_blocks: int = 0
    full_size_blocks: bool = True
    pixel_context: int = 0
    free_bits: float = 0.0
    iaf_steps: int = 0
    iaf_hidden: int = 256

    def __post_init__(self):
        super().__post_init__()
        self.filters = int_tuple(self.filters, "filters")
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(f"--config likelihood={self.likelihood}: expected 'bernoulli' or 'gaussian'.")
        if self.beta < 0 or self.kl_warmup_steps < 0 or self.free_bits < 0:
            raise ConfigError("--config beta, kl_warmup_steps and free_bits: expected values >= 0.")
        if self.iaf_steps < 0 or self.iaf_hidden < 1:
            raise ConfigError(f"--config iaf_steps={self.iaf_steps}, iaf_hidden={self.iaf_hidden}: "
                              "expected a count >= 0 and a unit count >= 1.")
        if self.iaf_steps and self.free_bits:
            raise ConfigError("--config free_bits applies to the diagonal posterior's KL per dimension; with "
                              "iaf_steps the KL is one number per image: set one of them to 0.")
        if self.res_blocks < 0:
            raise ConfigError(f"--config res_blocks={self.res_blocks}: expected a count >= 0.")
        if self.pixel_context and (self.pixel_context < 3 or self.pixel_context % 2 == 0):
            raise ConfigError(f"--config pixel_context={self.pixel_context}: expected 0 (off) or an odd "
                              "kernel size >= 3, e.g. 5.")


def _tiny():
    return VaeConfig(latent_dim=4, filters=(4, 8), eval_examples=64, frechet_examples=64,
                     frechet_train_steps=20, grid_size=4)


def _small():
    # One residual block per resolution: 96.1 nats after 10 minutes on one core against 97.1
    # without (3.4x slower per step, 3 nats better per epoch): WORKSPACE_NOTES.md, session 14.
    # None at the image's size in the decoder: 95.26 nats (Fréchet 6.5) in 455 s against 95.41
    # (7.8) in 600 s with them. Not `pixel_context`: 73.5 nats after 10 minutes, but its
    # pixel-by-pixel samples drift as it trains (Fréchet 27 against 7). WORKSPACE_NOTES.md, session 15.
    # A two-step inverse autoregressive flow on the posterior: 91.94 nats (Fréchet 4.4) after
    # 10 minutes on one core (92.39 at seed 1), against 95.26; about 15% more time per step;
    # four steps, 512 or 128 units were worse. WORKSPACE_NOTES.md, session 16.
    return VaeConfig(res_blocks=1, full_size_blocks=False, iaf_steps=2)


def _base():
    return VaeConfig(latent_dim=32, filters=(32, 64, 128), dense_units=256, kl_warmup_steps=2000)


VaeConfig.PRESETS = {"tiny": _tiny, "small": _small, "base": _base}
