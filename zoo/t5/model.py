"""T5 on keras-hub's `T5Backbone`: teacher-forced logits, and a cached decoding step for the
zoo's shared searches (`zoo/text/decoding.py`).

The Keras model is keras-hub's `T5Seq2SeqLM` without a preprocessor (ids in, logits out).
Its `call_decoder_with_cache` updates a fixed-size self-attention key/value cache in place
(`slice_update` at the step's index), so a token costs the same at every position and the
loop freezes into TFLite with static shapes. Its `generate` is not used: its samplers keep a
dynamic prompt and draw with `random.categorical`.

Ids: 0 pads and starts the decoder, 1 ends a sequence, 2 is unknown (T5's).

Example:
    >>> import numpy as np
    >>> lm = build(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
    ...            intermediate_dim=16, key_value_dim=4, dropout=0.0)
    >>> source = np.array([[5, 6, 7, 1, 0]], "int32")
    >>> tuple(greedy(lm, source, max_length=6).shape)
    (1, 6)
"""

import keras
import keras_hub
from keras import ops

from zoo.text import decoding, precision

PAD, EOS, UNK = 0, 1, 2
START = PAD  # T5's decoder starts from the pad id


def build(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, key_value_dim=0,
          dropout=0.1, activation="relu", use_gated_activation=False, tie_embedding_weights=True,
          name="t5"):
    """A `T5Seq2SeqLM` (no preprocessor) around a new `T5Backbone`."""
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim, key_value_dim=key_value_dim or None, dropout=dropout,
        activation=activation, use_gated_activation=use_gated_activation,
        tie_embedding_weights=tie_embedding_weights, name="backbone")
    # keras-hub 0.32 builds the token embedding with `TruncatedNormal(1.0)`, which is mean 1.0
    # and stddev 0.05: every token starts as nearly the same vector, and from scratch the
    # model learns next to nothing (a copy task stayed at chance for 300 steps). T5's own
    # initialization is normal with stddev 1.0.
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(keras.initializers.RandomNormal(stddev=1.0)(embeddings.shape, embeddings.dtype))
    return keras_hub.models.T5Seq2SeqLM(backbone=precision.float32_islands(backbone), preprocessor=None, name=name)


def model_inputs(input_ids, decoder_ids, labels):
    """The model's inputs: the decoder reads the start id then the targets shifted right;
    its padding mask follows the labels (the start id is the pad id)."""
    input_ids, decoder_ids, labels = (ops.convert_to_tensor(x, "int32") for x in (input_ids, decoder_ids, labels))
    return {
        "encoder_token_ids": input_ids,
        "encoder_padding_mask": ops.cast(ops.not_equal(input_ids, PAD), "int32"),
        "decoder_token_ids": decoder_ids,
        "decoder_padding_mask": ops.cast(ops.not_equal(labels, PAD), "int32"),
    }


def _head_dim(lm):
    b = lm.backbone
    return b.key_value_dim or b.hidden_dim // b.num_heads


def encoder_context(lm, input_ids):
    """What every decoding step reads and none changes: the encoder's output, its padding
    mask and the cross-attention keys and values of every decoder layer
    ([B, layers, 2, S, heads, head_dim], the layout `call_decoder_with_cache` reads)."""
    mask = ops.cast(ops.not_equal(input_ids, PAD), "int32")
    encoded = lm.call_encoder(input_ids, mask)
    b = lm.backbone
    shape = (ops.shape(input_ids)[0], ops.shape(input_ids)[1], b.num_heads, _head_dim(lm))
    cross = []
    for layer in b.decoder_transformer_layers:
        attention = layer.cross_attention
        keys = ops.reshape(attention.key_projector(encoded), shape)
        values = ops.reshape(attention.value_projector(encoded), shape)
        cross.append(ops.stack([keys, values], axis=1))
    return encoded, mask, ops.stack(cross, axis=1)


def empty_cache(lm, batch, max_length):
    """The self-attention cache of every decoder layer, zeros: [B, layers, 2, T, heads, head_dim]."""
    b = lm.backbone
    return ops.zeros((batch, b.num_layers, 2, max_length, b.num_heads, _head_dim(lm)), lm.compute_dtype)


def step(lm):
    """The decoding step `(tokens, t, cache, context) -> (logits, cache)` of `lm`."""

    def decode_step(tokens, t, cache, context):
        encoded, mask, cross = context
        logits, _, cache, _ = lm.call_decoder_with_cache(
            encoder_hidden_states=encoded, encoder_padding_mask=mask,
            decoder_token_ids=ops.expand_dims(tokens, 1), self_attention_cache=cache,
            self_attention_cache_update_index=t, cross_attention_cache=cross,
            cross_attention_cache_update_index=None)
        return logits[:, 0], cache

    return decode_step


def _start(lm, input_ids, max_length):
    batch = ops.shape(input_ids)[0]
    return empty_cache(lm, batch, max_length), encoder_context(lm, input_ids), batch


def greedy(lm, input_ids, max_length):
    """Greedy decoding: ids [B, max_length], each row ending in the end id then pads."""
    cache, context, batch = _start(lm, input_ids, max_length)
    return decoding.greedy_search(step(lm), cache, context, batch, max_length, START, EOS, PAD)


def beam(lm, input_ids, max_length, beam_size=4, length_penalty=0.6):
    """Beam search (`decoding.beam_search`): ids [B, max_length]."""
    cache, context, batch = _start(lm, input_ids, max_length)
    return decoding.beam_search(step(lm), cache, context, batch, max_length, START, EOS, PAD, beam_size,
                                length_penalty, vocab_size=lm.backbone.vocabulary_size)


def sample(lm, input_ids, max_length, seed=0, temperature=1.0, top_k=0, top_p=1.0):
    """Sampling (`decoding.sample`): ids [B, max_length]; the same seed, the same ids."""
    cache, context, batch = _start(lm, input_ids, max_length)
    return decoding.sample(step(lm), cache, context, batch, max_length, START, EOS, PAD, seed, temperature,
                           top_k, top_p)


def logits(lm, inputs, training=False):
    """Teacher-forced logits [B, T, vocab] in float32 (the loss's precision)."""
    return ops.cast(lm(inputs, training=training), "float32")
