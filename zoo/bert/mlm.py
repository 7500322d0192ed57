"""The `bert_mlm` zoo entry: masked-language-model pretraining of a BERT backbone.

Unlabelled text in (the labels of a labelled file are ignored); the trained backbone is what
`bert_classifier --init_from=WORKDIR` starts from.
"""

import functools
import math

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from zoo import registry
from zoo.bert.config import BertMlmConfig
from zoo.bert.text_entry import BertTextEntry
from zoo.entry import Servable, TrainingLength

MASK_TEXT = "[MASK]"
FIRST_ORDINARY_TOKEN = 5  # random replacements skip the special tokens of a learned vocabulary


@registry.register("bert_mlm")
class BertMaskedLanguageModel(BertTextEntry):
    """BERT masked-language-model pretraining (keras-hub `BertBackbone` + `BertMaskedLM` head).

    Masking follows BERT: `mask_rate` of the word pieces are predicted; of those 80% are
    replaced by `[MASK]`, 10% by a random token, 10% kept. Masks are drawn in the input
    pipeline from stateless seeds (the run's seed and the batch's index), so they are the same
    on every replica and a resumed run draws exactly the masks of an uninterrupted one.

    Data: `.txt` files (one text a line), or CSV/TSV/JSONL/TFDS texts as for `bert_classifier`
    (`builtin:reviews` by default).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); path = os.path.join(d, "texts.txt")
        >>> _ = open(path, "w").write("the film was good\\nthe film was bad\\n" * 30)
        >>> from zoo import sources
        >>> entry = BertMaskedLanguageModel(BertMaskedLanguageModel.preset("tiny"), d)
        >>> entry.prepare(sources.parse(path))
        >>> len(entry.predict(entry.build_model(), ["the film was [MASK]"]))
        1
    """

    description = "BERT masked-language-model pretraining on unlabelled text (for bert_classifier --init_from)."
    config_class = BertMlmConfig
    default_data = "builtin:reviews"
    validation_metric = ("masked_accuracy", "max")
    training_length = TrainingLength(steps=20000, min_epochs=1, max_epochs=40)
    # BERT's pretraining recipe (AdamW, warmup, linear decay, weight decay 0.01) at the rate
    # small transformers take (WORKSPACE_NOTES.md, "Defaults").
    trainer_defaults = {"optimizer": "adamw", "learning_rate": 5e-4, "warmup_fraction": 0.05,
                        "lr_schedule": "linear", "weight_decay": 0.01, "batch_size": 128, "clipnorm": 1.0}

    @property
    def max_predictions(self):
        c = self.config
        return c.max_predictions or math.ceil(c.sequence_length * c.mask_rate)

    # Data.
    def mask(self, token_ids, seed):
        """BERT's masking of a batch of ids [B, L], from a stateless `seed` pair."""
        w = self.wordpiece
        batch, predictions = tf.shape(token_ids)[0], self.max_predictions
        candidates = self.ordinary_pieces(token_ids)
        scores = tf.where(candidates, tf.random.stateless_uniform(tf.shape(token_ids), seed), 2.0)
        # The positions with the lowest scores are chosen; those under the rate are predicted.
        negative, positions = tf.math.top_k(-scores, predictions)
        weights = tf.cast(-negative < self.config.mask_rate, tf.float32)
        targets = tf.gather(token_ids, positions, batch_dims=1)
        action = tf.random.stateless_uniform([batch, predictions], seed + 1)
        random_tokens = tf.random.stateless_uniform([batch, predictions], seed + 2, FIRST_ORDINARY_TOKEN,
                                                    w.vocabulary_size, dtype=tf.int32)
        replacement = tf.where(action < 0.8, w.mask_id, tf.where(action < 0.9, random_tokens, targets))
        replacement = tf.where(weights > 0, replacement, targets)
        rows = tf.broadcast_to(tf.range(batch)[:, None], [batch, predictions])
        masked = tf.tensor_scatter_nd_update(token_ids, tf.stack([rows, positions], -1), replacement)
        return {**self.backbone_inputs(masked), "mask_positions": positions, "mask_ids": targets,
                "mask_weights": weights}

    def _packed_lengths(self, source, split):
        """Ids of a split and each text's word pieces after `[CLS]`, its `[SEP]` included."""
        ids = self.token_ids(source, split)
        return ids, (ids != self.wordpiece.pad_id).sum(axis=1) - 1

    def num_examples(self, source, split):
        if split == "train" and self.config.pack:  # packed rows
            return max(1, int(self._packed_lengths(source, split)[1].sum()) // (self.config.sequence_length - 1))
        return super().num_examples(source, split)

    def dataset(self, source, split, batch_size, training, seed=0):
        if training and self.config.pack:
            ids, lengths = self._packed_lengths(source, split)
            texts = tf.RaggedTensor.from_tensor(ids[:, 1:], lengths=lengths)
            # Indices through the shuffle buffer (the checkpointed input position stays small),
            # then the texts' pieces one after another, cut into rows after a `[CLS]`.
            ds = tf.data.Dataset.range(texts.nrows()).shuffle(texts.nrows(), seed=seed).repeat()
            ds = ds.map(lambda i: texts[i]).unbatch().batch(self.config.sequence_length - 1, drop_remainder=True)
            ds = ds.map(lambda row: tf.concat([[self.wordpiece.cls_id], row], 0))
        else:
            ids = self.token_ids(source, split)
            ds = tf.data.Dataset.from_tensor_slices(ids)
            if training:
                ds = ds.shuffle(len(ids), seed=seed).repeat()
        ds = ds.batch(batch_size, drop_remainder=training).enumerate()

        def mask(index, batch):
            return self.mask(self.trim(batch, self.max_predictions), tf.stack([tf.cast(seed, tf.int64), index]))

        return ds.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Model.
    def build_model(self):
        return keras_hub.models.BertMaskedLM(self.backbone(), preprocessor=None, name="bert_mlm")

    @staticmethod
    def _inputs(batch):
        return {k: batch[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}

    def loss(self, model, batch, training):
        """Mean cross-entropy over each example's predicted positions."""
        logits = keras.ops.cast(model(self._inputs(batch), training=training), "float32")
        ce = keras.losses.sparse_categorical_crossentropy(batch["mask_ids"], logits, from_logits=True)
        weights = batch["mask_weights"]
        return keras.ops.sum(ce * weights, -1) / keras.ops.maximum(keras.ops.sum(weights, -1), 1.0)

    # Results.
    def evaluate(self, model, source, split):
        """Accuracy of the predicted word pieces at the masked positions."""
        limit = self.config.eval_examples
        ds = self.dataset(source, split, 64, training=False)
        if limit:
            ds = ds.take(math.ceil(limit / 64))
        correct = total = 0.0
        for batch in ds:
            logits = self._logits_fn(model)(self._inputs(batch))
            predicted = tf.math.top_k(tf.cast(logits, tf.float32), 1).indices[..., 0]
            weights = batch["mask_weights"]
            correct += float(tf.reduce_sum(tf.cast(predicted == batch["mask_ids"], tf.float32) * weights))
            total += float(tf.reduce_sum(weights))
        return {"masked_accuracy": correct / max(total, 1.0), "masked_tokens": total}

    def predict(self, model, inputs):
        """Fills each `[MASK]` of the inputs with the model's most likely word piece."""
        w, length = self.wordpiece, self.config.sequence_length
        outputs = []
        for text in inputs:
            parts = text.split(MASK_TEXT)
            ids, positions = [w.cls_id], []
            for i, part in enumerate(parts):
                if i:
                    positions.append(len(ids))
                    ids.append(w.mask_id)
                ids += w.tokenize(tf.constant([part])).flat_values.numpy().tolist()
            ids = (ids[:length - 1] + [w.sep_id] + [w.pad_id] * length)[:length]
            positions = [p for p in positions if p < length - 1]
            if not positions:
                outputs.append(text)
                continue
            inputs_ = self.backbone_inputs(tf.constant([ids]))
            padded = positions + [0] * (self.max_predictions - len(positions))
            logits = self._logits_fn(model)({**inputs_, "mask_positions": tf.constant([padded[:self.max_predictions]])})
            best = np.asarray(keras.ops.convert_to_numpy(logits))[0].argmax(-1)
            words = [w.vocabulary[t].removeprefix("##") for t in best[:len(positions)]]
            filled = parts[0]
            for k, part in enumerate(parts[1:]):
                filled += (words[k] if k < len(words) else MASK_TEXT) + part
            outputs.append(filled)
        return outputs

    @functools.lru_cache(maxsize=None)
    def _logits_fn(self, model):
        # In a graph: called eagerly under mixed_bfloat16, keras-hub 0.32's `MaskedLMHead` adds
        # its float32 bias to bfloat16 logits and fails ("AddV2 ... expected to be a bfloat16
        # tensor but is a float tensor"); traced, the same call works (and runs faster).
        return tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    @functools.lru_cache(maxsize=None)
    def _embed_fn(self, model):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def embed(inputs):
            outputs = model.backbone(self.encode(inputs))
            return {"pooled_output": tf.cast(outputs["pooled_output"], tf.float32)}

        return embed

    def serving_functions(self, model):
        # A pretrained encoder is served as a sentence encoder: strings in, pooled vectors out.
        return {"serving_default": Servable(self._embed_fn(model))}

    def held_out_examples(self, source, count):
        texts = self.texts(source, "validation", count)
        return texts, [None] * len(texts)

    def training_inputs(self, source, count):
        return self.texts(source, "train", count)
