"""Image data from a folder of PNG/JPEG files, an `.npz` file, TFDS or `builtin:shapes`.

Every source becomes uint8 arrays `[N, H, W, C]` per split (with class labels when the data
has them), held in memory: the image models' datasets gather batches from them by index.

- A folder: `.png`, `.jpg` and `.jpeg` files anywhere below it, decoded with `tf.io`. When
  every image sits in a sub-folder of the root and there are at least two, the sub-folders
  are the classes. A file that cannot be decoded stops loading with an error naming it,
  unless `skip_bad_images` is set: then it is skipped and the count reported.
- An `.npz` file: images `[N, H, W]` or `[N, H, W, C]`, uint8 or floats in [0, 1].
- A file or folder is split with a fixed seed: `validation_fraction` of it, at most
  `max_validation_examples`, is held out (60,000 images: 55,000 / 5,000).
- `tfds:NAME[:SPLIT]`: the dataset's `train` (or SPLIT) split for training, its `validation`
  or else `test` split for validation. Nothing is downloaded: prepare the data first
  (`TFDS_DATA_DIR` is honoured).

Example:
    >>> from zoo import sources
    >>> from zoo.images.config import ImageDataConfig
    >>> data = ImageData(sources.parse("builtin:shapes"), ImageDataConfig())
    >>> data.split("validation")[0].shape
    (1000, 28, 28, 1)
"""

import io
import re
import sys
import zipfile

import numpy as np
import tensorflow as tf

from zoo import fileio, sources
from zoo.images import shapes

EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLIT_SEED = 0
BUILTINS = ("shapes",)


def split_indices(count, split, fraction=0.1, max_validation=5000, seed=SPLIT_SEED):
    """Indices of the `train` or `validation` part of `count` examples, with a fixed seed.

    Example:
        >>> len(split_indices(60000, "train")), len(split_indices(60000, "validation"))
        (55000, 5000)
    """
    if split == sources.ALL:
        return np.arange(count)
    if split not in ("train", "validation"):
        raise sources.DataError(f"Unknown split {split!r} for a file source; use train or validation.")
    held_out = min(max_validation, max(1, int(round(count * fraction))))
    if held_out >= count:
        raise sources.DataError(f"{count} images cannot be split into training and validation examples.")
    order = np.random.RandomState(seed).permutation(count)
    return np.sort(order[:count - held_out] if split == "train" else order[count - held_out:])


def conform(images, size=0, channels=0):
    """uint8 `[N, H, W, C]` images resized to `size` (0: as they are) with `channels` (0: as
    they are; alpha dropped)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    c = images.shape[-1]
    if c in (2, 4):  # drop alpha
        images, c = images[..., :c - 1], c - 1
    if channels and c != channels:
        if channels == 3:
            images = np.repeat(images, 3, axis=-1)
        else:
            images = tf.image.rgb_to_grayscale(images).numpy()
    if size and images.shape[1:3] != (size, size):
        resized = tf.image.resize(tf.cast(images, tf.float32), (size, size), antialias=True)
        images = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images, dtype=np.uint8)


def to_uint8(images, where):
    """uint8 pixels from uint8/integer arrays in [0, 255] or floats in [0, 1] (or [0, 255])."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise sources.DataError(
            f"{where}: pixel values span [{low:g}, {high:g}]; expected [0, 1] or [0, 255].")
    if images.dtype.kind == "f" and high <= 1.0:
        images = images * 255.0
    return np.round(images).astype(np.uint8)


def _reason(error):
    """The readable part of a TensorFlow error message."""
    text = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", error.message or "").strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


class ImageData:
    """The images (and labels) of one `--data` source, split and conformed to the config.

    Args:
        source: a `zoo.sources.Source`.
        config: an `ImageDataConfig` (or a config that extends it).
    """

    def __init__(self, source, config):
        self.source = source
        self.config = config
        self.skipped = 0
        self.num_classes = 0
        self._splits = {}

    def split(self, name):
        """(images uint8 [N, H, W, C], labels int32 [N] or None) of split `train` or `validation`."""
        if name not in self._splits:
            images, labels = self._load(name)
            if not len(images):
                raise sources.DataError(f"--data={self.source}: the {name} split holds no images.")
            images = conform(images, self.config.image_size, self.config.channels)
            self._splits[name] = (images, None if labels is None else np.asarray(labels, np.int32))
        return self._splits[name]

    def spec(self):
        """What the models need to know of the data: image shape and classes."""
        images, labels = self.split("train")
        height, width, channels = (int(d) for d in images.shape[1:])
        return {"height": height, "width": width, "channels": channels,
                "num_classes": int(self.num_classes) if labels is not None else 0,
                "train_examples": len(images), "validation_examples": len(self.split("validation")[0]),
                "skipped_images": self.skipped, "data": str(self.source)}

    def _load(self, split):
        kind = self.source.kind
        if kind == "builtin":
            if self.source.name not in BUILTINS:
                raise sources.DataError(f"--data=builtin:{self.source.name}: unknown builtin image data; "
                                        f"builtins: {', '.join('builtin:' + b for b in BUILTINS)}.")
            self.num_classes = len(shapes.CLASSES)
            return shapes.split(split, self.config.image_size or 28, self.config.channels or 1)
        if kind == "tfds":
            return self._tfds(split)
        path = self.source.name
        if fileio.isdir(path):
            images, labels = self._folder(path)
        elif path.endswith(".npz"):
            images, labels = self._npz(path)
        else:
            raise sources.DataError(f"--data={path}: expected a folder of PNG/JPEG images, an .npz file, "
                                    f"tfds:NAME or builtin:shapes.")
        c = self.config
        index = split_indices(len(images), split, c.validation_fraction, c.max_validation_examples)
        return images[index], None if labels is None else labels[index]

    # Files.
    def _npz(self, path):
        try:
            arrays = np.load(io.BytesIO(fileio.read_bytes(path)))
            names = list(arrays.keys())
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise sources.DataError(f"{path}: not a readable .npz file ({e}).") from None
        key = self.config.image_key or next((k for k in ("x_train", "images", "x") if k in names),
                                            names[0] if len(names) == 1 else None)
        if key not in names:
            raise sources.DataError(f"{path}: no image array {key or ''!r}; arrays: {names}. "
                                    f"Set --config image_key=NAME.")
        try:
            images = arrays[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise sources.DataError(f"{path}: array {key!r} cannot be read ({e}).") from None
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 2, 3, 4)):
            raise sources.DataError(f"{path}: array {key!r} has shape {images.shape}; expected [N, H, W] or "
                                    f"[N, H, W, C] with C in 1..4.")
        images = to_uint8(images, f"{path}: array {key!r}")
        label_key = self.config.label_key
        if label_key == "none":
            return images, None
        label_key = label_key or next((k for k in ("y_train", "labels", "y") if k in names), None)
        if label_key is None:
            return images, None
        if label_key not in names:
            raise sources.DataError(f"{path}: no label array {label_key!r}; arrays: {names}.")
        labels = np.asarray(arrays[label_key]).reshape(-1)
        if len(labels) != len(images):
            raise sources.DataError(
                f"{path}: {len(labels)} labels in {label_key!r} for {len(images)} images.")
        _, labels = np.unique(labels, return_inverse=True)
        self.num_classes = int(labels.max()) + 1
        return images, labels

    def _folder(self, root):
        # Not `keras.utils.image_dataset_from_directory`: it resizes every image to `image_size`
        # (256 x 256 unless told) where the zoo keeps the native size and refuses mixed sizes;
        # it decodes inside the pipeline, so a corrupt file fails mid-training without its name
        # (here it is named at load time, or skipped and counted with skip_bad_images); and the
        # generative entries need the images as one array (their held-out split and Fréchet
        # statistics are fixed by index).
        root = root.rstrip("/")
        files = sorted(fileio.join(d, f) for d, _, names in fileio.walk(root) for f in names
                       if f.lower().endswith(EXTENSIONS))
        if not files:
            raise sources.DataError(f"--data={root}: the folder holds no {'/'.join(EXTENSIONS)} images.")
        relative = {f: f[len(root):].lstrip("/") for f in files}
        classes = sorted({relative[f].split("/")[0] for f in files})
        labelled = len(classes) > 1 and all("/" in relative[f] for f in files)
        images, labels, bad = [], [], []
        shape, channels = None, self.config.channels
        for path in files:
            try:
                image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            except tf.errors.OpError as e:  # undecodable, unreadable (permissions), vanished
                reason = _reason(e)
                if not self.config.skip_bad_images:
                    raise sources.DataError(f"{path}: cannot decode the image ({reason}); fix or remove it, "
                                            f"or set --config skip_bad_images=true.") from None
                bad.append((path, reason))
                continue
            image = image.numpy()
            if not channels:
                channels = {1: 1, 2: 1, 3: 3, 4: 3}[image.shape[-1]]
                image = conform(image[None], 0, channels)[0]
            if self.config.image_size:
                image = conform(image[None], self.config.image_size, channels)[0]
            elif shape is None:
                shape = image.shape[:2]
            elif image.shape[:2] != shape:
                raise sources.DataError(f"{path}: {image.shape[0]}x{image.shape[1]} pixels, but the first "
                                        f"image is {shape[0]}x{shape[1]}; set --config image_size=N to "
                                        f"resize all.")
            images.append(image)
            labels.append(classes.index(relative[path].split("/")[0]) if labelled else 0)
        if bad:
            self.skipped = len(bad)
            print(f"Skipped {len(bad)} of {len(files)} images in {root} that cannot be decoded "
                  f"(first: {bad[0][0]}: {bad[0][1]}).", file=sys.stderr)
        if not images:
            raise sources.DataError(f"--data={root}: none of its {len(files)} images could be decoded.")
        self.num_classes = len(classes) if labelled else 0
        return np.stack(images), (np.asarray(labels) if labelled else None)

    # TFDS.
    def _tfds(self, split):
        import tensorflow_datasets as tfds

        # TFDS image sets hold out `test` (mock data lists no splits).
        builder, name = sources.tfds_split(self.source, split, unlisted_held_out="test")
        features = builder.info.features
        image_key = self.config.image_key or "image"
        if image_key not in features:
            raise sources.DataError(f"--data={self.source}: no image feature {image_key!r}; features: "
                                    f"{list(features)}. Set --config image_key=NAME.")
        label_key = self.config.label_key or "label"
        if label_key == "none" or label_key not in features:
            label_key = None
        batches = builder.as_dataset(split=name, shuffle_files=False).batch(1024)
        images, labels = [], []
        for batch in tfds.as_numpy(batches):
            images.append(batch[image_key])
            if label_key:
                labels.append(batch[label_key])
        if label_key:
            self.num_classes = (getattr(features[label_key], "num_classes", 0)
                                or int(np.max(np.concatenate(labels))) + 1)
        return np.concatenate(images), (np.concatenate(labels) if label_key else None)
