"""What the BERT entries share: reading texts, the WordPiece vocabulary, the backbone."""

import os

import keras_hub
import numpy as np
import tensorflow as tf

from zoo import fileio, sources
from zoo.bert.config import ARCHITECTURE
from zoo.config import ConfigError, copy_backbone
from zoo.datasets import reviews
from zoo.entry import ZooEntry
from zoo.text import labelled, precision, wordpiece

VOCABULARY = "vocab.txt"
VOCAB_TEXTS = 200_000
TFDS_TEXT_FEATURES = ("text", "sentence")


class BertTextEntry(ZooEntry):
    """Base of the BERT entries. Subclasses say whether labels are required."""

    requires_labels = False

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self._cache = {}
        self.wordpiece = None
        self.label_names = None  # known labels (None: any), used when reading rows

    # Data.
    def _read(self, path):
        rows = labelled.read(path, self.config.text_column, self.config.label_column, self.config.skip_bad_rows,
                             require_label=self.requires_labels, labels=self.label_names)
        if rows.skipped:
            print(f"[data] {path}: skipped {rows.skipped} bad rows (--skip_bad_rows), e.g. "
                  + "; ".join(rows.problems[:3]), flush=True)
        return rows.examples

    def examples(self, source, split):
        """`labelled.Example`s of a split of `source`."""
        key = (str(source), split)
        if key not in self._cache:
            if source.kind == "tfds":
                self._cache[key] = self._tfds_examples(source, split)
            elif source.kind == "file":
                if split == sources.ALL:  # `zoo evaluate --data=X`: all of X
                    self._cache[key] = self._read(source.name)
                elif self.config.validation_data:
                    path = source.name if split == "train" else self.config.validation_data
                    if not fileio.exists(path):
                        raise sources.DataError(f"--config validation_data={path}: no such file or folder.")
                    self._cache[key] = self._read(path)
                else:
                    self._cache[key] = sources.split_rows(self._read(source.name), split)
            elif source.kind == "builtin" and source.name == "reviews":
                self._cache[key] = [labelled.Example(text, label, f"builtin:reviews[{split}]#{i}")
                                    for i, (text, label) in enumerate(reviews.split(split))]
            else:
                raise sources.DataError(f"--data={source}: {self.name} reads files, folders, tfds:NAME or "
                                        f"builtin:reviews.")
        return self._cache[key]

    def _tfds_examples(self, source, split):
        builder, name = sources.tfds_split(source, split)
        features = builder.info.features
        text_key = self.config.text_column
        if text_key not in features:
            text_key = next((k for k in TFDS_TEXT_FEATURES if k in features), None)
        if text_key is None:
            raise sources.DataError(f"--data={source}: no text feature {self.config.text_column!r}; set "
                                    f"--config text_column= one of {list(features)}.")
        label_key = self.config.label_column
        if self.requires_labels and label_key not in features:
            raise sources.DataError(f"--data={source}: no label feature {label_key!r}; set "
                                    f"--config label_column= one of {list(features)}.")
        label_names = getattr(features[label_key], "names", None) if label_key in features else None
        collector = labelled._Collector(self.config.skip_bad_rows)
        dataset = builder.as_dataset(split=name, shuffle_files=False)
        for index, example in enumerate(dataset.as_numpy_iterator()):
            label = example.get(label_key)
            if label is not None and label_names is not None:
                # TFDS marks unlabelled test examples (GLUE) with -1.
                label = label_names[int(label)] if 0 <= int(label) < len(label_names) else None
            text = example[text_key].decode("utf-8")
            collector.add(text, None if label is None else str(label), f"{source}[{name}]#{index}",
                          self.requires_labels, self.label_names)
        if collector.rows.skipped:
            print(f"[data] {source}: skipped {collector.rows.skipped} bad examples.", flush=True)
        return collector.rows.examples

    def num_examples(self, source, split):
        return len(self.examples(source, split))

    def texts(self, source, split, limit=None):
        return [e.text for e in self.examples(source, split)[:limit]]

    def token_ids(self, source, split, chunk=4096):
        """Ids [examples, sequence_length] of a split, tokenized once: the training input
        pipeline then only shuffles and batches numbers (tokenizing at every step would take
        CPU from the step itself)."""
        key = ("ids", str(source), split)
        if key not in self._cache:
            texts = self.texts(source, split)
            length = self.config.sequence_length
            self._cache[key] = np.concatenate(
                [self.wordpiece.encode(tf.constant(texts[i:i + chunk]), length).numpy()
                 for i in range(0, len(texts), chunk)] or [np.zeros([0, length], np.int32)])
        return self._cache[key]

    # Vocabulary.
    @property
    def vocabulary_path(self):
        return os.path.join(self.assets_dir, VOCABULARY)

    def pretrained_vocabulary(self):
        """The vocabulary file of a pretrained source, when there is one."""
        if self.config.preset_dir:
            path = fileio.join(self.config.preset_dir, "assets", "tokenizer", "vocabulary.txt")
            if not fileio.isfile(path):
                raise ConfigError(f"--preset={self.config.preset_dir}: no {path}; expected a keras-hub BERT preset.")
            return path
        return None

    def prepare(self, source):
        self.prepare_vocabulary(source)
        self.load_assets()

    def prepare_vocabulary(self, source):
        fileio.makedirs(self.assets_dir)
        pretrained = self.pretrained_vocabulary()
        if pretrained:
            fileio.copy(pretrained, self.vocabulary_path)
        else:
            wordpiece.learn(self.texts(source, "train", VOCAB_TEXTS), self.config.vocabulary_size,
                            self.vocabulary_path, lowercase=self.config.lowercase)

    def load_assets(self):
        self.wordpiece = wordpiece.WordPiece(self.vocabulary_path, lowercase=self.config.lowercase)

    def resources(self):
        return {"wordpiece": self.wordpiece}

    def encode(self, texts):
        """The backbone's inputs for a batch of strings."""
        ids = self.wordpiece.encode(texts, self.config.sequence_length)
        return self.backbone_inputs(ids)

    def trim(self, token_ids, minimum=1):
        """A batch of ids [B, L] cut after its last non-padding column (rounded up to a multiple
        of 8, at least `minimum`), unless the trainer needs static shapes. Short texts padded
        to `sequence_length` would otherwise cost as much as long ones (SST-2's phrases
        average 12 word pieces of 64)."""
        if self.static_shapes:
            return token_ids
        length = tf.shape(token_ids)[1]
        used = tf.reduce_max(tf.where(token_ids != self.wordpiece.pad_id, tf.range(1, length + 1), 0))
        keep = tf.clip_by_value((used + 7) // 8 * 8, tf.minimum(minimum, length), length)
        return token_ids[:, :keep]

    def ordinary_pieces(self, token_ids):
        """Where ids [B, L] hold text word pieces (not padding, `[CLS]` or `[SEP]`)."""
        w = self.wordpiece
        return (token_ids != w.pad_id) & (token_ids != w.cls_id) & (token_ids != w.sep_id)

    def backbone_inputs(self, token_ids):
        token_ids = tf.cast(token_ids, tf.int32)
        return {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                "padding_mask": tf.cast(token_ids != self.wordpiece.pad_id, tf.int32)}

    # Model.
    def backbone(self, sizes=None, name="backbone"):
        """The config's BERT backbone; `sizes`: other (num_heads, hidden_dim, intermediate_dim)."""
        c = self.config
        num_heads, hidden_dim, intermediate_dim = sizes or (c.num_heads, c.hidden_dim, c.intermediate_dim)
        # A learned vocabulary may come out a little smaller than asked for.
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=self.wordpiece.vocabulary_size, num_layers=c.num_layers, num_heads=num_heads,
            hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, dropout=c.dropout,
            max_sequence_length=c.max_sequence_length, name=name)
        return precision.float32_islands(backbone)

    @staticmethod
    def backbones(model):
        """The model's BERT backbones: one, or one per member of an ensemble."""
        return [member.backbone for member in getattr(model, "members", [model])]

    def initialize(self, model):
        if self.config.preset_dir:
            pretrained = keras_hub.models.BertBackbone.from_preset(self.config.preset_dir)
            for backbone in self.backbones(model):
                copy_backbone(pretrained, backbone, ARCHITECTURE, f"--preset={self.config.preset_dir}")
