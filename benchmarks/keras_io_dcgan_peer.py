"""The peer: the keras-io DCGAN trained by overriding `Model.train_step` (Chollet), on MNIST.

Recipe: keras-team/keras-io `examples/generative/dcgan_overriding_train_step.py` ("DCGAN to
generate face images", fchollet, last modified 2021/01/01; keras.io/examples/generative/
dcgan_overriding_train_step/), read at keras-io commit cca4efba8e0b8514ae3817931696294039b3bfc9.
(An older revision of the same file, commit 0d5f327814b51b9f3efe59bc6845756f630eb9b6, trained a
different, smaller GAN on MNIST with Adam 3e-4 and from-logits BCE; this peer follows the
current CelebA recipe, as asked.)

Kept exactly as in the recipe:
- Discriminator: Conv2D(64, 4, stride 2, same) -> LeakyReLU(0.2) -> Conv2D(128, 4, stride 2,
  same) -> LeakyReLU(0.2) -> Conv2D(128, 4, stride 2, same) -> LeakyReLU(0.2) -> Flatten ->
  Dropout(0.2) -> Dense(1, sigmoid).
- Generator: latent_dim 128 -> Dense(S*S*128) -> Reshape(S, S, 128) -> Conv2DTranspose(128, 4,
  stride 2, same) -> LeakyReLU(0.2) -> Conv2DTranspose(256, 4, stride 2, same) -> LeakyReLU(0.2)
  -> ... -> Conv2D(C, 5, same, sigmoid). No batch normalization (the recipe has none).
- `GAN(keras.Model)` with `compile(d_optimizer, g_optimizer, loss_fn)` and an overridden
  `train_step`: discriminator step on generated+real images concatenated, labels 1 for generated
  and 0 for real (the recipe's convention), plus `0.05 * uniform` label noise ("important
  trick!"); then a generator step on fresh latent vectors with "misleading" labels 0 (real),
  updating only the generator. `keras.losses.BinaryCrossentropy()` on the sigmoid outputs;
  `Adam(learning_rate=1e-4)` for both; `Mean` trackers `d_loss` / `g_loss`; `gan.fit(dataset)`.
  Latent vectors come from `keras.random.normal` with a `SeedGenerator`, as in the Keras 3 port.
- Images scaled to [0, 1] (x / 255), which the generator's sigmoid matches.

Adapted (spatial sizes only, 64x64x3 CelebA -> 28x28x1 MNIST):
- Discriminator input (28, 28, 1) instead of (64, 64, 3). All three stride-2 convolutions are
  kept unchanged; with `same` padding they map 28 -> 14 -> 7 -> 4 (the recipe: 64 -> 32 -> 16 ->
  8), so Flatten sees 4*4*128 = 2,048 features instead of 8*8*128 = 8,192.
- Generator: Dense(7*7*128) and Reshape(7, 7, 128) instead of 8*8*128; two stride-2 transposed
  convolutions (128 then 256 filters, 7 -> 14 -> 28) instead of three: the recipe's third block
  (Conv2DTranspose(512, 4, stride 2) + LeakyReLU, 32 -> 64) is dropped because 7x7 needs two
  doublings to reach 28x28. The output conv has 1 channel instead of 3 (kernel 5, sigmoid, kept).
Other deviations (none in the model or its training step):
- Input pipeline: the recipe reads JPEGs with `image_dataset_from_directory(..., batch_size=32)`
  (shuffled) and maps `x / 255`; here `tf.data.Dataset.from_tensor_slices(x / 255)` with a full
  shuffle each epoch, `batch(batch_size)`, `prefetch(AUTOTUNE)`. The batch size defaults to 128
  because the benchmark's API asks for it; the recipe's own value is 32 (pass batch_size=32).
- The recipe's `GANMonitor` callback (writes PNGs every epoch) is left out; `sample()` replaces it.
- `verbose=0` by default (no progress bar), and `keras.utils.set_random_seed(seed)` plus a
  `SeedGenerator(seed)` for repeatable runs.

Throughput (`examples_per_sec`, real images per second; each step trains D once and G once):
measured by a callback inside `fit` exactly as in `keras_io_vae_peer.py`: over epochs 2..N when
`epochs > 1`, else from the end of batch 10 to the end of the last batch. `train_seconds` is the
whole `fit` call.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.keras_io_vae_peer import ThroughputMeter, fit_callbacks, to_float

LATENT_DIM = 128


def build_discriminator(image_shape=(28, 28, 1)):
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=image_shape),
        layers.Conv2D(64, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(128, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(128, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")


def build_generator(latent_dim=LATENT_DIM, start_size=7, channels=1):
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=(latent_dim,)),
        layers.Dense(start_size * start_size * 128),
        layers.Reshape((start_size, start_size, 128)),
        layers.Conv2DTranspose(128, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(256, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(channels, kernel_size=5, padding="same", activation="sigmoid"),
    ], name="generator")


class GAN(keras.Model):
    def __init__(self, discriminator, generator, latent_dim=LATENT_DIM, seed=None):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        # Discriminator: generated images labelled 1, real ones 0, with uniform label noise.
        latents = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        fakes = self.generator(latents)
        images = tf.concat([fakes, real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        # Generator: fresh latents, "all real" (0) labels; only the generator is updated.
        latents = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        misleading = tf.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(misleading, self.discriminator(self.generator(latents)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def train(x_train, epochs, batch_size=128, seed=0, verbose=0, max_seconds=None):
    """Trains the recipe's DCGAN (adapted to 28x28x1) with `fit`.

    Args:
      x_train: uint8 [N, 28, 28] MNIST pixels.
      epochs: `fit` epochs (the recipe: "in practice, use ~100 epochs").
      max_seconds: stop after this much training wall time (then `epochs` is only a bound).
    Returns a dict: examples_per_sec, train_seconds, sample (callable(n, seed) -> float32
    [n, 28, 28, 1] in [0, 1]), generator, discriminator, history.
    """
    keras.utils.set_random_seed(seed)
    x = to_float(x_train)
    dataset = (tf.data.Dataset.from_tensor_slices(x)
               .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
               .batch(batch_size)
               .prefetch(tf.data.AUTOTUNE))
    generator, discriminator = build_generator(), build_discriminator()
    gan = GAN(discriminator, generator, LATENT_DIM, seed=seed)
    gan.compile(d_optimizer=keras.optimizers.Adam(learning_rate=1e-4),
                g_optimizer=keras.optimizers.Adam(learning_rate=1e-4),
                loss_fn=keras.losses.BinaryCrossentropy())
    meter = ThroughputMeter(len(x), batch_size)
    start = time.perf_counter()
    history = gan.fit(dataset, epochs=epochs, callbacks=fit_callbacks(meter, max_seconds), verbose=verbose)
    train_seconds = time.perf_counter() - start

    def sample(n, seed=0):
        z = np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype("float32")
        return np.asarray(generator.predict(z, batch_size=500, verbose=0), dtype="float32")

    return {"examples_per_sec": meter.examples_per_sec(), "train_seconds": train_seconds,
            "steps": int(gan.g_optimizer.iterations.numpy()), "sample": sample, "generator": generator, "discriminator": discriminator,
            "history": history.history}


if __name__ == "__main__":
    # Smoke run: 1 epoch on 2,000 MNIST training images.
    from mnist_smoke import images_and_epochs

    images, epochs = images_and_epochs()
    out = train(images[:2000], epochs=epochs)
    s = out["sample"](8, seed=1)
    print({"examples_per_sec": round(out["examples_per_sec"], 1),
           "train_seconds": round(out["train_seconds"], 2),
           "d_loss": round(out["history"]["d_loss"][-1], 4),
           "g_loss": round(out["history"]["g_loss"][-1], 4)})
    print("sample", s.shape, s.dtype, float(s.min()), float(s.max()))
