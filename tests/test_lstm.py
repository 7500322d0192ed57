"""The zoo's LSTM (input projection out of the time loop) against Keras's own LSTM."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.text.lstm import LSTM


# Where Keras would take cuDNN (a TensorFlow GPU) the zoo's LSTM is Keras's: these compare
# the CPU/TPU path.
pytestmark = pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="cuDNN path on a GPU")


def _pair(**kwargs):
    """A Keras LSTM and the zoo's, built with the same weights."""
    keras.utils.set_random_seed(0)
    theirs, ours = keras.layers.LSTM(6, **kwargs), LSTM(6, **kwargs)
    theirs.build((None, None, 5))
    ours.build((None, None, 5))
    ours.set_weights(theirs.get_weights())
    return theirs, ours


@pytest.mark.parametrize("compiled", ["eager", "graph", "xla"])
@pytest.mark.parametrize("kwargs", [dict(return_sequences=True, return_state=True),
                                    dict(return_sequences=False, go_backwards=True),
                                    dict(return_sequences=True, zero_output_for_mask=True),
                                    # The translator's backward encoder (inside `Bidirectional`).
                                    dict(return_sequences=True, go_backwards=True, zero_output_for_mask=True,
                                         return_state=True),
                                    dict(return_sequences=False, return_state=True, masked=False),
                                    dict(return_sequences=True, return_state=True, only_first=True)])
def test_outputs_and_gradients_equal_keras_lstm_with_a_mask(kwargs, compiled):
    # In training the zoo's LSTM takes its own gradient (`_tf_lstm`); against Keras's, through
    # masks (rows of 7, 4 and 1 steps), backwards, zero outputs, the initial states and the
    # inputs; eager, traced with unknown batch and time sizes, and under XLA; `only_first`:
    # the states reach no loss (their gradients come as None or zeros).
    kwargs = dict(kwargs)
    masked, only_first = kwargs.pop("masked", True), kwargs.pop("only_first", False)
    theirs, ours = _pair(**kwargs)
    rng = np.random.RandomState(1)
    x = tf.constant(rng.normal(size=(3, 7, 5)).astype("float32"))
    h0, c0 = (tf.constant(rng.normal(size=(3, 6)).astype("float32")) for _ in range(2))
    mask = tf.constant(np.arange(7)[None, :] < np.array([[7], [4], [1]])) if masked else tf.ones((3, 7), tf.bool)
    weights = tf.constant(rng.normal(size=(3, 7, 6)).astype("float32"))

    def run(layer, x, h0, c0, mask):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            out = tf.nest.flatten(layer(x, mask=mask if masked else None, initial_state=[h0, c0], training=True))
            # Unequal weights per output position, so every position's gradient counts.
            loss = sum(tf.reduce_sum(tf.square(o) * (weights if o.shape.rank == 3 else weights[:, 0]))
                       for o in (out[:1] if only_first else out))
        return out, tape.gradient(loss, layer.trainable_weights + [x, h0, c0])

    specs = [tf.TensorSpec([None, None, 5]), tf.TensorSpec([None, 6]), tf.TensorSpec([None, 6]),
             tf.TensorSpec([None, None], tf.bool)]
    results = []
    for layer in (theirs, ours):
        if compiled == "eager":
            results.append(run(layer, x, h0, c0, mask))
        else:
            traced = tf.function(lambda *args, layer=layer: run(layer, *args), jit_compile=compiled == "xla",
                                 input_signature=specs if compiled == "graph" else None)
            results.append(traced(x, h0, c0, mask))
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_the_projection_leaves_the_loop():
    _, ours = _pair(return_sequences=True)

    @tf.function
    def run(x):
        return ours(x)

    graph = run.get_concrete_function(tf.TensorSpec((2, 9, 5))).graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    assert len(loops) == 1
    body = graph._functions[loops[0].get_attr("body").name].graph  # noqa: SLF001
    inside = [op for op in body.get_operations() if op.type == "MatMul"]
    outside = [op for op in graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2", "Einsum")
               and op.inputs[1].shape.as_list() == [5, 24]]
    assert len(inside) == 1 and inside[0].inputs[1].shape.as_list() == [6, 24]  # h x recurrent_kernel only
    assert len(outside) == 1  # x x kernel, once for all 9 steps


def test_in_training_the_recurrent_kernel_gradient_is_one_product_after_the_loops():
    # TensorFlow's generic loop gradient adds a [units, 4 units] kernel gradient to an
    # accumulator at every step; the zoo's gradient loop makes none, and one product after it.
    _, ours = _pair(return_sequences=True)

    @tf.function
    def gradient(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(ours(x, training=True))
        return tape.gradient(loss, ours.trainable_weights)

    graph = gradient.get_concrete_function(tf.TensorSpec((2, 9, 5))).graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    assert len(loops) == 2  # the forward loop and the gradient loop
    for loop in loops:
        body = graph._functions[loop.get_attr("body").name].graph  # noqa: SLF001
        assert not [op for op in body.get_operations() if op.type in ("MatMul", "AddN", "AddV2")
                    and op.outputs[0].shape.as_list() == [6, 24]]
    assert len([op for op in graph.get_operations()
                if op.type == "MatMul" and op.outputs[0].shape.as_list() == [6, 24]]) == 1


def test_with_dropout_it_is_keras_lstm_and_it_round_trips_through_keras_files(tmp_path):
    layer = LSTM(4, dropout=0.5, return_sequences=True)
    x = tf.ones((2, 3, 5))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec((2, 3, 5))).graph
    loop = next(op for op in graph.get_operations() if op.type in ("While", "StatelessWhile"))
    body = graph._functions[loop.get_attr("body").name].graph  # noqa: SLF001
    # Keras's own loop: the dropped-out input product stays inside it.
    assert [op.inputs[1].shape.as_list() for op in body.get_operations() if op.type == "MatMul"] == [[5, 16], [4, 16]]
    model = keras.Sequential([keras.Input((None, 5)), keras.layers.Bidirectional(LSTM(4, return_sequences=True))])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[0].forward_layer, LSTM) and isinstance(loaded.layers[0].backward_layer, LSTM)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


def test_in_mixed_bfloat16_it_stays_close_to_keras_lstm():
    # bfloat16 compute both sides, in training (the zoo's own gradient): the two order their
    # bfloat16 roundings differently, so the figures agree to bfloat16's precision.
    from trainers import precision

    with precision.policy_scope("mixed_bfloat16"):
        theirs, ours = _pair(return_sequences=True)
    x = tf.constant(np.random.RandomState(2).normal(size=(4, 12, 5)).astype("float32"))
    results = []
    for layer in (theirs, ours):
        with tf.GradientTape() as tape:
            out = layer(x, training=True)
            loss = tf.reduce_sum(tf.square(tf.cast(out, tf.float32)))
        assert out.dtype == tf.bfloat16
        results.append([out] + tape.gradient(loss, layer.trainable_weights))
    for a, b in zip(*results):
        a, b = np.asarray(tf.cast(a, tf.float32)), np.asarray(tf.cast(b, tf.float32))
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.05 * np.abs(a).max())
