"""Child process: converts a frozen SavedModel signature to TFLite.

Usage: python -m export.convert_child SAVED_MODEL SIGNATURE OUT.tflite OP_SETS
"""

import sys

import tensorflow as tf


def main(saved_model, signature, out, op_sets):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[signature])
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, s) for s in op_sets.split(",")]
    with open(out, "wb") as f:
        f.write(converter.convert())


if __name__ == "__main__":
    main(*sys.argv[1:5])
