"""A tiny two-phase zoo entry for trainer tests (registered by the tests, not by `zoo`).

A one-dimensional GAN: a generator maps noise to numbers, a discriminator tells them from
data drawn around 3.0. Its step has two phases with their own optimizers, the shape the GAN
entry uses. `poison_step` makes every example of that training step (and later) NaN.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from zoo import registry
from zoo.entry import Phase, Servable, ZooEntry

NAME = "toy_two_phase"


@dataclasses.dataclass
class ToyConfig:
    units: int = 8
    poison_step: int = 0  # 1-based training step whose batch is NaN (0: never)
    examples: int = 512


ToyConfig.PRESETS = {name: ToyConfig for name in ("tiny", "small", "base")}


class ToyGan(keras.Model):
    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.generator = keras.Sequential([keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)],
                                          name="generator")
        self.discriminator = keras.Sequential([keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)],
                                              name="discriminator")

    def build(self, input_shape=None):
        self.generator.build((None, 2))
        self.discriminator.build((None, 1))
        self.built = True

    def call(self, x):
        return self.discriminator(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class ToyEntry(ZooEntry):
    description = "test-only two-phase model"
    config_class = ToyConfig
    default_data = "builtin:toy"

    def num_examples(self, source, split):
        return self.config.examples

    def dataset(self, source, split, batch_size, training, seed=0):
        rng = np.random.RandomState(0 if split == "train" else 1)
        x = (3.0 + rng.randn(self.config.examples, 1)).astype("float32")
        if self.config.poison_step and split == "train":
            x[(self.config.poison_step - 1) * batch_size:] = np.nan
        # Noise comes with the data, so any replica split sees the same numbers.
        z = rng.randn(self.config.examples, 2).astype("float32")
        ds = tf.data.Dataset.from_tensor_slices({"x": x, "z": z})
        if training:
            ds = ds.repeat()
        return ds.batch(batch_size, drop_remainder=training)

    def build_model(self):
        return ToyGan(self.config.units, name="toy")

    def loss(self, model, batch, training):
        fake = model.generator(batch["z"], training=training)
        real_logits, fake_logits = model.discriminator(batch["x"]), model.discriminator(fake)
        bce = keras.losses.binary_crossentropy
        return (bce(keras.ops.ones_like(real_logits), real_logits, from_logits=True)
                + bce(keras.ops.zeros_like(fake_logits), fake_logits, from_logits=True))

    def generator_loss(self, model, batch, training):
        fake_logits = model.discriminator(model.generator(batch["z"], training=training))
        return keras.losses.binary_crossentropy(keras.ops.ones_like(fake_logits), fake_logits, from_logits=True)

    def phases(self, model):
        return [Phase("discriminator", self.loss, lambda m: m.discriminator.trainable_variables),
                Phase("generator", self.generator_loss, lambda m: m.generator.trainable_variables)]

    # What is served: samples from latent vectors (a generator's contract).
    task_metric = "neg_mean_gap"

    def held_out_examples(self, source, count):
        z = np.random.RandomState(7).randn(count, 2).astype("float32")
        return [list(map(float, row)) for row in z], [3.0] * count

    def training_inputs(self, source, count):
        z = np.random.RandomState(0).randn(count, 2).astype("float32")
        return [list(map(float, row)) for row in z]

    def score(self, predictions, references):
        return -abs(float(np.mean(predictions)) - float(np.mean(references)))

    def serving_functions(self, model):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="z")])
        def generate(z):
            return {"samples": model.generator(z)}

        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32, name="z")])
        def generate_one(z):
            return {"samples": model.generator(z)}

        return {
            "serving_default": Servable(generate),
            "generate": Servable(generate_one, tflite=True,
                                 encode=lambda rows: {"z": np.asarray(rows, "float32")},
                                 decode=lambda out: [float(v) for v in np.asarray(out["samples"]).ravel()]),
        }

    def evaluate(self, model, source, split):
        fake = model.generator(keras.random.normal((256, 2), seed=0))
        return {"mean_gap": float(abs(np.mean(keras.ops.convert_to_numpy(fake)) - 3.0))}


def register():
    try:
        return registry.get(NAME)
    except KeyError:
        return registry.register(NAME)(ToyEntry)
