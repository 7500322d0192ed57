"""Float32 islands in mixed-precision models (`--config mixed_precision`, trainers/precision.py)."""

import keras
from keras_hub.src.models.t5.t5_layer_norm import T5LayerNorm  # not exported by keras_hub.layers
from keras_hub.src.models.t5.t5_multi_head_attention import T5MultiHeadAttention


def float32_islands(model):
    """Runs the numerically sensitive layers of a keras-hub backbone in float32 under mixed
    precision: the attention softmax of every Keras `MultiHeadAttention` (BERT), keras-hub's
    `T5LayerNorm` (its mean square would otherwise be taken in bfloat16) and the attention
    scores of keras-hub's `T5MultiHeadAttention`. Returns `model`.

    Under mixed_bfloat16 these run in the compute dtype and carry bfloat16's 8 significant bits
    (Keras's own `LayerNormalization` already computes in float32). Their inputs are cast up
    and their outputs cast back by the next layer, so the matrix products around them stay in
    bfloat16. T5's attention takes its softmax inside its own `call`, on scores of the query's
    dtype: its query projection and its attention dropout compute in float32, so the scores
    (`einsum` promotes the bfloat16 keys to float32), the position bias added to them (its
    table is read in bfloat16, then cast up), the softmax, the dropped-out weights and their
    product with the values are float32; the key, value, output and feed-forward products
    stay bfloat16. In float32 this changes nothing. Left as they are: attention layers without
    dropout take Keras's fused `dot_product_attention` (no separate softmax; BERT's presets all
    train with dropout).

    Example:
        >>> import keras
        >>> attention = keras.layers.MultiHeadAttention(2, 4, dropout=0.1, dtype="mixed_bfloat16")
        >>> x = keras.ops.ones((1, 3, 8))
        >>> def dtypes(outputs):
        ...     return [keras.backend.standardize_dtype(t.dtype) for t in outputs]
        >>> dtypes(attention(x, x, return_attention_scores=True))  # (output, probabilities)
        ['bfloat16', 'bfloat16']
        >>> dtypes(float32_islands(attention)(x, x, return_attention_scores=True))
        ['bfloat16', 'float32']
    """
    float32 = keras.DTypePolicy("float32")
    for layer in [model, *model._flatten_layers()]:  # noqa: SLF001 (Keras's own walk over sublayers)
        if isinstance(layer, keras.layers.MultiHeadAttention) and hasattr(layer, "_softmax"):
            layer._softmax.dtype_policy = float32  # noqa: SLF001
        elif isinstance(layer, T5LayerNorm):
            layer.dtype_policy = float32
        elif isinstance(layer, T5MultiHeadAttention):
            layer.query_projector.dtype_policy = float32
            layer.dropout_layer.dtype_policy = float32  # else it casts the weights back to bfloat16
    return model
