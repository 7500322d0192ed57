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
from zoo.text.losses import masked_mean

MASK_TEXT = "[MASK]"
FIRST_ORDINARY_TOKEN = 5  # random replacements skip the special tokens of a learned vocabulary


def sample_by_inversion(logits, uniform):
    """One draw per row of `logits` [..., V] from softmax(logits), as the first id whose
    cumulative probability exceeds `uniform` [...] (numbers in [0, 1)); no gradient.

    Example:
        >>> import numpy as np
        >>> logits = np.log([[0.2, 0.3, 0.5]] * 4).astype("float32")
        >>> sample_by_inversion(logits, np.array([0.1, 0.25, 0.6, 0.999], "float32")).numpy().tolist()
        [0, 1, 2, 2]
    """
    cdf = tf.math.cumsum(tf.nn.softmax(tf.stop_gradient(tf.cast(logits, tf.float32)), -1), axis=-1)
    sampled = tf.reduce_sum(tf.cast(cdf <= tf.cast(uniform, tf.float32)[..., None], tf.int32), -1)
    return tf.minimum(sampled, tf.shape(logits)[-1] - 1)  # rounding can leave the last sum under 1


def causal_sequence_output(backbone, inputs, training=False):
    """The word-piece vectors [B, L, H] of keras-hub's `BertBackbone` with each word piece
    attending only to itself and those before it (its own layers, called as its functional
    model calls them, plus a lower-triangular attention mask); padding is left out as there.

    Example:
        >>> import keras_hub, numpy as np
        >>> backbone = keras_hub.models.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8)
        >>> ids = np.array([[2, 7, 9, 3]], "int32")
        >>> inputs = {"token_ids": ids, "segment_ids": 0 * ids, "padding_mask": 1 + 0 * ids}
        >>> changed = {**inputs, "token_ids": np.array([[2, 7, 9, 11]], "int32")}
        >>> a, b = (causal_sequence_output(backbone, x).numpy() for x in (inputs, changed))
        >>> bool(np.allclose(a[:, :3], b[:, :3])), bool(np.allclose(a[:, 3], b[:, 3]))
        (True, False)
    """
    ids = inputs["token_ids"]
    tokens = backbone.token_embedding(ids)
    x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens),
                                 backbone.segment_embedding(inputs["segment_ids"])))
    x = backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=training)
    length = tf.shape(ids)[1]
    causal = tf.linalg.band_part(tf.ones([1, length, length], tf.int32), -1, 0)
    for layer in backbone.transformer_layers:
        x = layer(x, padding_mask=inputs["padding_mask"], attention_mask=causal, training=training)
    return x


@keras.saving.register_keras_serializable(package="zoo")
class ElectraPretrainer(keras.Model):
    """ELECTRA's pair (Clark et al., 2020): a small masked-LM `generator` (a keras-hub
    `BertMaskedLM`) and the `backbone` being pretrained, with a replaced-token head on it.

    Called, it is the generator (masked-LM logits at `mask_positions`), so evaluation and
    `zoo predict` fill masks as `bert_mlm` does; `discriminate` gives the backbone's logit that
    each word piece was replaced. `backbone` is what `bert_classifier --init_from` copies and
    what the exported sentence encoder runs. The generator has its own embeddings (the paper
    shares them through a projection; keras-hub's backbone has no such projection).
    """

    def __init__(self, generator, backbone, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.backbone = backbone
        hidden = backbone.hidden_dim
        self.detection_hidden = keras.layers.Dense(hidden, activation="gelu", name="detection_hidden",
                                                   dtype=backbone.dtype_policy)
        self.detection_logits = keras.layers.Dense(1, name="detection_logits", dtype=backbone.dtype_policy)
        self.detection_hidden.build((None, None, hidden))
        self.detection_logits.build((None, None, hidden))
        self.built = True

    def build(self, input_shape=None):
        # Every weight is created in __init__.
        self.built = True

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def get_config(self):
        generator = keras.saving.serialize_keras_object(self.generator)
        # keras-hub compiles a task when it is built; that optimizer (whose name counts up on
        # each load) is not the trainer's and not part of the model.
        generator.pop("compile_config", None)
        return {**super().get_config(), "generator": generator,
                "backbone": keras.saving.serialize_keras_object(self.backbone)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        return cls(generator, backbone, **config)

    def discriminate(self, inputs, training=False):
        """The logit [B, L] (float32) that each word piece of `inputs` is a replacement."""
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        logits = self.detection_logits(self.detection_hidden(sequence))
        return keras.ops.cast(keras.ops.squeeze(logits, -1), "float32")


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

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        if config.objective == "clm":
            # What a causal LM is scored on: its guess of each next word piece.
            self.validation_metric = ("next_piece_accuracy", "max")

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
        # One uniform number per predicted position: ELECTRA's generator samples its
        # replacement by inverting its distribution's CDF there (replica- and resume-exact).
        noise = tf.random.stateless_uniform([batch, predictions], seed + 3)
        return {**self.backbone_inputs(masked), "mask_positions": positions, "mask_ids": targets,
                "mask_weights": weights, "sample_noise": noise}

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
            if self.config.objective == "clm":  # every next word piece is a target: no masks
                return self.backbone_inputs(self.trim(batch))
            return self.mask(self.trim(batch, self.max_predictions), tf.stack([tf.cast(seed, tf.int64), index]))

        return ds.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Model.
    def build_model(self):
        if self.config.objective == "electra":
            generator = keras_hub.models.BertMaskedLM(
                self.backbone(self.config.generator_sizes(), name="generator_backbone"), preprocessor=None,
                name="generator")
            return ElectraPretrainer(generator, self.backbone(), name="bert_electra")
        return keras_hub.models.BertMaskedLM(self.backbone(), preprocessor=None, name="bert_mlm")

    @staticmethod
    def _inputs(batch):
        return {k: batch[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}

    def loss(self, model, batch, training):
        """Mean cross-entropy over each example's predicted positions; with electra, the
        generator's plus `detection_weight` times the mean replaced-token cross-entropy over
        each example's word pieces."""
        if self.config.objective == "electra":
            terms = self._electra_terms(model, batch, training)
            return terms["masked_lm"] + self.config.detection_weight * terms["detection"]
        if self.config.objective == "clm":
            terms = self._next_piece_terms(model, batch, training)
            return masked_mean(terms["cross_entropy"], terms["weights"])
        return self._masked_lm_loss(model(self._inputs(batch), training=training), batch)

    @staticmethod
    def _next_piece_logits(model, batch, training):
        """Causal LM: (logits [B, L-1, V] float32 of each next word piece, the targets [B, L-1],
        their weights [B, L-1]: 1 where the target is not padding)."""
        sequence = causal_sequence_output(model.backbone, batch, training=training)
        ids = batch["token_ids"]
        shape = tf.shape(ids)
        positions = tf.broadcast_to(tf.range(shape[1] - 1)[None], [shape[0], shape[1] - 1])
        logits = model.masked_lm_head(sequence, mask_positions=positions)
        weights = tf.cast(batch["padding_mask"][:, 1:], tf.float32)
        return keras.ops.cast(logits, "float32"), ids[:, 1:], weights

    def _next_piece_terms(self, model, batch, training):
        """Causal LM: `_next_piece_logits`' logits, targets and weights, and the cross-entropy
        of each next word piece [B, L-1] (the training loss reads only it and the weights)."""
        logits, targets, weights = self._next_piece_logits(model, batch, training)
        ce = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return {"logits": logits, "targets": targets, "weights": weights, "cross_entropy": ce}

    @staticmethod
    def replace_masked(batch, sampled):
        """(ids [B, L], replaced [B, L] 0/1): the original text with each position chosen for
        prediction holding its `sampled` word piece [B, P], and where that differs from the
        original (a sample equal to the original counts as original, as in the paper)."""
        ids, targets = batch["token_ids"], batch["mask_ids"]
        chosen = batch["mask_weights"] > 0
        batch_size, predictions = tf.shape(ids)[0], tf.shape(targets)[1]
        rows = tf.broadcast_to(tf.range(batch_size)[:, None], [batch_size, predictions])
        where = tf.stack([rows, batch["mask_positions"]], -1)
        # Positions not chosen for prediction get their original word piece back either way.
        corrupted = tf.tensor_scatter_nd_update(ids, where, tf.where(chosen, sampled, targets))
        replaced = tf.scatter_nd(where, tf.cast(chosen & (sampled != targets), tf.float32), tf.shape(ids))
        return corrupted, replaced

    @staticmethod
    def _masked_lm_loss(logits, batch):
        logits = keras.ops.cast(logits, "float32")
        ce = keras.losses.sparse_categorical_crossentropy(batch["mask_ids"], logits, from_logits=True)
        return masked_mean(ce, batch["mask_weights"])

    def _electra_terms(self, model, batch, training):
        """ELECTRA's per-example losses, and its detection's correct and counted word pieces.

        The generator's samples (no gradient flows through them) replace the masked positions
        of the original text; the backbone then labels each word piece replaced or not. A
        sample equal to the original counts as original, as in the paper.
        """
        logits = model(self._inputs(batch), training=training)
        masked_lm = self._masked_lm_loss(logits, batch)
        corrupted, replaced = self.replace_masked(batch, sample_by_inversion(logits, batch["sample_noise"]))
        detection_logits = model.discriminate(self.backbone_inputs(corrupted), training=training)
        tokens = tf.cast(self.ordinary_pieces(corrupted), tf.float32)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(replaced, detection_logits)
        count = tf.reduce_sum(tokens, -1)
        correct = tf.cast(tf.equal(tf.cast(detection_logits > 0, tf.float32), replaced), tf.float32) * tokens
        return {"masked_lm": masked_lm, "detection": masked_mean(ce, tokens), "logits": logits,
                "detection_correct": tf.reduce_sum(correct, -1), "detection_count": count,
                "replaced": tf.reduce_sum(replaced * tokens, -1)}

    # Results.
    def evaluate(self, model, source, split):
        """Accuracy of the predicted word pieces at the masked positions."""
        limit = self.config.eval_examples
        ds = self.dataset(source, split, 64, training=False)
        if limit:
            ds = ds.take(math.ceil(limit / 64))
        if self.config.objective == "clm":
            return self._evaluate_next_piece(model, ds)
        correct = total = 0.0
        detection = np.zeros(4)  # correct, counted, replaced, summed cross-entropy
        for batch in ds:
            if self.config.objective == "electra":
                # One pass gives the generator's logits and the backbone's calls on its samples.
                terms = self._detection_fn(model)(batch)
                logits = terms["logits"]
                detection += [float(tf.reduce_sum(t)) for t in (
                    terms["detection_correct"], terms["detection_count"], terms["replaced"],
                    terms["detection"] * terms["detection_count"])]
            else:
                logits = self._logits_fn(model)(self._inputs(batch))
            predicted = tf.math.top_k(tf.cast(logits, tf.float32), 1).indices[..., 0]
            weights = batch["mask_weights"]
            correct += float(tf.reduce_sum(tf.cast(predicted == batch["mask_ids"], tf.float32) * weights))
            total += float(tf.reduce_sum(weights))
        metrics = {"masked_accuracy": correct / max(total, 1.0), "masked_tokens": total}
        if self.config.objective == "electra":
            # The backbone's replaced/original calls on every word piece: always answering
            # "original" scores 1 - replaced_share, and knowing only that share gives a
            # cross-entropy of its binary entropy.
            count = max(detection[1], 1.0)
            metrics.update(detection_accuracy=detection[0] / count, detection_loss=detection[3] / count,
                           replaced_share=detection[2] / count)
        return metrics

    def _evaluate_next_piece(self, model, ds):
        """Causal LM: accuracy and mean cross-entropy of each next word piece's guess."""
        fn = self._next_piece_fn(model)
        correct = total = loss = 0.0
        for batch in ds:
            c, t, l = (float(v) for v in fn(batch))
            correct, total, loss = correct + c, total + t, loss + l
        count = max(total, 1.0)
        return {"next_piece_accuracy": correct / count, "next_piece_loss": loss / count,
                "predicted_tokens": total}

    @functools.lru_cache(maxsize=None)
    def _next_piece_fn(self, model):
        def counts(batch):
            t = self._next_piece_terms(model, batch, training=False)
            weights = t["weights"]
            hit = tf.cast(tf.argmax(t["logits"], -1, output_type=tf.int32) == t["targets"], tf.float32)
            return tf.reduce_sum(hit * weights), tf.reduce_sum(weights), tf.reduce_sum(t["cross_entropy"] * weights)

        return tf.function(counts, reduce_retracing=True)

    @functools.lru_cache(maxsize=None)
    def _detection_fn(self, model):
        return tf.function(lambda batch: self._electra_terms(model, batch, training=False),
                           reduce_retracing=True)

    def predict(self, model, inputs):
        """Fills each `[MASK]` of the inputs with the model's most likely word piece (a causal
        LM's: from the text before it, the masks filled left to right)."""
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
            if self.config.objective == "clm":
                best = self._fill_left_to_right(model, ids, positions)
            else:
                inputs_ = self.backbone_inputs(tf.constant([ids]))
                padded = (positions + [0] * self.max_predictions)[:self.max_predictions]
                logits = self._logits_fn(model)({**inputs_, "mask_positions": tf.constant([padded])})
                best = np.asarray(keras.ops.convert_to_numpy(logits))[0].argmax(-1)
            words = [w.vocabulary[t].removeprefix("##") for t in best[:len(positions)]]
            filled = parts[0]
            for k, part in enumerate(parts[1:]):
                filled += (words[k] if k < len(words) else MASK_TEXT) + part
            outputs.append(filled)
        return outputs

    def _fill_left_to_right(self, model, ids, positions):
        """Causal LM: the guesses at `positions` of the ids [L], each from the word pieces before
        it, earlier guesses included."""
        ids, guesses = list(ids), []
        for p in positions:
            best = self._next_piece_guess_fn(model)(self.backbone_inputs(tf.constant([ids])))
            ids[p] = int(best[0, p - 1])
            guesses.append(ids[p])
        return guesses

    @functools.lru_cache(maxsize=None)
    def _next_piece_guess_fn(self, model):
        def guess(batch):
            logits = self._next_piece_logits(model, batch, training=False)[0]
            return tf.argmax(logits, -1, output_type=tf.int32)

        return tf.function(guess, reduce_retracing=True)

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
