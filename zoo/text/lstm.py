"""`keras.layers.LSTM` with its input projection taken out of the time loop.

Where cuDNN is not used (CPUs, TPUs, and masks or settings cuDNN refuses), Keras's LSTM runs its
cell once per time step, and the cell multiplies that step's input by the input kernel inside
the loop: `T` small `[batch, input] x [input, 4 units]` products, each waiting for the one
before, and as many in the gradient. Those products do not depend on the state, so this layer
does them as one `[batch x T, input] x [input, 4 units]` product before the loop (and one in
the gradient), and the loop keeps only the recurrent product `h x recurrent_kernel`. Under
mixed precision the recurrent kernel is cast to the compute dtype once, before the loop, not
at every step (the cast was 19% of lstm_lm's op time); the price: TensorFlow sums that
kernel's gradient over the time steps in the compute dtype (bfloat16) instead of float32,
which left lstm_lm's and the translator's validation figures level with float32
(WORKSPACE_NOTES.md, "Session 12"). Otherwise the same maths (the bias is added once to the
projected inputs), the same variables, masking and `go_backwards` (Keras's `backend.rnn` runs
the loop); checkpoints and `.keras` files of the same shapes load either way. With cell
dropout or recurrent dropout, or where Keras would take cuDNN, it is Keras's LSTM unchanged.
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

    def _cudnn_possible(self):
        """Whether Keras's LSTM would try its cuDNN kernel here (a GPU and cuDNN's settings)."""
        cell = self.cell
        return self.use_cudnn == "auto" and keras_backend.backend() == "tensorflow" and keras_backend.cudnn_ok(
            cell.activation, cell.recurrent_activation, self.unroll, cell.use_bias)
