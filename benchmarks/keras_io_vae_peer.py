"""The peer: the keras-io convolutional VAE on MNIST (Chollet), with its own settings.

Recipe: keras-team/keras-io `examples/generative/vae.py` ("Variational AutoEncoder",
fchollet, 2020/05/03; keras.io/examples/generative/vae/), read at keras-io commits
09e02e17d5cbf21ecf8a47f10d91587f963fc80a and cca4efba8e0b8514ae3817931696294039b3bfc9.

Kept exactly as in the recipe:
- `Sampling` layer: z = z_mean + exp(0.5 * z_log_var) * eps, eps ~ N(0, I) (the Keras 3
  port of the recipe draws eps with `keras.random.normal` and a `SeedGenerator`; so does this).
- Encoder: Conv2D(32, 3, relu, stride 2, same) -> Conv2D(64, 3, relu, stride 2, same) ->
  Flatten -> Dense(16, relu) -> Dense(2) z_mean and Dense(2) z_log_var (latent_dim 2) -> z.
- Decoder: Dense(7*7*64, relu) -> Reshape(7, 7, 64) -> Conv2DTranspose(64, 3, relu, stride 2)
  -> Conv2DTranspose(32, 3, relu, stride 2) -> Conv2DTranspose(1, 3, sigmoid), all `same`.
- `VAE(keras.Model)` with an overridden `train_step` (a `tf.GradientTape`, as in the recipe):
  reconstruction loss = binary cross-entropy summed over the 28x28 pixels (the recipe's
  `reduce_sum(binary_crossentropy(data, reconstruction), axis=(1, 2))`; older revisions wrote
  the same quantity as `mean(bce) * 28 * 28`), plus the analytic KL to N(0, I) summed over the
  latent dimensions, both averaged over the batch; `Mean` trackers for loss / reconstruction /
  KL; `Adam()` with its default learning rate (1e-3); `model.fit(x, epochs=..., batch_size=128)`
  on pixels scaled to [0, 1] (float32 / 255, not binarized).

Deviations, all outside the model and its training:
- Data: the recipe fits on MNIST train+test concatenated; here `train()` fits on whatever
  `x_train` it is given and evaluates on `x_val` (the comparison needs a held-out split).
- `verbose=0` by default instead of the progress bar (printing does not change training and
  only steals CPU on a 2-core machine); pass `verbose=1` for the recipe's bar.
- `keras.utils.set_random_seed(seed)` first and `SeedGenerator(seed)` in `Sampling`, so runs are
  repeatable (the recipe is unseeded / uses 1337 in its Keras 3 port).
- Evaluation (`neg_elbo`, `recon`, `kl`) and `sample()` are additions the recipe does not have
  (it only plots); they read the trained model and do not touch training.

Throughput (`examples_per_sec`): a callback stamps `time.perf_counter()` at every epoch and
batch boundary inside `model.fit`. With `epochs > 1` it is (epochs - 1) * len(x_train) divided by
the summed wall time of epochs 2..N (epoch 1 carries tracing and the first-call overheads). With
`epochs == 1` it is the examples of batches 11..last divided by the time from the end of batch
10 to the end of the last batch. `train_seconds` is the wall time of the whole `fit` call.

Evaluation (`neg_elbo`): mean over `x_val` of the single-sample negative ELBO in nats per image:
  -log p(x|z) + KL(q(z|x) || N(0, I)),  z = mu + sigma * eps,  eps from numpy's
  `default_rng(eval_seed)`,
with -log p(x|z) the Bernoulli negative log-likelihood of the [0, 1] pixel intensities under the
decoder mean, summed over the 784 pixels (probabilities clipped to [1e-7, 1 - 1e-7], the clip
Keras' binary cross-entropy applies, so it is the recipe's reconstruction term exactly) and the
KL analytic. On non-binary intensities the Bernoulli term is the recipe's training objective,
not a normalized density.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.peer_callbacks import TimeLimit

LATENT_DIM = 2
_EPS = 1e-7  # Keras' backend epsilon, the clip inside `binary_crossentropy`.


class Sampling(keras.layers.Layer):
    """Draws z from N(z_mean, exp(z_log_var)) with the reparameterization trick."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(keras.ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + keras.ops.exp(0.5 * z_log_var) * eps


def build_encoder(latent_dim=LATENT_DIM, seed=None):
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Dense(16, activation="relu")(layers.Flatten()(h))
    z_mean = layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(h)
    z = Sampling(seed=seed)([z_mean, z_log_var])
    return keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")


def build_decoder(latent_dim=LATENT_DIM):
    layers = keras.layers
    inputs = keras.Input(shape=(latent_dim,))
    h = layers.Dense(7 * 7 * 64, activation="relu")(inputs)
    h = layers.Reshape((7, 7, 64))(h)
    h = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    outputs = layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid")(h)
    return keras.Model(inputs, outputs, name="decoder")


class VAE(keras.Model):
    """The recipe's VAE: encoder + decoder, trained by an overridden `train_step`."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            # BCE averages over the channel axis (size 1); summing over H, W gives 784 pixels.
            reconstruction_loss = tf.reduce_mean(tf.reduce_sum(
                keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl = -0.5 * (1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var))
            kl_loss = tf.reduce_mean(tf.reduce_sum(kl, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {
            "loss": self.total_loss_tracker.result(),
            "reconstruction_loss": self.reconstruction_loss_tracker.result(),
            "kl_loss": self.kl_loss_tracker.result(),
        }

    def call(self, x):
        return self.decoder(self.encoder(x)[2])


def fit_callbacks(meter, max_seconds):
    return [meter] + ([TimeLimit(max_seconds)] if max_seconds else [])


class ThroughputMeter(keras.callbacks.Callback):
    """Wall-clock stamps at epoch and batch ends inside `fit` (see the module docstring)."""

    def __init__(self, num_examples, batch_size, warmup_batches=10):
        super().__init__()
        self.num_examples, self.batch_size, self.warmup_batches = num_examples, batch_size, warmup_batches
        self.epoch_seconds, self.batch_ends = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self.batch_ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    def examples_per_sec(self):
        if len(self.epoch_seconds) > 1:
            return self.num_examples * (len(self.epoch_seconds) - 1) / sum(self.epoch_seconds[1:])
        k = self.warmup_batches
        if len(self.batch_ends) <= k:  # Too few batches to leave the warm-up out.
            return self.num_examples / self.epoch_seconds[0]
        examples = self.num_examples - k * self.batch_size  # Batches k+1..last (last may be short).
        return examples / (self.batch_ends[-1] - self.batch_ends[k - 1])


def to_float(x):
    """uint8 [N, 28, 28] (or [N, 28, 28, 1]) -> float32 [N, 28, 28, 1] in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype("float32") / 255.0


def evaluate(encoder, decoder, x, eval_seed=0, batch_size=1000):
    """Single-sample negative ELBO (nats per image) with a fixed-seed eps; see the docstring."""
    x = to_float(x)
    rng = np.random.default_rng(eval_seed)
    recon_sum = kl_sum = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        z_mean, z_log_var, _ = (np.asarray(t, dtype="float64") for t in encoder(xb, training=False))
        eps = rng.standard_normal(z_mean.shape)
        z = z_mean + np.exp(0.5 * z_log_var) * eps
        p = np.asarray(decoder(z.astype("float32"), training=False), dtype="float64")
        p = np.clip(p, _EPS, 1.0 - _EPS)
        xb = xb.astype("float64")
        nll = -(xb * np.log(p) + (1.0 - xb) * np.log(1.0 - p)).reshape(len(xb), -1).sum(axis=1)
        kl = -0.5 * (1.0 + z_log_var - z_mean ** 2 - np.exp(z_log_var)).sum(axis=1)
        recon_sum += nll.sum()
        kl_sum += kl.sum()
    recon, kl = recon_sum / len(x), kl_sum / len(x)
    return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}


def train(x_train, x_val, epochs, batch_size=128, seed=0, verbose=0, eval_seed=0, max_seconds=None):
    """Trains the recipe's VAE with `model.fit` and evaluates it on `x_val`.

    Args:
      x_train, x_val: uint8 arrays [N, 28, 28] (MNIST pixels).
      epochs: `fit` epochs (the recipe uses 30).
      batch_size: the recipe's 128.
      max_seconds: stop after this much training wall time (then `epochs` is only a bound).
    Returns a dict: examples_per_sec, train_seconds, neg_elbo, recon, kl (nats per image on
    x_val), sample (callable(n, seed) -> float32 [n, 28, 28, 1] in [0, 1]), model, history.
    """
    keras.utils.set_random_seed(seed)
    x = to_float(x_train)
    vae = VAE(build_encoder(seed=seed), build_decoder())
    vae.compile(optimizer=keras.optimizers.Adam())
    meter = ThroughputMeter(len(x), batch_size)
    start = time.perf_counter()
    history = vae.fit(x, epochs=epochs, batch_size=batch_size, callbacks=fit_callbacks(meter, max_seconds),
                      verbose=verbose)
    train_seconds = time.perf_counter() - start

    decoder = vae.decoder

    def sample(n, seed=0):
        z = np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype("float32")
        return np.asarray(decoder.predict(z, batch_size=1000, verbose=0), dtype="float32")

    result = {"examples_per_sec": meter.examples_per_sec(), "train_seconds": train_seconds}
    result.update(evaluate(vae.encoder, decoder, x_val, eval_seed=eval_seed))
    result.update(sample=sample, model=vae, history=history.history)
    return result


if __name__ == "__main__":
    # Smoke run: 1 epoch on 2,000 MNIST training images, evaluated on 1,000 others.
    from mnist_smoke import images_and_epochs

    images, epochs = images_and_epochs()
    out = train(images[:2000], images[-1000:], epochs=epochs)
    s = out["sample"](8, seed=1)
    print({k: round(float(v), 3) for k, v in out.items() if k in ("examples_per_sec", "train_seconds",
                                                                  "neg_elbo", "recon", "kl")})
    print("sample", s.shape, s.dtype, float(s.min()), float(s.max()))
