"""The Fréchet distance between image sets, in the feature space of a small classifier the zoo trains.

Inception-based FID needs downloaded weights (none can be downloaded here) and 299x299 RGB
inputs, a poor fit for 28x28 digits. Each image model instead trains its own small conv
classifier on the same training data (`prepare`): three stride-2 convolutions (32, 64, 128
filters, ReLU), global average pooling, a 64-unit ReLU layer named `features`, then the class
logits. It learns the data's labels when there are any (MNIST digits, CIFAR-10 classes, the
shapes of `builtin:shapes`, class sub-folders) and otherwise which of four flips (none,
left-right, up-down, both) was applied to an image. Weights start from seeded initializers
and batches come in a seeded order, so the same data and seed give the same classifier and
the same figures on every run (on one machine; float rounding may differ across CPUs).

The distance between two sets with feature means m1, m2 and covariances C1, C2 is
`|m1 - m2|^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2))` (Heusel et al. 2017); lower is closer, 0 for
identical sets. Figures are comparable only between runs that use the same classifier file.

Example:
    >>> import numpy as np
    >>> a = np.random.RandomState(0).randn(500, 4)
    >>> round(frechet_distance(a, a), 6), frechet_distance(a, a + 1.0) > 3.9
    (0.0, True)
"""

import keras
import numpy as np
import tensorflow as tf

from zoo import fileio

FEATURES = "features"
FEATURE_DIM = 64
FLIPS = 4


def frechet_distance(a, b):
    """The Fréchet distance between the Gaussians fitted to feature rows `a` and `b` ([n, d])."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = a.mean(0) - b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # Tr (Ca Cb)^(1/2) = Tr (Ca^(1/2) Cb Ca^(1/2))^(1/2): a symmetric PSD matrix, whose
    # eigenvalues are real and stable even when the covariances are singular (few samples).
    w, v = np.linalg.eigh(ca)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ cb @ root
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(max(diff @ diff + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt, 0.0))


def build_classifier(image_shape, num_classes, seed=0):
    """The feature classifier (float32 whatever the global precision policy)."""
    def init(i):
        return keras.initializers.GlorotUniform(seed=seed * 100 + i)

    conv = dict(kernel_size=3, strides=2, padding="same", activation="relu", dtype="float32")
    return keras.Sequential([
        keras.Input(tuple(image_shape)),
        keras.layers.Conv2D(32, kernel_initializer=init(0), **conv),
        keras.layers.Conv2D(64, kernel_initializer=init(1), **conv),
        keras.layers.Conv2D(128, kernel_initializer=init(2), **conv),
        keras.layers.GlobalAveragePooling2D(dtype="float32"),
        keras.layers.Dense(FEATURE_DIM, activation="relu", kernel_initializer=init(3), name=FEATURES,
                           dtype="float32"),
        keras.layers.Dense(num_classes, kernel_initializer=init(4), name="logits", dtype="float32"),
    ], name="frechet_classifier")


def _flip(images, kind):
    images = tf.where(tf.reshape(kind % 2 == 1, [-1, 1, 1, 1]), tf.reverse(images, [2]), images)
    return tf.where(tf.reshape(kind // 2 == 1, [-1, 1, 1, 1]), tf.reverse(images, [1]), images)


def train_classifier(images, labels=None, num_classes=0, steps=600, batch_size=128, seed=0):
    """Trains the feature classifier on uint8 `images` ([N, H, W, C]) for `steps` steps.

    Args:
        labels: int class ids `[N]`, or None to learn the four flips instead.
        num_classes: classes of `labels` (their maximum + 1 when 0).

    Returns:
        The trained `keras.Sequential`.
    """
    images = np.asarray(images, np.uint8)
    if labels is not None:
        labels = np.asarray(labels, np.int32)
        num_classes = num_classes or int(labels.max()) + 1
    rng = np.random.RandomState(seed)
    passes = -(-steps * batch_size // len(images))
    order = np.concatenate([rng.permutation(len(images)) for _ in range(passes)])
    order = order[:steps * batch_size]
    flips = rng.randint(FLIPS, size=len(order)).astype(np.int32)
    pixels = tf.constant(images)
    targets = tf.constant(labels if labels is not None else np.zeros(len(images), np.int32))

    def batch(index, flip):
        x = tf.cast(tf.gather(pixels, index), tf.float32) / 255.0
        if labels is None:
            return _flip(x, flip), flip
        return x, tf.gather(targets, index)

    ds = tf.data.Dataset.from_tensor_slices((order, flips)).batch(batch_size).map(batch).prefetch(2)
    model = build_classifier(images.shape[1:], num_classes if labels is not None else FLIPS, seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    return model


class FrechetScorer:
    """Fréchet distances of image sets in the feature space of a trained classifier.

    Args:
        classifier: what `train_classifier` returns, or the path of its saved `.keras` file.

    Example:
        >>> import numpy as np
        >>> images = np.random.RandomState(0).randint(0, 256, (64, 28, 28, 1)).astype("uint8")
        >>> scorer = FrechetScorer(train_classifier(images, steps=2, batch_size=16))
        >>> round(scorer.distance(images, images), 6)
        0.0
    """

    def __init__(self, classifier):
        if isinstance(classifier, str):
            with fileio.local_copy(classifier) as local:
                classifier = keras.saving.load_model(local, compile=False)
        self.classifier = classifier
        self.extractor = keras.Model(classifier.inputs, classifier.get_layer(FEATURES).output)
        self._features = tf.function(lambda x: self.extractor(x, training=False))

    def features(self, images, batch_size=500):
        """Feature rows `[N, 64]` of uint8 images, or of float images in [0, 1]."""
        images = np.asarray(images)
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size].astype(np.float32) / scale
            # Every chunk padded to one shape: one trace, and each image's features do not
            # depend on how many others share its chunk.
            padded = np.zeros((batch_size,) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            out.append(self._features(tf.constant(padded)).numpy()[:len(chunk)])
        return np.concatenate(out).astype(np.float64)

    def distance(self, images, reference):
        """The Fréchet distance between two image sets (or a set and reference feature rows)."""
        reference = np.asarray(reference)
        ref = reference if reference.ndim == 2 else self.features(reference)
        return frechet_distance(self.features(images), ref)
