"""GAN losses per example: DCGAN (non-saturating cross-entropy) and WGAN-GP."""

import keras
from keras import ops


def dcgan_discriminator(real_logits, fake_logits):
    """-log D(x) - log(1 - D(G(z))), from logits."""
    return ops.softplus(-real_logits) + ops.softplus(fake_logits)


def dcgan_generator(fake_logits):
    """-log D(G(z)): the non-saturating generator loss."""
    return ops.softplus(-fake_logits)


def wgan_critic(real_scores, fake_scores):
    return fake_scores - real_scores


def wgan_generator(fake_scores):
    return -fake_scores


def gradient_penalty(critic, real, fake, alpha):
    """`(|grad_x critic(x)| - 1)^2` of each example at `x = alpha * real + (1 - alpha) * fake`.

    The critic is differentiated with respect to its input, for which Keras 3 has no
    backend-neutral op: this uses `tf.GradientTape` (the TensorFlow backend, which the
    trainer runs). It is per example because the critic has no batch-coupling layers.

    Args:
        critic: maps images `[N, ...]` to scores `[N, 1]` or `[N]`.
        real, fake: images of the same shape.
        alpha: interpolation weights broadcastable to the images (e.g. `[N, 1, 1, 1]`).
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            f"gradient_penalty needs the TensorFlow backend, not {keras.backend.backend()!r}.")
    import tensorflow as tf

    mixed = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        scores = tf.reduce_sum(tf.cast(critic(mixed), tf.float32))
    grads = tf.reshape(tape.gradient(scores, mixed), [tf.shape(mixed)[0], -1])
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=1) + 1e-12)
    return tf.square(norms - 1.0)
