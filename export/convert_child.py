"""Child process: converts a frozen SavedModel signature to TFLite.

Usage: python -m export.convert_child SAVED_MODEL SIGNATURE OUT.tflite OP_SETS QUANTIZE [REPRESENTATIVE.npz]

OP_SETS is a comma-separated list of `tf.lite.OpsSet` names, plus CUSTOM to allow custom ops.
QUANTIZE is none, float16, dynamic (int8 weights, float activations) or int8 (full integer,
calibrated on the rows of REPRESENTATIVE.npz, one array per input name).
"""

import sys

import numpy as np
import tensorflow as tf

try:  # registers tensorflow-text's ops, which a string-in model's graph holds
    import tensorflow_text  # noqa: F401
except ImportError:
    pass


def main(saved_model, signature, out, op_sets, quantize="none", representative=None):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[signature])
    op_sets = op_sets.split(",")
    converter.allow_custom_ops = "CUSTOM" in op_sets
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, s) for s in op_sets if s != "CUSTOM"]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize in ("int8", "int8_io"):
        rows = dict(np.load(representative, allow_pickle=True))  # string inputs are object arrays; our own file

        def dataset():
            for i in range(len(next(iter(rows.values())))):
                yield {k: v[i:i + 1] for k, v in rows.items()}

        converter.representative_dataset = dataset
        if quantize == "int8_io":  # integer inputs and outputs, as Edge TPUs require
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with open(out, "wb") as f:
        f.write(converter.convert())


if __name__ == "__main__":
    main(*sys.argv[1:])
