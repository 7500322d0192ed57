"""The contract between zoo models, the trainer and the exporter.

The trainer and exporter only ever talk to a `ZooEntry`: it builds the Keras model, makes
static-shape datasets, declares the loss of each training phase, evaluates, predicts, and
declares what is served. They hold no model-specific code.
"""

import dataclasses
import math
import os
from typing import Callable

from zoo import fileio
from zoo.config import ConfigError


@dataclasses.dataclass
class Phase:
    """One optimizer's part of a training step.

    Attributes:
        name: names the phase's optimizer in checkpoints and logs.
        loss: `loss(model, batch, training) -> (per_example_loss, metrics)`, where
            `per_example_loss` has shape `[batch]` and `metrics` maps names to scalars.
            The trainer scales by the global batch size, so replicas need not know it.
        variables: `variables(model) -> list` of the variables this phase updates.
        clip_groups: `clip_groups(model) -> list of lists` of variables whose gradients are
            clipped to `clipnorm` each on its own (an ensemble's members, which must not slow
            each other's steps); None: the phase's gradient is clipped as one.
    """

    name: str
    loss: Callable
    variables: Callable
    clip_groups: Callable = None


@dataclasses.dataclass
class Servable:
    """A function the exporter turns into a SavedModel signature or a TFLite model.

    Attributes:
        fn: a `tf.function` with a full input signature.
        tflite: whether to convert it to TFLite (it must then have static shapes and take
            and return numbers, not strings).
        encode: for TFLite parity checks, maps a list of raw inputs to the function's
            numpy inputs (a dict keyed by argument name).
        decode: maps the function's numpy outputs back to what a client wants.
        tpu: marks the model's forward pass (numbers in and out, static shapes, no string
            processing) that the SavedModel aliases as `tpu_func` for the Cloud TPU
            Inference Converter. At most one servable sets it.
        quantizations: the TFLite variants this function can have (`--quantize` values);
            others are skipped, and the manifest says why (`quantization_note`).
        quantization_note: why some variants are not offered.
        int8_float_nodes: regular expressions of tensor names whose ops the int8 variant keeps in
            float, for tensors whose range int8 cannot hold (e.g. attention scores masked
            with -1e9); the rest is int8.
        metric: `(name, fn, mode)` judging this function's quantized variants instead of the
            entry's `task_metric`: `fn(decoded outputs, references) -> float`, `mode` "max"
            when higher is better, "min" when lower is.
    """

    fn: Callable
    tflite: bool = False
    tpu: bool = False
    encode: Callable = None
    decode: Callable = None
    quantizations: tuple = ("none", "float16", "dynamic", "int8")
    quantization_note: str = ""
    int8_float_nodes: tuple = ()
    metric: tuple = None


@dataclasses.dataclass(frozen=True)
class TrainingLength:
    """How long a model trains when the user sets neither `--steps` nor `--epochs`.

    About `steps` optimizer steps, rounded to whole epochs and kept within
    `[min_epochs, max_epochs]`: a small data set gets more passes, a large one fewer.

    Example:
        >>> TrainingLength(steps=6000, min_epochs=3, max_epochs=20).epochs(67349, 32)
        3
        >>> TrainingLength(steps=6000, min_epochs=3, max_epochs=20).epochs(13559, 64)
        20
    """

    steps: int
    min_epochs: int = 1
    max_epochs: int = 100

    def epochs(self, num_examples, batch_size):
        steps_per_epoch = max(1, num_examples // batch_size)
        return min(self.max_epochs, max(self.min_epochs, math.ceil(self.steps / steps_per_epoch)))

    def describe(self):
        return f"about {self.steps:,} steps, {self.min_epochs}-{self.max_epochs} epochs"


class ZooEntry:
    """Base class of zoo entries. Subclasses are registered with `@registry.register`.

    Args:
        config: the entry's config dataclass (see `config_class.PRESETS`).
        workdir: where the entry keeps its assets (vocabularies) under `assets/`.
    """

    name = None
    description = ""
    config_class = None
    default_data = None
    # Trainer settings this model starts from instead of `TrainerConfig`'s defaults, on a
    # fresh `zoo train` (the user's --config/--batch_size still win), e.g. DCGAN's Adam.
    trainer_defaults = {}
    @classmethod
    def trainer_defaults_for(cls, config):
        """`trainer_defaults` for a model config (a pretrained start may want a gentler rate)."""
        return dict(cls.trainer_defaults)

    # How long `zoo train` trains when neither --steps nor --epochs is given (see
    # `TrainingLength`); entries size it to what their family needs to converge.
    training_length = TrainingLength(steps=5000, min_epochs=1, max_epochs=100)
    # The validation figure that says how good the model is, and whether higher ("max") or
    # lower ("min") is better: `--config early_stopping_metric=task` watches it.
    validation_metric = ("val_loss", "min")
    # The name validation rows give the first phase's loss: "val_loss" when it says how good
    # the model is; a GAN's is its discriminator's, which early stopping must not minimize.
    validation_loss_name = "val_loss"

    def __init__(self, config, workdir):
        self.config = config
        self.workdir = workdir

    @classmethod
    def preset(cls, name):
        """The config of a named preset, or of a local preset directory where the entry's
        config class reads them (`from_preset_directory`)."""
        presets = cls.config_class.PRESETS
        if name in presets:
            return presets[name]()
        from_directory = getattr(cls.config_class, "from_preset_directory", None)
        if from_directory and fileio.isdir(name):
            return from_directory(name)
        raise ConfigError(
            f"--preset={name}: model {cls.name!r} has presets {', '.join(presets)}"
            + (" or a preset directory." if from_directory else ".")
        )

    @property
    def assets_dir(self):
        return os.path.join(self.workdir, "assets")

    # Data.
    def prepare(self, source):
        """Learns what the model needs from the training split (vocabularies) into assets."""

    def load_assets(self):
        """Loads what `prepare` wrote."""

    # Whether batches must keep static shapes (TPU, XLA: each new shape compiles the step
    # again). The trainer sets it to False on its entry when the step runs without XLA; an
    # entry may then cut each batch's padding (a padded token costs as much as a real one).
    static_shapes = True
    # Whether the trainer's `jit_compile` is on: an entry may then compile its own loops
    # (generation in `evaluate`/`predict`) with XLA too. Exports do not use it.
    jit_compile = False
    # The trainer's global batch size (set by the trainer before `build_model`), for models
    # that keep a state per batch row from one step to the next.
    batch_size = None

    def dataset(self, source, split, batch_size, training, seed=0):
        """A `tf.data.Dataset` of batches (repeated when training), with static shapes unless
        `static_shapes` is False."""
        raise NotImplementedError

    def num_examples(self, source, split):
        raise NotImplementedError

    # Model and training.
    def build_model(self):
        raise NotImplementedError

    def initialize(self, model):
        """Loads pretrained weights into a new model (a preset, another workdir's training).

        The trainer calls it once, when a run starts with no checkpoint to resume from, so
        a pretrained source is read only at the start of training and is not needed after.
        """

    def loss(self, model, batch, training):
        """The task loss of each example `[batch]` (`Phase.loss`)."""
        return self.loss_and_logits(model, batch, training)[0]

    # Knowledge distillation (`--teacher`): entries whose model predicts a distribution over
    # classes or tokens implement `loss_and_logits`, which `loss` then reads.
    def loss_and_logits(self, model, batch, training):
        """`(per_example_loss, logits, mask)`: the task loss of each example, the logits it came
        from (`[batch, classes]`, or `[batch, positions, vocabulary]` for token models), and
        for token models which positions count (`[batch, positions]` of 0/1; None otherwise)."""
        raise NotImplementedError

    @classmethod
    def distillable(cls):
        return cls.loss_and_logits is not ZooEntry.loss_and_logits

    # Config fields a teacher and its student must share: the student takes the teacher's
    # assets (vocabularies, labels), and these fields say how the assets are read.
    teacher_keys = ()
    # Assets that only steer training or decoding (class weights, chosen beam settings): the
    # members of a teacher ensemble may differ in them; they must share all other assets.
    training_only_assets = ()

    def check_teacher_data(self, source, teacher_workdir):
        """Raises `ConfigError` when the training data asks for other outputs than the
        teacher's assets (now the student's) know, e.g. other labels. Nothing by default."""

    def phases(self, model):
        """The training phases; one phase over all trainable variables by default."""
        return [Phase("main", self.loss, lambda m: m.trainable_variables)]

    # Results.
    def evaluate(self, model, source, split):
        """Task metrics as a dict of floats."""
        raise NotImplementedError

    def on_evaluation(self, model, source, workdir, step, epoch):
        """Called on the chief alone after each evaluation (by the trainer during training, each
        epoch and the last step; by `zoo evaluate`), to write what a person looks at under
        `workdir` (image grids, a confusion matrix). `epoch` is `step / steps_per_epoch`, or
        None outside training. Does nothing by default."""

    def on_training_end(self, model, source):
        """Called by the trainer on the chief once training has reached its last step, to fit
        inference settings on the validation split (a translator's beam size and length
        penalty) into `assets/`. Returns metrics to report (none by default)."""
        return {}

    def predict(self, model, inputs):
        """Predictions for raw inputs (a list of strings), as a list of strings."""
        raise NotImplementedError

    def serving_functions(self, model):
        """Named `Servable`s; the exporter serves `serving_default` by default."""
        raise NotImplementedError

    def resources(self):
        """Trackable objects the served functions use (tokenizers, lookup tables)."""
        return {}

    def held_out_inputs(self, source, count):
        """Raw inputs the exporter uses to check artifacts against the Keras model."""
        return self.held_out_examples(source, count)[0]

    def held_out_examples(self, source, count):
        """(raw inputs, references) from the validation split, for parity and metric checks."""
        raise NotImplementedError

    def training_inputs(self, source, count):
        """Raw inputs from the training split (int8 calibration draws from these)."""
        raise NotImplementedError

    task_metric = None  # name of the figure `score` returns; higher is better

    def score(self, predictions, references):
        """The task metric of decoded predictions (what quantized exports are judged by)."""
        raise NotImplementedError
