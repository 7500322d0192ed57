"""What the generative image entries (`vae`, `gan`) share: data, noise, metrics, grids, serving.

Noise comes with the data. Random ops inside a replica draw the same numbers on every replica,
so noise drawn in the model would make a two-replica step differ from a single-device one.
Each batch therefore carries its per-example noise, drawn in the input pipeline with
`tf.random.stateless_*` from the seed pair `(seed, batch number)`: any replica split sees the
numbers a single device sees, and a resumed run (whose input position is checkpointed)
draws exactly the noise of a run never interrupted.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from zoo import fileio, sources
from zoo.entry import Servable, ZooEntry
from zoo.images import frechet, grid
from zoo.images.data import ImageData

SPEC_FILE = "image_spec.json"
CLASSIFIER_FILE = "frechet_classifier.keras"
# Latent vectors of fixed seeds: the grid after every epoch shows the same vectors' images.
GRID_SEED, FRECHET_SEED, HELD_OUT_SEED, CALIBRATION_SEED = 1234, 5, 7, 8
INTERPOLATION_ROWS, INTERPOLATION_STEPS = 4, 10
RECONSTRUCTION_PAIRS = 32


def to_uint8(images):
    """uint8 pixels of float images in [0, 1] (TF, for the served graphs)."""
    return tf.cast(tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0) * 255.0), tf.uint8)


def latents(count, seed, dim):
    """`[count, dim]` standard normal latent vectors of a seed, the same in Python and served graphs."""
    seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.random.stateless_normal([count, dim], seed=seed)


class GenerativeImageEntry(ZooEntry):
    """Base of image entries whose model maps latent vectors to images.

    Subclasses set `config_class` and `tflite_signature`, and implement `build_model`,
    `batch_noise` (per-example noise of a batch), `decode` (latent vectors to images in
    [0, 1]) and the loss or phases.
    """

    default_data = "builtin:shapes"
    tflite_signature = None
    task_metric = "neg_frechet_distance"
    validation_metric = ("frechet_distance", "min")

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self.spec = None
        self._data = {}
        self._scorer = None
        self._real_features = {}

    # Data.
    def data(self, source):
        if str(source) not in self._data:
            self._data[str(source)] = ImageData(source, self.config)
        return self._data[str(source)]

    def prepare(self, source):
        """Reads the training split, and trains the Fréchet feature classifier on it (seeded)."""
        data = self.data(source)
        spec = data.spec()
        images, labels = data.split("train")
        classifier = frechet.train_classifier(images, labels, spec["num_classes"],
                                              steps=self.config.frechet_train_steps)
        with fileio.local_dir() as folder:  # Keras writes a local file; copied whole to the assets
            local = os.path.join(folder, CLASSIFIER_FILE)
            classifier.save(local)
            with open(local, "rb") as f:
                fileio.write_atomic(os.path.join(self.assets_dir, CLASSIFIER_FILE), f.read())
        spec["frechet_classifier"] = {"file": CLASSIFIER_FILE, "steps": self.config.frechet_train_steps,
                                      "targets": "labels" if labels is not None else "flips"}
        fileio.write_atomic(os.path.join(self.assets_dir, SPEC_FILE), json.dumps(spec, indent=2))
        self.load_assets()

    def load_assets(self):
        self.spec = json.loads(fileio.read_text(os.path.join(self.assets_dir, SPEC_FILE)))
        self._scorer = None

    @property
    def image_shape(self):
        return (self.spec["height"], self.spec["width"], self.spec["channels"])

    @property
    def latent_dim(self):
        return self.config.latent_dim

    def num_examples(self, source, split):
        return len(self.data(source).split(split)[0])

    def batch_noise(self, count, seed, step):
        """Per-example noise of batch number `step` (int64), drawn from the seed pair `seed`."""
        raise NotImplementedError

    def dataset(self, source, split, batch_size, training, seed=0):
        images, _ = self.data(source).split(split)
        pixels = tf.constant(images)
        # Indices, not images, go through the shuffle buffer: the checkpointed input position
        # then holds a few bytes per example.
        ds = tf.data.Dataset.range(len(images))
        if training:
            ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.batch(batch_size, drop_remainder=training).enumerate()
        salt = tf.constant(2 * seed + (0 if training else 1), tf.int64)

        def make(step, index):
            count = index.shape[0] or tf.shape(index)[0]
            batch = {"images": tf.cast(tf.gather(pixels, index), tf.float32) / 255.0}
            batch.update(self.batch_noise(count, tf.stack([salt, step]), step))
            return batch

        return ds.map(make, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Generation.
    def decode(self, model, z):
        """Images in [0, 1] `[N, H, W, C]` of latent vectors `z` (model inference)."""
        raise NotImplementedError

    def generate(self, model, z, batch_size=500):
        """numpy float images in [0, 1] of latent vectors `z`, in batches."""
        z = np.asarray(z, np.float32)
        return np.concatenate([np.asarray(self.decode(model, tf.constant(z[i:i + batch_size])), np.float32)
                               for i in range(0, len(z), batch_size)])

    def fixed_latents(self):
        """The latent vectors of the sample grid: the same every epoch and every run."""
        count = self.config.grid_size ** 2
        return np.random.RandomState(GRID_SEED).randn(count, self.latent_dim).astype(np.float32)

    def interpolation_ends(self, model, source):
        """(start, end) latent vectors `[rows, latent_dim]` of the interpolation strip."""
        z = self.fixed_latents()
        return z[:INTERPOLATION_ROWS], z[INTERPOLATION_ROWS:2 * INTERPOLATION_ROWS]

    # Metrics.
    def scorer(self):
        if self._scorer is None:
            self._scorer = frechet.FrechetScorer(os.path.join(self.assets_dir, CLASSIFIER_FILE))
        return self._scorer

    def real_features(self, source, split):
        key = (str(source), split)
        if key not in self._real_features:
            images = self.data(source).split(split)[0][:self.config.frechet_examples]
            self._real_features[key] = self.scorer().features(images)
        return self._real_features[key]

    def frechet_distance(self, model, source, split="validation"):
        """Fréchet distance between samples of fixed latent vectors and the split's images."""
        real = self.real_features(source, split)
        z = latents(len(real), FRECHET_SEED, self.latent_dim).numpy()
        return frechet.frechet_distance(self.scorer().features(self.generate(model, z)), real)

    def evaluate(self, model, source, split):
        return {"frechet_distance": self.frechet_distance(model, source, split)}

    # What a person looks at.
    def on_evaluation(self, model, source, workdir, step, epoch):
        """Writes `images/epochNNN-*.png` under `workdir`: samples of the fixed latent vectors and
        an interpolation strip (and what `extra_grids` adds); returns the paths."""
        folder = os.path.join(workdir, "images")
        tag = f"epoch{max(1, math.ceil(epoch - 1e-9)):03d}" if epoch is not None else f"step{step}"
        paths = [os.path.join(folder, f"{tag}-samples.png"), os.path.join(folder, f"{tag}-interpolation.png")]
        grid.save(self.generate(model, self.fixed_latents()), paths[0], columns=self.config.grid_size)
        start, end = self.interpolation_ends(model, source)
        weights = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[None, :, None]
        path = start[:, None, :] * (1 - weights) + end[:, None, :] * weights
        strip = self.generate(model, path.reshape(-1, self.latent_dim))
        grid.save(strip, paths[1], columns=INTERPOLATION_STEPS)
        return paths + self.extra_grids(model, source, folder, tag)

    def extra_grids(self, model, source, folder, tag):
        return []

    def predict(self, model, inputs):
        """Writes an image grid for each input `COUNT[:SEED]` under `WORKDIR/predictions/`;
        returns the PNG paths. `sample(count, seed)` of the SavedModel gives the same images."""
        paths = []
        for text in inputs:
            paths.append(self.predict_one(model, str(text)))
        return paths

    def predict_one(self, model, text):
        parts = text.split(":")
        if not (1 <= len(parts) <= 2 and all(p.strip().isdigit() for p in parts) and int(parts[0]) > 0):
            raise sources.DataError(f"zoo predict: input {text!r}: expected COUNT or COUNT:SEED (e.g. 16:3).")
        count, seed = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
        images = self.generate(model, latents(count, seed, self.latent_dim).numpy())
        path = os.path.join(self.workdir, "predictions", f"samples-{count}-seed{seed}.png")
        grid.save(images, path, columns=math.ceil(math.sqrt(count)))
        return path

    # Serving.
    def serving_functions(self, model):
        dim = self.latent_dim

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="z")])
        def generate(z):
            return {"images": to_uint8(self.decode(model, z))}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="count"),
                                      tf.TensorSpec([], tf.int32, name="seed")])
        def sample(count, seed):
            z = latents(count, seed, dim)
            return {"images": to_uint8(self.decode(model, z)), "z": z}

        @tf.function(input_signature=[tf.TensorSpec([1, dim], tf.float32, name="z")])
        def images(z):
            return {"images": tf.cast(self.decode(model, z), tf.float32)}

        return {
            "serving_default": Servable(generate),
            "sample": Servable(sample),
            self.tflite_signature: Servable(
                images, tflite=True, tpu=True,
                encode=lambda rows: {"z": np.asarray(rows, np.float32).reshape(-1, dim)},
                decode=lambda out: list(np.asarray(out["images"], np.float32))),
        }

    def held_out_examples(self, source, count):
        """(latent vectors as lists of floats, held-out images) for export parity checks."""
        z = np.random.RandomState(HELD_OUT_SEED).randn(count, self.latent_dim).astype(np.float32)
        return [list(map(float, row)) for row in z], list(self.data(source).split("validation")[0][:count])

    def training_inputs(self, source, count):
        """Latent vectors from the prior: what int8 calibration of the generator sees."""
        z = np.random.RandomState(CALIBRATION_SEED).randn(count, self.latent_dim).astype(np.float32)
        return [list(map(float, row)) for row in z]

    def score(self, predictions, references):
        """Minus the Fréchet distance between generated images and held-out ones (higher is better)."""
        return -self.scorer().distance(np.stack(predictions), np.stack(references))
