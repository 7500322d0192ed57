"""A convolutional variational autoencoder with Bernoulli or Gaussian pixel likelihoods.

With `pixel_context`, each pixel's likelihood also depends on the pixels before it in raster
order (a PixelCNN-style masked convolution over the image, as in PixelVAE): the likelihood is
still exact and evaluated in one pass, and generation fills the image one pixel at a time.
With `iaf_steps`, the posterior is a Gaussian sent through an inverse autoregressive flow.
"""

import math

import keras
import numpy as np
from keras import ops

from zoo.images.upsampling import crop_to, upsampling_start

LOG_2PI = math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="zoo")
class ResidualBlock(keras.layers.Layer):
    """`relu(x + conv(relu(conv(x))))`: two same-size convolutions with a skip connection.

    Example:
        >>> import numpy as np
        >>> tuple(ResidualBlock(8, 3)(np.zeros((2, 7, 7, 8), "float32")).shape)
        (2, 7, 7, 8)
    """

    def __init__(self, filters, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        same = dict(kernel_size=self.kernel_size, padding="same")
        self.inner = keras.layers.Conv2D(self.filters, activation="relu", name="inner", **same)
        self.outer = keras.layers.Conv2D(self.filters, name="outer", **same)

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, x):
        return ops.relu(x + self.outer(self.inner(x)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


def raster_mask(kernel_size, in_channels, filters):
    """`[k, k, in, filters]` mask of a causal ("A") convolution in raster order: 1 for the rows
    above the centre and the centre row's pixels left of it, 0 for the centre and after.

    Example:
        >>> raster_mask(3, 1, 1)[..., 0, 0]
        array([[1., 1., 1.],
               [1., 0., 0.],
               [0., 0., 0.]], dtype=float32)
    """
    k = int(kernel_size)
    flat = (np.arange(k * k) < (k * k) // 2).astype(np.float32).reshape(k, k)
    return np.broadcast_to(flat[:, :, None, None], (k, k, in_channels, filters)).copy()


@keras.saving.register_keras_serializable(package="zoo")
class CausalConv2D(keras.layers.Layer):
    """A "same" convolution that sees only the pixels before each position in raster order
    (`raster_mask`): the masked convolution of PixelCNN's first layer.

    Example:
        >>> import numpy as np
        >>> layer = CausalConv2D(2, 3)
        >>> x = np.zeros((1, 4, 4, 1), "float32"); x[0, 1, 1, 0] = 1.0
        >>> y = np.asarray(layer(x))  # the pixel at (1, 1) reaches only positions after it
        >>> bool(np.allclose(y[0, :2, :2], layer.bias.numpy()))  # (1, 1) and the pixels before it
        True
    """

    def __init__(self, filters, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"pixel_context must be an odd kernel size >= 3, got {self.kernel_size}.")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.mask = raster_mask(self.kernel_size, channels, self.filters)
        self.kernel = self.add_weight(shape=self.mask.shape, initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def masked_kernel(self, dtype=None):
        kernel = self.kernel if dtype is None else ops.cast(self.kernel.value, dtype)
        return kernel * ops.cast(self.mask, kernel.dtype)

    def call(self, x):
        return ops.conv(x, self.masked_kernel(), padding="same") + self.bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


def autoregressive_masks(dim, hidden):
    """MADE's masks (Germain et al., 2015) for inputs and outputs in the order 0..dim-1: hidden
    unit k has degree `k % (dim - 1) + 1`, sees inputs of lower index than its degree, and
    feeds outputs of index at least its degree, so output i depends on inputs 0..i-1 only.

    Returns the input->hidden [dim, hidden], hidden->hidden [hidden, hidden] and
    hidden->output [hidden, dim] masks (float32 0/1).

    Example:
        >>> first, middle, last = autoregressive_masks(3, 4)
        >>> ((first @ middle @ last) > 0).astype(int).tolist()  # output i sees inputs < i
        [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    """
    degrees = np.arange(hidden) % max(dim - 1, 1) + 1
    inputs, outputs = np.arange(dim), np.arange(dim)
    first = (inputs[:, None] < degrees[None, :]).astype("float32")
    middle = (degrees[:, None] <= degrees[None, :]).astype("float32")
    last = (degrees[:, None] <= outputs[None, :]).astype("float32")
    return first, middle, last


@keras.saving.register_keras_serializable(package="zoo")
class AutoregressiveFlowStep(keras.layers.Layer):
    """One step of an inverse autoregressive flow (Kingma et al., 2016) on latent vectors.

    A MADE network of `hidden` units (two masked ELU layers, the encoder's `context` added to
    the first) gives, for each dimension i, a shift `m_i` and a gate `s_i` from dimensions
    before it; the step returns `sigmoid(s) * z + (1 - sigmoid(s)) * m` and the log
    determinant of its (triangular) Jacobian, `sum(log sigmoid(s))`. With `reverse` the step
    works on the dimensions in reverse order, so stacked steps alternate. Always float32.

    Example:
        >>> import numpy as np
        >>> step = AutoregressiveFlowStep(3, 8, 5)
        >>> z, log_det = step(np.zeros((2, 3), "float32"), np.ones((2, 5), "float32"))
        >>> tuple(z.shape), tuple(log_det.shape)
        ((2, 3), (2,))
    """

    def __init__(self, latent_dim, hidden, context_dim, reverse=False, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.latent_dim, self.hidden, self.context_dim = int(latent_dim), int(hidden), int(context_dim)
        self.reverse = bool(reverse)
        self.masks = autoregressive_masks(self.latent_dim, self.hidden)

    def build(self, input_shape=None):
        d, h = self.latent_dim, self.hidden
        dense = dict(initializer="glorot_uniform", dtype="float32")
        self.w_in = self.add_weight(shape=(d, h), name="w_in", **dense)
        self.w_context = self.add_weight(shape=(self.context_dim, h), name="w_context", **dense)
        self.b_in = self.add_weight(shape=(h,), initializer="zeros", name="b_in")
        self.w_hidden = self.add_weight(shape=(h, h), name="w_hidden", **dense)
        self.b_hidden = self.add_weight(shape=(h,), initializer="zeros", name="b_hidden")
        self.w_shift = self.add_weight(shape=(h, d), name="w_shift", **dense)
        self.b_shift = self.add_weight(shape=(d,), initializer="zeros", name="b_shift")
        self.w_gate = self.add_weight(shape=(h, d), name="w_gate", **dense)
        # Gates start near 0.88: each step starts close to the identity (the paper's advice).
        self.b_gate = self.add_weight(shape=(d,), initializer=keras.initializers.Constant(2.0), name="b_gate")
        self.built = True

    def call(self, z, context):
        z, context = ops.cast(z, "float32"), ops.cast(context, "float32")
        if self.reverse:
            z = ops.flip(z, axis=-1)
        first, middle, last = (ops.convert_to_tensor(m) for m in self.masks)
        a = ops.elu(ops.matmul(z, self.w_in * first) + ops.matmul(context, self.w_context) + self.b_in)
        a = ops.elu(ops.matmul(a, self.w_hidden * middle) + self.b_hidden)
        shift = ops.matmul(a, self.w_shift * last) + self.b_shift
        gate_logits = ops.matmul(a, self.w_gate * last) + self.b_gate
        gate = ops.sigmoid(gate_logits)
        z = gate * z + (1.0 - gate) * shift
        log_det = ops.sum(-ops.softplus(-gate_logits), axis=-1)  # log sigmoid, stable
        if self.reverse:
            z = ops.flip(z, axis=-1)
        return z, log_det

    def compute_output_spec(self, z, context):
        return (keras.KerasTensor(z.shape, "float32"), keras.KerasTensor(z.shape[:1], "float32"))

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden": self.hidden,
                "context_dim": self.context_dim, "reverse": self.reverse}


@keras.saving.register_keras_serializable(package="zoo")
class VariationalAutoencoder(keras.Model):
    """Encoder to a diagonal Gaussian posterior (optionally through a flow), reparameterized
    sampling, conv decoder.

    The encoder is `len(filters)` stride-2 convolutions (ReLU), each followed by `res_blocks`
    residual blocks at its resolution, an optional dense layer, and a dense layer giving the
    posterior mean and log-variance. The decoder mirrors it with transposed convolutions (each
    followed by its residual blocks) and crops to the image size (28 is not a power of two). The
    decoder's output is pixel logits: the Bernoulli likelihood uses them directly, the
    Gaussian one takes `sigmoid(logits)` as its mean with a learned per-channel scale.

    Args:
        image_shape: `(height, width, channels)`.
        latent_dim: size of the latent space.
        filters: channels of the encoder's convolutions (the decoder's, reversed).
        dense_units: units of a dense layer after the convolutions (0: none).
        kernel_size: convolution kernel size.
        likelihood: "bernoulli" or "gaussian".
        res_blocks: `ResidualBlock`s after each strided convolution, in encoder and decoder.
        full_size_blocks: whether the decoder's last transposed convolution (at the image's
            size, where a block costs most) is followed by blocks too.
        pixel_context: kernel size of a `CausalConv2D` over the image that makes each pixel's
            likelihood depend on the pixels before it (0: pixels independent given z). The
            decoder then ends in `filters[0]` feature channels, summed with the causal
            convolution's, and two per-pixel dense layers give the logits.
        iaf_steps: `AutoregressiveFlowStep`s the posterior's Gaussian samples go through
            (inverse autoregressive flow, Kingma et al. 2016), each conditioned on a context
            vector the encoder also gives; 0: the posterior is the diagonal Gaussian. The prior
            stays N(0, I), so sampling and the decoder are unchanged.
        iaf_hidden: units of each flow step's MADE network, and the context vector's size.

    Example:
        >>> import numpy as np
        >>> vae = VariationalAutoencoder((28, 28, 1), latent_dim=2, filters=(4, 8))
        >>> x = np.zeros((3, 28, 28, 1), "float32")
        >>> tuple(vae(x).shape), [tuple(t.shape) for t in vae.neg_elbo_terms(x, np.zeros((3, 2), "float32"))]
        ((3, 28, 28, 1), [(3,), (3,)])
    """

    def __init__(self, image_shape, latent_dim=16, filters=(32, 64), dense_units=0, kernel_size=3,
                 likelihood="bernoulli", res_blocks=0, pixel_context=0, full_size_blocks=True, iaf_steps=0,
                 iaf_hidden=256, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}.")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.latent_dim = int(latent_dim)
        self.filters = tuple(int(f) for f in filters)
        self.dense_units = int(dense_units)
        self.kernel_size = int(kernel_size)
        self.likelihood = likelihood
        self.res_blocks = int(res_blocks)
        self.pixel_context = int(pixel_context)
        self.full_size_blocks = bool(full_size_blocks)
        self.iaf_steps, self.iaf_hidden = int(iaf_steps), int(iaf_hidden)
        height, width, channels = self.image_shape
        conv = dict(kernel_size=self.kernel_size, strides=2, padding="same", activation="relu")

        encoder = [keras.Input(self.image_shape)]
        for i, f in enumerate(self.filters):
            encoder.append(keras.layers.Conv2D(f, name=f"conv_{i}", **conv))
            encoder += self._residual_blocks(f, f"conv_{i}")
        encoder.append(keras.layers.Flatten())
        if self.dense_units:
            encoder.append(keras.layers.Dense(self.dense_units, activation="relu", name="dense"))
        # With a flow the encoder also gives the flow's context vector (`iaf_hidden` numbers).
        context = self.iaf_hidden if self.iaf_steps else 0
        encoder.append(keras.layers.Dense(2 * self.latent_dim + context, name="posterior"))
        self.encoder = keras.Sequential(encoder, name="encoder")
        self.flow = [AutoregressiveFlowStep(self.latent_dim, self.iaf_hidden, context, reverse=i % 2 == 1,
                                            name=f"iaf_{i}") for i in range(self.iaf_steps)]
        for step in self.flow:
            step.build()

        steps = len(self.filters)
        h0, w0 = upsampling_start(height, steps), upsampling_start(width, steps)
        decoder = [keras.Input((self.latent_dim,)),
                   keras.layers.Dense(h0 * w0 * self.filters[-1], activation="relu", name="project"),
                   keras.layers.Reshape((h0, w0, self.filters[-1]))]
        for i, f in enumerate(reversed(self.filters)):
            decoder.append(keras.layers.Conv2DTranspose(f, name=f"deconv_{i}", **conv))
            if full_size_blocks or i < steps - 1:
                decoder += self._residual_blocks(f, f"deconv_{i}")
        if self.pixel_context:
            # The decoder gives per-pixel features; the head mixes them with the causal context.
            hidden = self.filters[0]
            decoder.append(keras.layers.Conv2DTranspose(hidden, self.kernel_size, padding="same",
                                                        name="pixel_features"))
            self.context = CausalConv2D(hidden, self.pixel_context, name="context")
            self.context.build((None, height, width, channels))
            self.head_hidden = keras.layers.Dense(hidden, activation="relu", name="head_hidden")
            self.head_hidden.build((None, hidden))
            self.head_logits = keras.layers.Dense(channels, name="head_logits")
            self.head_logits.build((None, hidden))
        else:
            decoder.append(
                keras.layers.Conv2DTranspose(channels, self.kernel_size, padding="same", name="logits"))
        decoder += crop_to(height, width, steps)
        self.decoder = keras.Sequential(decoder, name="decoder")
        # Used only when no noise is passed in; training takes its noise from the data so
        # that every replica split sees the same numbers (see zoo/images/entry.py).
        self.seed_generator = keras.random.SeedGenerator(0, name="sampling_seed")
        self.log_scale = None
        if likelihood == "gaussian":
            self.log_scale = self.add_weight(shape=(channels,), initializer="zeros", name="log_scale")
        self.built = True

    def _residual_blocks(self, filters, name):
        # No layers when res_blocks is 0: the layer list (and checkpoints' paths) of models before them.
        return [ResidualBlock(filters, self.kernel_size, name=f"{name}_res_{j}")
                for j in range(self.res_blocks)]

    def build(self, input_shape=None):
        # Every weight is created in __init__.
        self.built = True

    def _posterior(self, images, training=False):
        # The Gaussian's mean and log-variance, and the flow's context ([N, 0] without a flow).
        moments = ops.cast(self.encoder(images, training=training), "float32")
        d = self.latent_dim
        return moments[:, :d], moments[:, d:2 * d], moments[:, 2 * d:]

    def _flow(self, z, context):
        # z through the IAF steps, with the sum of their log determinants.
        log_det = ops.zeros(ops.shape(z)[:1], "float32")
        for step in self.flow:
            z, step_log_det = step(z, context)
            log_det = log_det + step_log_det
        return z, log_det

    def encode(self, images, training=False):
        """Posterior mean and log-variance `[N, latent_dim]` of images in [0, 1].

        With `iaf_steps` the posterior is a Gaussian sent through the flow: the first is then
        the point the Gaussian's mean flows to (the reconstructions' and the strips' latent
        vector), the second the Gaussian's log-variance before the flow.
        """
        mean, log_variance, context = self._posterior(images, training)
        return self._flow(mean, context)[0] if self.flow else mean, log_variance

    @staticmethod
    def sample_posterior(mean, log_variance, noise):
        """`mean + exp(log_variance / 2) * noise` (`noise` standard normal, like `mean`)."""
        return mean + ops.exp(0.5 * log_variance) * ops.cast(noise, mean.dtype)

    def decode_logits(self, z, images=None, training=False):
        """Pixel logits `[N, H, W, C]` of latent vectors; with `pixel_context`, of `images` given z
        (each pixel's logits from z and the image's pixels before it)."""
        features = self.decoder(z, training=training)
        if not self.pixel_context:
            return ops.cast(features, "float32")
        if images is None:
            raise ValueError("With pixel_context the logits depend on the image's earlier pixels: pass "
                             "`images` (to generate, call `decode(z)`).")
        context = self.context(ops.cast(images, self.context.compute_dtype))
        hidden = ops.relu(ops.cast(features, context.dtype) + context)
        return ops.cast(self.head_logits(self.head_hidden(hidden)), "float32")

    def decode(self, z, training=False):
        """Images in [0, 1]: the likelihood's mean; with `pixel_context`, filled in raster order,
        each pixel the mean of its likelihood given the means chosen before it."""
        if not self.pixel_context:
            return ops.sigmoid(self.decode_logits(z, training=training))
        return self._decode_in_raster_order(ops.cast(self.decoder(z, training=training), "float32"))

    def _decode_in_raster_order(self, features):
        # One pixel per step, in float32: the causal kernel applied to the k x k window of a
        # zero-padded canvas at that pixel (what the convolution computes there, since the
        # pixels not yet written are masked out), plus the decoder's features, then the head.
        height, width, channels = self.image_shape
        k, pad = self.pixel_context, self.pixel_context // 2
        batch = ops.shape(features)[0]
        kernel = ops.reshape(self.context.masked_kernel("float32"), (k * k * channels, -1))
        bias = ops.cast(self.context.bias.value, "float32")
        w1, b1 = (ops.cast(v.value, "float32") for v in (self.head_hidden.kernel, self.head_hidden.bias))
        w2, b2 = (ops.cast(v.value, "float32") for v in (self.head_logits.kernel, self.head_logits.bias))
        padded = (height + 2 * pad, width + 2 * pad)

        def step(t, canvas):
            row, column = t // width, t % width
            window = ops.slice(canvas, (0, row, column, 0), (batch, k, k, channels))
            context = ops.matmul(ops.reshape(window, (batch, k * k * channels)), kernel) + bias
            pixel = ops.slice(features, (0, row, column, 0), (batch, 1, 1, ops.shape(features)[-1]))
            pixel = ops.squeeze(pixel, (1, 2))
            hidden = ops.relu(ops.matmul(ops.relu(pixel + context), w1) + b1)
            mean = ops.sigmoid(ops.matmul(hidden, w2) + b2)
            where = ops.one_hot((row + pad) * padded[1] + column + pad, padded[0] * padded[1])
            return canvas + ops.reshape(where, (1,) + padded + (1,)) * mean[:, None, None, :]

        canvas = ops.fori_loop(0, height * width, step, ops.zeros((batch,) + padded + (channels,)))
        return canvas[:, pad:pad + height, pad:pad + width, :]

    def call(self, images, training=False):
        """Reconstructions in [0, 1] through the posterior mean (deterministic)."""
        return self.decode(self.encode(images, training)[0], training)

    def reconstruction_nll(self, images, logits):
        """-log p(x | z) of each image, in nats, summed over pixels."""
        x = ops.cast(images, "float32")
        if self.likelihood == "bernoulli":
            # Cross-entropy with logits: softplus(l) - x * l, exact for x in [0, 1].
            nll = ops.softplus(logits) - x * logits
        else:
            log_scale = ops.cast(self.log_scale, "float32")
            z = (x - ops.sigmoid(logits)) * ops.exp(-log_scale)
            nll = 0.5 * ops.square(z) + log_scale + 0.5 * LOG_2PI
        return ops.sum(ops.reshape(nll, (ops.shape(nll)[0], -1)), axis=-1)

    def neg_elbo_terms(self, images, noise=None, training=False, free_bits=0.0):
        """(reconstruction -log p(x|z), KL(q(z|x) || N(0, I))) of each image, in nats.

        Their sum is the negative ELBO, a one-sample Monte Carlo estimate (`noise` [N, latent_dim]
        standard normal; drawn by the model when None). The KL term is exact for the Gaussian
        posterior; with `iaf_steps` it is the one-sample estimate `log q(z|x) - log p(z)` at the
        same z (the flow's log determinant taken from the Gaussian's density). With `free_bits`
        (a training objective, not the ELBO) each latent dimension's KL counts as at least
        that many nats, so the first nats a dimension carries are free (Kingma et al., 2016).
        """
        mean, log_variance, context = self._posterior(images, training)
        if noise is None:
            noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        noise = ops.cast(noise, "float32")
        z = self.sample_posterior(mean, log_variance, noise)
        if self.flow:
            z, log_det = self._flow(z, context)
            log_q = ops.sum(-0.5 * (ops.square(noise) + log_variance), axis=-1) - log_det
            kl = log_q + 0.5 * ops.sum(ops.square(z), axis=-1)  # the 2 pi terms cancel
        else:
            kl = 0.5 * (ops.square(mean) + ops.exp(log_variance) - 1.0 - log_variance)
            kl = ops.sum(ops.maximum(kl, free_bits) if free_bits else kl, axis=-1)
        reconstruction = self.reconstruction_nll(images, self.decode_logits(z, images, training))
        return reconstruction, kl

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
                "filters": list(self.filters), "dense_units": self.dense_units,
                "kernel_size": self.kernel_size, "res_blocks": self.res_blocks,
                "pixel_context": self.pixel_context, "full_size_blocks": self.full_size_blocks,
                "iaf_steps": self.iaf_steps, "iaf_hidden": self.iaf_hidden, "likelihood": self.likelihood}
