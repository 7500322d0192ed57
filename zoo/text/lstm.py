"""`keras.layers.LSTM` with its input projection taken out of the time loop and, in training
on TensorFlow, its gradient written out.

Where cuDNN is not used (CPUs, TPUs, and masks or settings cuDNN refuses), Keras's LSTM runs its
cell once per time step, and the cell multiplies that step's input by the input kernel inside
the loop: `T` small `[batch, input] x [input, 4 units]` products, each waiting for the one
before, and as many in the gradient. Those products do not depend on the state, so this layer
does them as one `[batch x T, input] x [input, 4 units]` product before the loop (and one in
the gradient), and the loop keeps only the recurrent product `h x recurrent_kernel`. Under
mixed precision the recurrent kernel is cast to the compute dtype once, before the loop, not
at every step (the cast was 19% of lstm_lm's op time).

In training (TensorFlow, the standard tanh/sigmoid gates) the recurrence runs in `_tf_lstm`,
whose gradient loop is written out instead of left to TensorFlow's generic `while` gradient
(see there): the recurrent kernel's gradient is one product after the loop (oneDNN
accumulates it in float32 and rounds once), not a running bfloat16 sum over the steps.
Inference (evaluation, decoding, SavedModel and TFLite exports) runs Keras's `backend.rnn`
with the same step. Otherwise the same maths (the bias is added once to the projected
inputs), the same variables, masking and `go_backwards`; checkpoints and `.keras` files of
the same shapes load either way. With cell dropout or recurrent dropout, or where Keras would
take cuDNN, it is Keras's LSTM unchanged.
"""

import keras
from keras import ops
from keras.src import backend as keras_backend  # `rnn`, the loop Keras's own RNN layers run (not public)


@keras.saving.register_keras_serializable(package="zoo")
class LSTM(keras.layers.LSTM):
    """A drop-in `keras.layers.LSTM` (same arguments) whose input projection runs once over the
    whole sequence where Keras would run it once per step (see the module docstring)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if cell.dropout or cell.recurrent_dropout or self.use_cudnn is True or self._cudnn_possible():
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        projected = ops.matmul(sequences, cell.kernel)
        if cell.use_bias:
            projected = projected + cell.bias
        # Read (and, under mixed precision, cast to the compute dtype) once, not every step.
        recurrent_kernel = ops.cast(cell.recurrent_kernel, self.compute_dtype)
        if training and self._own_gradient_possible():
            return _tf_lstm(projected, recurrent_kernel, list(initial_state), mask, self.go_backwards,
                            self.zero_output_for_mask, self.return_sequences)

        def step(inputs, states):
            h, c = states
            z = ops.split(inputs + ops.matmul(h, recurrent_kernel), 4, axis=-1)
            c, o = cell._compute_carry_and_output_fused(z, c)  # noqa: SLF001  (the cell's own gate maths)
            h = o * cell.activation(c)
            return h, [h, c]

        return keras_backend.rnn(step, projected, list(initial_state), go_backwards=self.go_backwards, mask=mask,
                                 unroll=self.unroll, input_length=sequences.shape[1],
                                 zero_output_for_mask=self.zero_output_for_mask,
                                 return_all_outputs=self.return_sequences)

    def _own_gradient_possible(self):
        """Whether training takes `_tf_lstm` (TensorFlow, the standard gates, a loop)."""
        cell = self.cell
        return (keras_backend.backend() == "tensorflow" and not self.unroll
                and cell.activation is keras.activations.tanh
                and cell.recurrent_activation is keras.activations.sigmoid)

    def _cudnn_possible(self):
        """Whether Keras's LSTM would try its cuDNN kernel here (a GPU and cuDNN's settings)."""
        cell = self.cell
        return self.use_cudnn == "auto" and keras_backend.backend() == "tensorflow" and keras_backend.cudnn_ok(
            cell.activation, cell.recurrent_activation, self.unroll, cell.use_bias)


def _tf_lstm(projected, kernel, initial_state, mask, go_backwards, zero_output_for_mask, return_sequences):
    """Keras's `backend.rnn` results `(last output, outputs, [h, c])` of the LSTM recurrence over
    `projected` (`x W + b`, `[batch, T, 4 units]`), with its gradient written out (TensorFlow).

    TensorFlow differentiates a `while` loop generically: the forward loop pushes every
    intermediate to a list, the gradient loop pops them, the gradient of the loop's input list
    starts as a zero list of its whole size (`ZerosLike`, 9% of the peer-sized translator's
    op time), and the gradient of the recurrent kernel `K`, used at every step, is added to an
    accumulator at every step (`AddN`, 18% of lstm_lm's). Here the forward loop keeps the four
    gates, the cell's previous state, `tanh(c)` and the previous output state; the gradient
    loop gives each step's `dz` (the gradient of the gates' pre-activations, which is also
    `projected`'s) and carries `dh` and `dc`; and `dK = sum_t h_{t-1}^T dz_t` is one
    `[units, batch x T] x [batch x T, 4 units]` product after it.

    Masks follow `backend.rnn`: at a masked step the states carry over and the output is zero
    (`zero_output_for_mask`) or the previous output (zeros before the first). With
    `go_backwards` the steps run from the end, and the outputs come in that order, as Keras's.
    """
    import tensorflow as tf  # the TensorFlow backend only (the caller checks)

    def time_major(t):
        return tf.transpose(t, [1, 0, 2])

    x = time_major(projected)
    steps = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]  # static where known (XLA, FLOP counts)
    keep = None
    if mask is not None:
        keep = tf.cast(mask, tf.bool)
        keep = time_major(keep[:, :, None] if keep.shape.rank == 2 else keep)  # [T, batch, 1]
    if go_backwards:
        x = tf.reverse(x, [0])
        keep = None if keep is None else tf.reverse(keep, [0])
    carry_output = keep is not None and not zero_output_for_mask

    def array(element_shape):
        # Element shapes stated for XLA and TPUs; kept after reading (eager TensorArrays drop).
        return tf.TensorArray(x.dtype, size=steps, element_shape=element_shape, clear_after_read=False)

    @tf.custom_gradient
    def recurrence(x, kernel, h0, c0):
        units = tf.shape(h0)[-1]
        zeros = tf.zeros_like(h0)

        def body(t, h, c, previous, saved):
            z = x[t] + tf.matmul(h, kernel)
            i, f, g, o = tf.split(z, 4, axis=-1)
            i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
            new_c = f * c + i * g
            tanh_new_c = tf.tanh(new_c)
            new_h = o * tanh_new_c
            output = new_h
            if keep is not None:
                k = keep[t]
                output = tf.where(k, new_h, previous if carry_output else zeros)
                new_h, new_c = tf.where(k, new_h, h), tf.where(k, new_c, c)
            values = (tf.concat([i, f, g, o], -1), c, tanh_new_c, h, output)
            return t + 1, new_h, new_c, output, tuple(a.write(t, v) for a, v in zip(saved, values))

        # Per step: the gates, c_{t-1}, tanh(c_t), h_{t-1} and, with `return_sequences`, the output.
        saved = (array(x.shape[1:]),) + tuple(array(h0.shape) for _ in range(3 + return_sequences))
        _, h, c, last, saved = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), h0, c0, zeros, saved),
                                             maximum_iterations=steps)
        gates, c_before, tanh_c, h_before = saved[:4]
        result = saved[4].stack() if return_sequences else last

        def gradient(d_result, dh_last, dc_last):
            d_outputs = _or_zeros(d_result, result) if return_sequences else None

            def back(t, dh, dc, d_carried, dzs):
                t -= 1
                d_out = d_carried if d_outputs is None else d_outputs[t] + d_carried
                i, f, g, o = tf.split(gates.read(t), 4, axis=-1)
                tanh_new_c = tanh_c.read(t)
                d_new_h, d_new_c = d_out + dh, dc
                if keep is not None:
                    k = keep[t]
                    d_new_h, d_new_c = tf.where(k, d_new_h, zeros), tf.where(k, d_new_c, zeros)
                # SigmoidGrad(y, dy) = dy y (1 - y), TanhGrad(y, dy) = dy (1 - y^2): TensorFlow's own kernels.
                d_c_total = d_new_c + tf.raw_ops.TanhGrad(y=tanh_new_c, dy=d_new_h * o)
                dz = tf.concat([tf.raw_ops.SigmoidGrad(y=i, dy=d_c_total * g),
                                tf.raw_ops.SigmoidGrad(y=f, dy=d_c_total * c_before.read(t)),
                                tf.raw_ops.TanhGrad(y=g, dy=d_c_total * i),
                                tf.raw_ops.SigmoidGrad(y=o, dy=d_new_h * tanh_new_c)], -1)
                dh_before, dc_before = tf.matmul(dz, kernel, transpose_b=True), d_c_total * f
                if keep is not None:
                    dh_before, dc_before = tf.where(k, dh_before, dh), tf.where(k, dc_before, dc)
                    d_carried = tf.where(k, zeros, d_out) if carry_output else zeros
                else:
                    d_carried = zeros
                return t, dh_before, dc_before, d_carried, dzs.write(t, dz)

            start = zeros if return_sequences else _or_zeros(d_result, result)
            _, dh0, dc0, _, dzs = tf.while_loop(
                lambda t, *_: t > 0, back,
                (tf.convert_to_tensor(steps), _or_zeros(dh_last, h0), _or_zeros(dc_last, c0), start,
                 array(x.shape[1:])), maximum_iterations=steps)
            dz = dzs.stack()
            flat = tf.reshape(dz, [-1, 4 * units])
            d_kernel = tf.matmul(tf.reshape(h_before.stack(), [-1, units]), flat, transpose_a=True)
            return dz, d_kernel, dh0, dc0

        return (result, h, c), gradient

    result, h, c = recurrence(x, kernel, initial_state[0], initial_state[1])
    if return_sequences:
        return result[-1], time_major(result), [h, c]
    return result, result[:, None], [h, c]


def _or_zeros(gradient, like):
    import tensorflow as tf

    # An unused output's gradient may be None; a gathered one may come as IndexedSlices.
    return tf.zeros_like(like) if gradient is None else tf.convert_to_tensor(gradient)
