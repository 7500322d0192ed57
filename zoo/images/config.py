"""Data and evaluation settings shared by the image models (`vae`, `gan`)."""

import dataclasses

from zoo.config import ConfigError


@dataclasses.dataclass
class ImageDataConfig:
    """Where images come from and how they are judged; every field is a `--config` key.

    Attributes:
        image_size: resize every image to `image_size` x `image_size` (0: keep the data's size;
            builtin data is drawn at 28).
        channels: 1 (gray) or 3 (RGB); images are converted (0: the data's own, 1 for builtin).
        image_key: array or feature holding the images ("" : `x_train`/`images`/`x` in an .npz,
            `image` in a TFDS dataset).
        label_key: array or feature holding class labels ("" : `y_train`/`labels`/`y` in an .npz,
            `label` in TFDS; "none": ignore labels). Labels only train the Fréchet classifier.
        validation_fraction: share of a file or folder held out for validation (fixed seed).
        max_validation_examples: at most this many are held out (60,000 images -> 55,000/5,000).
        skip_bad_images: skip images that cannot be decoded (their count is reported) instead of
            stopping with an error that names the file.
        eval_examples: held-out images scored after each epoch (0: all of the split).
        frechet_examples: samples and held-out images the Fréchet distance compares.
        frechet_train_steps: training steps of the zoo's feature classifier (`zoo/images/frechet.py`).
        grid_size: the sample grid is `grid_size` x `grid_size` images from fixed latent vectors.
    """

    image_size: int = 0
    channels: int = 0
    image_key: str = ""
    label_key: str = ""
    validation_fraction: float = 0.1
    max_validation_examples: int = 5000
    skip_bad_images: bool = False
    eval_examples: int = 5000
    frechet_examples: int = 5000
    frechet_train_steps: int = 600
    grid_size: int = 8

    def __post_init__(self):
        if self.channels not in (0, 1, 3):
            raise ConfigError(
                f"--config channels={self.channels}: expected 1 (gray), 3 (RGB) or 0 (the data's).")
        if self.image_size < 0:
            raise ConfigError(f"--config image_size={self.image_size}: expected a size in pixels, or 0.")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"--config validation_fraction={self.validation_fraction}: expected 0 < f < 1.")
        if self.frechet_examples < 2:
            raise ConfigError(f"--config frechet_examples={self.frechet_examples}: need at least 2.")
