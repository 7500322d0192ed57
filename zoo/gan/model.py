"""A DCGAN-style generator and discriminator pair."""

import keras

from zoo.images.upsampling import crop_to, upsampling_start


@keras.saving.register_keras_serializable(package="zoo")
class Gan(keras.Model):
    """Generator: dense projection, stride-2 transposed convolutions, a convolution to the
    image's channels and a sigmoid (pixels in [0, 1]), cropped to the image size.
    Discriminator: stride-2 convolutions with LeakyReLU, then one logit (no normalization, so
    it also serves as a WGAN-GP critic, whose gradient penalty is per example).

    Batch normalization in the generator is `synchronized`: its batch statistics are summed
    over replicas, so a two-replica step computes what one device computes.

    Args:
        image_shape: `(height, width, channels)`.
        latent_dim: size of the latent vectors.
        generator_filters: channels of the generator's transposed convolutions (one doubling
            each); the projection has `generator_filters[0]` channels.
        discriminator_filters: channels of the discriminator's stride-2 convolutions.
        kernel_size: kernel size of both networks' (transposed) convolutions.
        output_kernel_size: kernel size of the generator's last convolution.
        batch_norm: batch normalization in the generator.

    Example:
        >>> import numpy as np
        >>> gan = Gan((28, 28, 1), latent_dim=8, generator_filters=(8, 4), discriminator_filters=(4, 8))
        >>> images = gan(np.zeros((2, 8), "float32"))
        >>> tuple(images.shape), tuple(gan.discriminator(images).shape)
        ((2, 28, 28, 1), (2, 1))
    """

    def __init__(self, image_shape, latent_dim=64, generator_filters=(128, 64),
                 discriminator_filters=(64, 128), kernel_size=4, output_kernel_size=5, batch_norm=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.latent_dim = int(latent_dim)
        self.generator_filters = tuple(int(f) for f in generator_filters)
        self.discriminator_filters = tuple(int(f) for f in discriminator_filters)
        self.kernel_size = int(kernel_size)
        self.output_kernel_size = int(output_kernel_size)
        self.batch_norm = bool(batch_norm)
        height, width, channels = self.image_shape
        steps = len(self.generator_filters)
        h0, w0 = upsampling_start(height, steps), upsampling_start(width, steps)

        def norm_and_activation(name):
            layers = [keras.layers.LeakyReLU(0.2, name=f"{name}_act")]
            if self.batch_norm:
                # Momentum 0.9 (PyTorch's 0.1): with Keras's 0.99 the moving statistics that
                # samples use still hold 37% of their initial values after 100 steps.
                layers.insert(0, keras.layers.BatchNormalization(momentum=0.9, synchronized=True,
                                                                 name=f"{name}_bn"))
            return layers

        generator = [keras.Input((self.latent_dim,)),
                     keras.layers.Dense(h0 * w0 * self.generator_filters[0], use_bias=not self.batch_norm,
                                        name="project")]
        generator += norm_and_activation("project")
        generator.append(keras.layers.Reshape((h0, w0, self.generator_filters[0])))
        for i, f in enumerate(self.generator_filters):
            generator.append(keras.layers.Conv2DTranspose(f, self.kernel_size, strides=2, padding="same",
                                                          use_bias=not self.batch_norm, name=f"deconv_{i}"))
            generator += norm_and_activation(f"deconv_{i}")
        generator.append(
            keras.layers.Conv2D(channels, self.output_kernel_size, padding="same", name="to_image"))
        generator += crop_to(height, width, steps)
        generator.append(keras.layers.Activation("sigmoid", dtype="float32", name="pixels"))
        self.generator = keras.Sequential(generator, name="generator")

        discriminator = [keras.Input(self.image_shape)]
        for i, f in enumerate(self.discriminator_filters):
            discriminator += [
                keras.layers.Conv2D(f, self.kernel_size, strides=2, padding="same", name=f"conv_{i}"),
                keras.layers.LeakyReLU(0.2, name=f"conv_{i}_act")]
        discriminator += [keras.layers.Flatten(), keras.layers.Dense(1, dtype="float32", name="logit")]
        self.discriminator = keras.Sequential(discriminator, name="discriminator")
        self.built = True

    def build(self, input_shape=None):
        # Every weight is created in __init__.
        self.built = True

    def call(self, z, training=False):
        """Images in [0, 1] of latent vectors `z`."""
        return self.generator(z, training=training)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
                "generator_filters": list(self.generator_filters),
                "discriminator_filters": list(self.discriminator_filters), "kernel_size": self.kernel_size,
                "output_kernel_size": self.output_kernel_size, "batch_norm": self.batch_norm}
