"""The `vae` zoo entry: loss (negative ELBO), metrics, grids and what is served."""

import dataclasses
import functools
import os

import keras
import numpy as np
import tensorflow as tf

from zoo import fileio, registry, sources
from zoo.entry import Servable, TrainingLength
from zoo.images import grid
from zoo.images.data import conform
from zoo.images.entry import INTERPOLATION_ROWS, RECONSTRUCTION_PAIRS, GenerativeImageEntry, to_uint8
from zoo.vae.config import VaeConfig
from zoo.vae.model import VariationalAutoencoder


def kl_weight(step, beta=1.0, warmup_steps=0):
    """The KL term's weight at training step `step` (1-based): `beta * min(1, step / warmup_steps)`."""
    step = keras.ops.cast(step, "float32")
    if not warmup_steps:
        return beta * keras.ops.ones_like(step)
    return beta * keras.ops.minimum(1.0, step / float(warmup_steps))


@registry.register("vae")
class Vae(GenerativeImageEntry):
    """Convolutional VAE: Gaussian posterior, Bernoulli or Gaussian likelihood, KL warm-up, beta.

    The loss is the negative ELBO in nats per image (the training loss weights the KL term by
    beta and the warm-up; validation reports it with weight 1). Data: a folder of PNG/JPEG
    images, an `.npz` file, `tfds:NAME` (mnist, fashion_mnist, cifar10, ...) or
    `builtin:shapes`.

    Example:
        >>> import tempfile
        >>> from zoo import sources
        >>> entry = Vae(Vae.preset("tiny"), tempfile.mkdtemp())
        >>> entry.prepare(sources.parse("builtin:shapes"))
        >>> model = entry.build_model()
        >>> entry.generate(model, entry.fixed_latents()).shape
        (16, 28, 28, 1)
    """

    description = "Convolutional VAE (Bernoulli/Gaussian likelihood, KL warm-up, beta); images from latents."
    config_class = VaeConfig
    tflite_signature = "decoder"
    validation_metric = ("neg_elbo", "min")
    # Cosine decay from 2e-3, no clipping (a loss summed over pixels makes the trainer's
    # generic clip at 1.0 bind at every step): WORKSPACE_NOTES.md, "Defaults". Batch 32: twice
    # the updates of 64 at nearly the same images/s, 95.4 nats after 10 minutes against 96.1
    # (16: 96.05; WORKSPACE_NOTES.md, session 14).
    trainer_defaults = {"learning_rate": 2e-3, "lr_schedule": "cosine", "batch_size": 32, "clipnorm": 0.0}
    training_length = TrainingLength(steps=20000, min_epochs=10, max_epochs=200)

    def build_model(self):
        c = self.config
        return VariationalAutoencoder(self.image_shape, latent_dim=c.latent_dim, filters=c.filters,
                                      dense_units=c.dense_units, kernel_size=c.kernel_size,
                                      likelihood=c.likelihood, res_blocks=c.res_blocks,
                                      pixel_context=c.pixel_context, full_size_blocks=c.full_size_blocks,
                                      iaf_steps=c.iaf_steps, iaf_hidden=c.iaf_hidden,
                                      name="vae")

    def batch_noise(self, count, seed, step):
        return {"noise": tf.random.stateless_normal([count, self.latent_dim], seed=seed),
                "step": tf.fill([count], tf.cast(step + 1, tf.float32))}

    def loss(self, model, batch, training):
        """Negative ELBO per image in nats; when training, the KL term weighted by beta and warm-up."""
        if not training:
            return sum(model.neg_elbo_terms(batch["images"], batch["noise"]))
        reconstruction, kl = model.neg_elbo_terms(batch["images"], batch["noise"], training=True,
                                                  free_bits=self.config.free_bits)
        return reconstruction + kl_weight(batch["step"], self.config.beta, self.config.kl_warmup_steps) * kl

    def decode(self, model, z):
        return self._decode_fn(model)(z)

    @functools.lru_cache(maxsize=None)
    def _decode_fn(self, model):
        # Traced once: with `pixel_context` decoding is a loop over the pixels, 4x faster traced.
        return tf.function(model.decode, input_signature=[tf.TensorSpec([None, self.latent_dim], tf.float32)])

    # Metrics.
    @functools.lru_cache(maxsize=None)
    def _terms_fn(self, model):
        return tf.function(lambda batch: model.neg_elbo_terms(batch["images"], batch["noise"]))

    def elbo_metrics(self, model, source, split):
        """Negative ELBO, reconstruction term and KL (nats per image) on `eval_examples` of the split."""
        limit = self.config.eval_examples or self.num_examples(source, split)
        totals, count = np.zeros(2), 0
        for batch in self.dataset(source, split, 500, training=False):
            batch = {k: v[:limit - count] for k, v in batch.items()}
            terms = [np.asarray(t, np.float64) for t in self._terms_fn(model)(batch)]
            totals += [t.sum() for t in terms]
            count += len(terms[0])
            if count >= limit:
                break
        reconstruction, kl = totals / count
        return {"neg_elbo": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}

    def evaluate(self, model, source, split):
        return {**self.elbo_metrics(model, source, split), **super().evaluate(model, source, split)}

    # Grids.
    def posterior_means(self, model, images):
        images = np.asarray(images)
        x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        return np.asarray(model.encode(tf.constant(x))[0])

    def interpolation_ends(self, model, source):
        """Posterior means of held-out images: the strip walks from one real image to another."""
        means = self.posterior_means(model, self.data(source).split("validation")[0][:2 * INTERPOLATION_ROWS])
        rows = len(means) // 2
        return means[:rows], means[rows:2 * rows]

    def extra_grids(self, model, source, folder, tag):
        images = self.data(source).split("validation")[0][:RECONSTRUCTION_PAIRS]
        pairs, columns = grid.pairs(images, self.generate(model, self.posterior_means(model, images)))
        path = os.path.join(folder, f"{tag}-reconstructions.png")
        grid.save(pairs, path, columns=columns)
        return [path]

    def predict_one(self, model, text):
        """`COUNT[:SEED]` samples, or the path of an image file: it beside its reconstruction."""
        if not fileio.isfile(text):
            return super().predict_one(model, text)
        image = tf.io.decode_image(tf.io.read_file(text), expand_animations=False).numpy()
        h, w, c = self.image_shape
        image = conform(image[None], h if h == w else 0, c)
        if image.shape[1:3] != (h, w):
            raise sources.DataError(
                f"{text}: {image.shape[1]}x{image.shape[2]} pixels; the model takes {h}x{w}.")
        pairs, _ = grid.pairs(image, self.generate(model, self.posterior_means(model, image)), 1)
        path = os.path.join(self.workdir, "predictions",
                            f"reconstruction-{os.path.splitext(os.path.basename(text))[0]}.png")
        grid.save(pairs, path, columns=2)
        return path

    # Serving.
    def serving_functions(self, model):
        servables = super().serving_functions(model)
        spec = tf.TensorSpec((None,) + self.image_shape, tf.uint8, name="images")

        @tf.function(input_signature=[spec])
        def encode(images):
            mean, log_variance = model.encode(tf.cast(images, tf.float32) / 255.0)
            return {"mean": mean, "log_variance": log_variance}

        @tf.function(input_signature=[spec])
        def reconstruct(images):
            return {"images": to_uint8(model(tf.cast(images, tf.float32) / 255.0))}

        servables.update(encode=Servable(encode), reconstruct=Servable(reconstruct))
        if self.config.pixel_context:
            # Neither TF's int8 calibration nor ai-edge-quantizer handles a WHILE loop (the
            # translator's decode loop fails the same way: WORKSPACE_NOTES.md, issue 13).
            servables[self.tflite_signature] = dataclasses.replace(
                servables[self.tflite_signature], quantizations=("none", "float16", "dynamic"),
                quantization_note="int8 calibration cannot run the pixel-by-pixel decoding loop "
                                  "(pixel_context); dynamic has int8 weights, and a model trained "
                                  "without pixel_context quantizes to full int8")
        return servables
