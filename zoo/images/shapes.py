"""`builtin:shapes`: anti-aliased shapes drawn by the zoo itself, the image models' default data.

Six classes (disk, ring, square, triangle, plus, cross), each at a random place, size and
angle: light shapes on a dark ground (gray), or coloured on a darker coloured ground (RGB).
Every split is a pure function of its seed, so it never changes between runs.

Example:
    >>> images, labels = draw(4, size=28, channels=1, seed=0)
    >>> images.shape, images.dtype.name, labels.tolist() == draw(4, 28, 1, seed=0)[1].tolist()
    ((4, 28, 28, 1), 'uint8', True)
"""

import numpy as np

CLASSES = ("disk", "ring", "square", "triangle", "plus", "cross")
SPLITS = {"train": (10_000, 0), "validation": (1_000, 1)}


def _distance(kind, x, y, radius, angle):
    """Signed distance in pixels (negative inside) of each pixel to a shape at the origin."""
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    if kind == "disk":
        return np.hypot(u, v) - radius
    if kind == "ring":
        return np.abs(np.hypot(u, v) - radius) - np.maximum(radius * 0.18, 1.0)
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) - radius * 0.8
    if kind == "triangle":
        normals = [np.pi / 2 + k * 2 * np.pi / 3 for k in range(3)]
        return np.max([u * np.cos(a) + v * np.sin(a) for a in normals], axis=0) - radius * 0.5
    width = np.maximum(radius * 0.22, 1.0)
    if kind == "cross":
        u, v = (u + v) / np.sqrt(2), (v - u) / np.sqrt(2)
    bar_u = np.maximum(np.abs(u) - radius, np.abs(v) - width)
    bar_v = np.maximum(np.abs(v) - radius, np.abs(u) - width)
    return np.minimum(bar_u, bar_v)


def draw(count, size=28, channels=1, seed=0):
    """`count` images uint8 `[count, size, size, channels]` and their class ids, drawn with `seed`."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(len(CLASSES), size=count)
    radius = rng.uniform(0.18, 0.34, size=count) * size
    centre = rng.uniform(0.0, 1.0, size=(count, 2)) * (size - 2.2 * radius[:, None]) + 1.1 * radius[:, None]
    angle = rng.uniform(0, 2 * np.pi, size=count)
    ground = rng.uniform(0.0, 0.15, size=(count, channels))
    ink = rng.uniform(0.65, 1.0, size=(count, channels))
    grid = np.arange(size) + 0.5
    images = np.zeros((count, size, size, channels), np.uint8)
    for k, kind in enumerate(CLASSES):
        idx = np.flatnonzero(labels == k)
        if not len(idx):
            continue
        x = grid[None, None, :] - centre[idx, 0, None, None]
        y = grid[None, :, None] - centre[idx, 1, None, None]
        d = _distance(kind, x, y, radius[idx, None, None], angle[idx, None, None])
        coverage = np.clip(0.5 - d, 0.0, 1.0)[..., None]  # anti-aliased edge one pixel wide
        pixels = ground[idx, None, None, :] * (1 - coverage) + ink[idx, None, None, :] * coverage
        images[idx] = np.round(pixels * 255).astype(np.uint8)
    return images, labels.astype(np.int32)


def split(name, size=28, channels=1):
    """The fixed images and labels of split `train` or `validation`."""
    if name not in SPLITS:
        raise ValueError(f"builtin:shapes has no split {name!r}; splits: {', '.join(SPLITS)}.")
    count, seed = SPLITS[name]
    return draw(count, size, channels, seed=1000 + seed)
