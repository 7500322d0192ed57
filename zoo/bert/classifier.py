"""The `bert_classifier` zoo entry: labelled texts in, labels and probabilities out."""

import functools
import json
import os

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from zoo import fileio, registry
from zoo.bert import metrics as classification
from zoo.bert.config import ARCHITECTURE, BertClassifierConfig
from zoo.bert.text_entry import BertTextEntry
from zoo.config import ConfigError, copy_backbone
from zoo.ensemble import ensemble_logits
from zoo.entry import Phase, Servable, TrainingLength
from zoo.text.losses import symmetric_kl, token_cross_entropy

LABELS = "labels.txt"
MEMBER_SEED_STRIDE = 1_000_003  # member i of an ensemble shuffles with seed + i x this
CLASS_WEIGHTS = "class_weights.json"
# keras-hub's attention replaces masked scores with -1e9 (`where(mask, scores, -1e9)`): int8
# cannot hold that range beside the real scores (a full-integer classifier lost 62 accuracy
# points), and the ops around the scores (SELECT_V2, TRANSPOSE, the reshapes) tie their
# input's scale to their output's. So the int8 model keeps the attention core in float (the
# query scaling, scores, mask selects, softmax, context product and the transposes between
# them, however Keras traces them: `einsum` + `Mul` or a scaled query + `MatMul`), while the
# query/key/value/output projections, the feed-forward and the layer norms run in int8. On
# SST-2 this keeps int8 level with float, where a pattern missing the transposes lost points
# (figures: WORKSPACE_NOTES.md "BERT int8").
ATTENTION_FLOAT_NODES = (r"self_attention_layer(_\d+)*/(?!(query|key|value|attention_output)(_\d+)*/)",)


def _sorted_labels(labels):
    labels = sorted(set(labels))
    try:
        return sorted(labels, key=int)
    except ValueError:
        return labels


class MeanPooledClassifier(keras.Model):
    """A BERT backbone whose head reads the mean of the final token vectors (padding left out).

    Functional, like keras-hub's `BertTextClassifier`, and with the same `backbone` attribute,
    so checkpoints, `--init_from` and the exporter treat both heads alike.
    """

    def __init__(self, backbone, num_classes, dropout, **kwargs):
        inputs = backbone.input
        sequence = backbone(inputs)["sequence_output"]
        mask = keras.ops.expand_dims(keras.ops.cast(inputs["padding_mask"], sequence.dtype), -1)
        pooled = keras.ops.sum(sequence * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
        pooled = keras.layers.Dropout(dropout, name="output_dropout")(pooled)
        logits = keras.layers.Dense(num_classes, name="logits")(pooled)
        super().__init__(inputs=inputs, outputs=logits, name=kwargs.pop("name", "bert_classifier"), **kwargs)
        self.backbone = backbone

    def build(self, input_shape=None):
        # Functional: built by __init__.
        self.built = True


@keras.saving.register_keras_serializable(package="zoo")
class EnsembleClassifier(keras.Model):
    """Classifiers over the same inputs, trained side by side, predicting the mean of their
    class probabilities (a deep ensemble, Lakshminarayanan et al. 2017).

    Called, it returns logits whose softmax is that mean (`ensemble_logits`), so whatever reads
    a classifier's logits (serving, distillation, evaluation) reads the ensemble's. `members`
    are the classifiers; training gives each its own loss (`BertClassifier.loss_and_logits`).
    """

    def __init__(self, members, **kwargs):
        super().__init__(name=kwargs.pop("name", "bert_classifier"), **kwargs)
        self.members = list(members)
        self.built = all(member.built for member in self.members)

    def build(self, input_shape=None):
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        return ensemble_logits([member(inputs, training=training) for member in self.members], 1.0)

    def get_config(self):
        members = [keras.saving.serialize_keras_object(member) for member in self.members]
        for member in members:
            # keras-hub compiles a task when it is built; that optimizer is not the trainer's.
            member.pop("compile_config", None)
        return {**super().get_config(), "members": members}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls([keras.saving.deserialize_keras_object(m) for m in config.pop("members")], **config)


@registry.register("bert_classifier")
class BertClassifier(BertTextEntry):
    """BERT text classifier (keras-hub `BertBackbone` + classification head).

    Data: CSV/TSV (header row) or JSONL with `text`/`label` columns (`--config text_column=`,
    `label_column=`), a folder holding one folder of text files per class, or
    `tfds:glue/sst2`, `tfds:imdb_reviews`, or `builtin:reviews` (generated, the default).
    Labels are names or integers. The WordPiece
    vocabulary is learned from the training text, or taken from `--preset=PATH` (a local
    keras-hub preset) or `--init_from=WORKDIR` (a `bert_mlm` workdir).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); path = os.path.join(d, "data.csv")
        >>> _ = open(path, "w").write("text,label\\n" + "good film,pos\\nbad film,neg\\n" * 20)
        >>> from zoo import sources
        >>> entry = BertClassifier(BertClassifier.preset("tiny"), d)
        >>> entry.prepare(sources.parse(path))
        >>> len(entry.predict(entry.build_model(), ["a good film"]))
        1
    """

    description = "BERT text classifier (keras-hub backbone); strings in, labels and probabilities out."
    config_class = BertClassifierConfig
    default_data = "builtin:reviews"  # generated; users bring their own (CSV/TSV/JSONL/folder/TFDS)
    requires_labels = True
    teacher_keys = ("lowercase",)
    training_only_assets = (CLASS_WEIGHTS,)
    task_metric = "accuracy"  # in percentage points
    validation_metric = ("accuracy", "max")
    training_length = TrainingLength(steps=2000, min_epochs=1, max_epochs=20)
    # A transformer trained from scratch (or from the zoo's small MLM) stalls at chance with
    # Adam 1e-3 and no warmup; AdamW with warmup and linear decay learns (WORKSPACE_NOTES.md,
    # "Defaults"). A pretrained preset gets BERT's fine-tuning rate instead.
    trainer_defaults = {"optimizer": "adamw", "learning_rate": 5e-4, "warmup_fraction": 0.05,
                        "lr_schedule": "linear", "weight_decay": 0.01, "batch_size": 32, "clipnorm": 1.0}

    @classmethod
    def trainer_defaults_for(cls, config):
        if config.preset_dir:
            return {**cls.trainer_defaults, "learning_rate": 5e-5}
        return dict(cls.trainer_defaults)

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self.class_weight = None
        if config.label_names:
            self.label_names = [n.strip() for n in config.label_names.split(",") if n.strip()]

    # Assets: vocabulary, label names and class weights.
    def pretrained_vocabulary(self):
        if self.config.init_from:
            return os.path.join(self._pretrained_workdir()[0], "assets", "vocab.txt")
        return super().pretrained_vocabulary()

    def _pretrained_workdir(self):
        from zoo import workdir as workdirs

        return workdirs.pretrained_workdir(self.config.init_from, ("bert_mlm",), self.config,
                                           ARCHITECTURE[1:] + ("lowercase",))

    def prepare(self, source):
        self.prepare_vocabulary(source)
        train = self.examples(source, "train")
        if self.label_names is None:
            self.label_names = _sorted_labels(e.label for e in train)
        if len(self.label_names) < 2:
            raise ConfigError(f"--data={source}: found the labels {self.label_names}; a classifier needs two or more.")
        # Bad held-out rows fail now, not after the first epoch of training.
        self.examples(source, "validation")
        fileio.write_atomic(os.path.join(self.assets_dir, LABELS), "".join(name + "\n" for name in self.label_names))
        weights = self._class_weights([e.label for e in train])
        fileio.write_atomic(os.path.join(self.assets_dir, CLASS_WEIGHTS),
                            json.dumps(dict(zip(self.label_names, weights)), indent=1))
        self.load_assets()

    def _class_weights(self, labels):
        spec = self.config.class_weights.strip()
        if not spec:
            return [1.0] * len(self.label_names)
        if spec == "balanced":
            counts = np.array([labels.count(n) for n in self.label_names], np.float64)
            return [float(len(labels) / (len(counts) * max(c, 1))) for c in counts]
        weights = {}
        for item in spec.split(","):
            name, _, value = item.rpartition(":")
            try:
                weights[name.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--config class_weights={spec}: expected 'balanced' or name:weight,... "
                                  f"(bad item {item!r}).") from None
        unknown = sorted(set(weights) - set(self.label_names))
        if unknown:
            raise ConfigError(f"--config class_weights: unknown labels {unknown}; labels: {self.label_names}.")
        return [weights.get(n, 1.0) for n in self.label_names]

    def load_assets(self):
        super().load_assets()
        with fileio.text_file(os.path.join(self.assets_dir, LABELS)) as f:
            self.label_names = [line.rstrip("\n") for line in f if line.strip()]
        weights = json.loads(fileio.read_text(os.path.join(self.assets_dir, CLASS_WEIGHTS)))
        self.class_weight = np.array([weights[n] for n in self.label_names], np.float32)

    # Data.
    def dataset(self, source, split, batch_size, training, seed=0):
        """Batches of token ids and labels. Training an ensemble, each batch also holds one
        batch for each further member under `members`, drawn in that member's own order, as
        members trained in runs of their own would see them."""
        if not training or self.config.ensemble_size == 1:
            return self._batches(source, split, batch_size, training, seed)
        first, *others = (self._batches(source, split, batch_size, training, seed + i * MEMBER_SEED_STRIDE)
                          for i in range(self.config.ensemble_size))
        return tf.data.Dataset.zip((first, tuple(others))).map(lambda batch, more: {**batch, "members": more})

    def _batches(self, source, split, batch_size, training, seed):
        examples = self.examples(source, split)
        index = {name: i for i, name in enumerate(self.label_names)}
        labels = np.array([index[e.label] for e in examples], np.int32)
        ds = tf.data.Dataset.from_tensor_slices((self.token_ids(source, split), labels))
        if training:
            ds = ds.shuffle(len(examples), seed=seed).repeat()
        ds = ds.batch(batch_size, drop_remainder=training).enumerate()
        rate = self.config.token_dropout if training else 0.0

        def make(index, batch):
            ids, labels = batch
            ids = self.trim(ids)
            if rate:
                ids = self.drop_tokens(ids, rate, tf.stack([tf.cast(seed, tf.int64), index]))
            return {**self.backbone_inputs(ids), "labels": labels}

        return ds.map(make, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def drop_tokens(self, token_ids, rate, seed):
        """Ids [B, L] with each ordinary word piece replaced by `[MASK]` with probability `rate`
        (a stateless draw from the `seed` pair: the same on every replica and after a resume)."""
        drop = self.ordinary_pieces(token_ids) & (tf.random.stateless_uniform(tf.shape(token_ids), seed) < rate)
        return tf.where(drop, self.wordpiece.mask_id, token_ids)

    # Model.
    def build_model(self):
        size = self.config.ensemble_size
        if size == 1:
            return self._classifier("bert_classifier")
        return EnsembleClassifier([self._classifier(f"member_{i}", f"member_{i}_backbone")
                                   for i in range(size)])

    def _classifier(self, name, backbone_name="backbone"):
        backbone = self.backbone(name=backbone_name)
        if self.config.pooling == "mean":
            return MeanPooledClassifier(backbone, len(self.label_names), self.config.dropout, name=name)
        return keras_hub.models.BertTextClassifier(backbone, len(self.label_names), preprocessor=None,
                                                   dropout=self.config.dropout, name=name)

    def phases(self, model):
        if not isinstance(model, EnsembleClassifier):
            return super().phases(model)
        # Each member clipped on its own: as if trained alone.
        return [Phase("main", self.loss, lambda m: m.trainable_variables,
                      clip_groups=lambda m: [member.trainable_variables for member in m.members])]

    def initialize(self, model):
        if self.config.init_from:
            from zoo import workdir as workdirs

            path, cls, model_config = self._pretrained_workdir()
            mlm, latest = workdirs.pretrained_model(path, cls, model_config)
            for backbone in self.backbones(model):
                copy_backbone(mlm.backbone, backbone, ARCHITECTURE, f"--init_from={path}")
            print(f"[init] backbone from {latest}", flush=True)
        else:
            super().initialize(model)

    @staticmethod
    def _inputs(batch):
        return {k: batch[k] for k in ("token_ids", "segment_ids", "padding_mask")}

    def loss_and_logits(self, model, batch, training):
        if isinstance(model, EnsembleClassifier):
            if training:
                # The sum of the members' own losses, each on its own batch (`dataset`): each
                # learns as if alone. No logits: the members saw different examples.
                batches = [batch, *batch["members"]] if "members" in batch else [batch] * len(model.members)
                return sum(self.loss_and_logits(member, member_batch, True)[0]
                           for member, member_batch in zip(model.members, batches)), None, None
            # Held out: the loss of what the ensemble serves.
            logits = ensemble_logits([self.loss_and_logits(m, batch, False)[1] for m in model.members], 1.0)
            return self._weighted(token_cross_entropy(batch["labels"], logits), batch), logits, None
        logits = keras.ops.cast(model(self._inputs(batch), training=training), "float32")
        smoothing = self.config.label_smoothing if training else 0.0
        ce = token_cross_entropy(batch["labels"], logits, smoothing)
        if training and self.config.rdrop:
            # R-Drop: a second pass under other dropout masks; the two passes' mean
            # cross-entropy plus the weighted symmetric KL between their predictions.
            other = keras.ops.cast(model(self._inputs(batch), training=True), "float32")
            ce = 0.5 * (ce + token_cross_entropy(batch["labels"], other, smoothing))
            ce = ce + self.config.rdrop * symmetric_kl(logits, other)
        return self._weighted(ce, batch), logits, None

    def _weighted(self, per_example, batch):
        return per_example * keras.ops.take(keras.ops.convert_to_tensor(self.class_weight), batch["labels"])

    def check_teacher_data(self, source, teacher_workdir):
        if self.config.ensemble_size > 1:
            raise ConfigError(f"--teacher={teacher_workdir}: the student is an ensemble of "
                              f"{self.config.ensemble_size} (--config ensemble_size); a student is one classifier: "
                              f"add --config ensemble_size=1.")
        teacher_labels, self.label_names = self.label_names, None
        try:
            found = _sorted_labels(e.label for e in self.examples(source, "train"))
        finally:
            self.label_names = teacher_labels
        unknown = sorted(set(found) - set(teacher_labels))
        if unknown:
            raise ConfigError(f"--teacher={teacher_workdir} predicts the labels {teacher_labels}; --data={source} "
                              f"has {found} ({unknown} unknown to it): a teacher must be trained for the same labels.")

    # Results.
    def _probabilities(self, model, token_ids):
        """Class probabilities (float32, also under mixed precision) of token id rows."""
        return keras.ops.softmax(keras.ops.cast(model(self.backbone_inputs(token_ids)), "float32"), axis=-1)

    @functools.lru_cache(maxsize=None)
    def _classify_fn(self, model):
        names = tf.constant(self.label_names)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(inputs):
            probabilities = self._probabilities(
                model, self.wordpiece.encode(inputs, self.config.sequence_length))
            top = tf.math.top_k(probabilities, 1).indices[:, 0]
            return {"probabilities": probabilities, "label": tf.gather(names, top)}

        return classify

    def probabilities(self, model, texts, batch_size=128):
        if not len(texts):
            return np.zeros((0, len(self.label_names)), np.float32)
        fn = self._classify_fn(model)
        return np.concatenate([fn(tf.constant(texts[i:i + batch_size]))["probabilities"].numpy()
                               for i in range(0, len(texts), batch_size)])

    def evaluate(self, model, source, split):
        examples = self.examples(source, split)[:self.config.eval_examples or None]
        predicted = self.probabilities(model, [e.text for e in examples]).argmax(-1)
        index = {name: i for i, name in enumerate(self.label_names)}
        result, matrix = classification.classification_metrics(
            [index[e.label] for e in examples], predicted, self.label_names)
        self._confusion = (matrix, f"{split}: accuracy {result['accuracy']:.3f}")
        return result

    def on_evaluation(self, model, source, workdir, step, epoch):
        """Writes the last evaluation's `confusion_matrix.png` (the chief alone calls this)."""
        matrix, title = self._confusion
        classification.plot_confusion_matrix(matrix, self.label_names, os.path.join(workdir, "confusion_matrix.png"),
                                             title)

    def predict(self, model, inputs):
        probabilities = self.probabilities(model, list(inputs))
        return [f"{self.label_names[p.argmax()]}\t{p.max():.4f}" for p in probabilities]

    def held_out_examples(self, source, count):
        examples = self.examples(source, "validation")[:count]
        return [e.text for e in examples], [e.label for e in examples]

    def training_inputs(self, source, count):
        return self.texts(source, "train", count)

    def score(self, predictions, references):
        return 100.0 * float(np.mean([p == r for p, r in zip(predictions, references)]))

    def _labels_of(self, outputs):
        return [self.label_names[i] for i in np.asarray(outputs["probabilities"]).argmax(-1)]

    def serving_functions(self, model):
        length = self.config.sequence_length

        @tf.function(input_signature=[tf.TensorSpec([1, length], tf.int32, name="token_ids")])
        def classify_ids(token_ids):
            return {"probabilities": self._probabilities(model, token_ids)}

        @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="text")])
        def classify_text(text):
            return {"probabilities": self._probabilities(model, self.wordpiece.encode_one(text, length))}

        return {
            "serving_default": Servable(self._classify_fn(model)),
            "classify_ids": Servable(
                classify_ids, tflite=True, tpu=True, decode=self._labels_of,
                encode=lambda texts: {"token_ids": self.wordpiece.encode(tf.constant(texts), length).numpy()},
                int8_float_nodes=ATTENTION_FLOAT_NODES),
            "classify_text": Servable(
                classify_text, tflite=True, decode=self._labels_of,
                encode=lambda texts: {"text": np.array(texts, dtype=object)},
                quantizations=("none", "float16", "dynamic"),
                quantization_note="int8 calibration runs the model in TFLite's calibrator, which cannot "
                                  "load the tokenizer's custom ops; use classify_ids for int8"),
        }
