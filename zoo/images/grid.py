"""Image grids as PNG files (encoded with `tf.io`), what a person looks at after each epoch.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> save(np.zeros((6, 28, 28, 1), "float32"), path, columns=3).shape
    (62, 92, 1)
"""


import numpy as np
import tensorflow as tf

from zoo import fileio


def to_uint8(images):
    """uint8 pixels of float images in [0, 1] (clipped) or of uint8 images."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def make(images, columns, padding=2, background=255):
    """One uint8 picture `[rows * (H + padding) + padding, ...]` of `[N, H, W, C]` images."""
    images = to_uint8(images)
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                   background, np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * (height + padding), padding + (i % columns) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def save(images, path, columns, padding=2):
    """Writes the grid of `images` to the PNG file `path` (atomically); returns the grid."""
    grid = make(images, columns, padding)
    fileio.write_atomic(path, tf.io.encode_png(grid).numpy())
    return grid


def pairs(inputs, outputs, pairs_per_row=8):
    """Inputs beside their outputs: `[2N, H, W, C]` in the order of a grid of `2 * pairs_per_row` columns."""
    inputs, outputs = to_uint8(inputs), to_uint8(outputs)
    return np.stack([inputs, outputs], axis=1).reshape((-1,) + inputs.shape[1:]), 2 * pairs_per_row
