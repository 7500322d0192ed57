"""Geometry of the image decoders (the VAE's decoder, the GAN's generator): feature maps that
double `steps` times from a small start, then are cropped to the image size.

Example:
    >>> upsampling_start(28, 2)  # 7 -> 14 -> 28
    7
    >>> upsampling_start(30, 2), len(crop_to(30, 30, 2))  # 8 -> 16 -> 32, cropped to 30
    (8, 1)
"""

import keras


def upsampling_start(size, steps):
    """Side of the first decoder feature map: `steps` doublings reach at least `size`."""
    return -(-size // 2 ** steps)


def crop_to(height, width, steps):
    """The layers (none, or one centred `Cropping2D`) that cut `steps` doublings of the
    `upsampling_start` map back to `height` x `width` (e.g. 32 -> 28)."""
    crop_h = upsampling_start(height, steps) * 2 ** steps - height
    crop_w = upsampling_start(width, steps) * 2 ** steps - width
    if not (crop_h or crop_w):
        return []
    return [keras.layers.Cropping2D(((crop_h // 2, crop_h - crop_h // 2), (crop_w // 2, crop_w - crop_w // 2)))]
