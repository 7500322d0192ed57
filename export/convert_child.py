"""Child process: converts a frozen SavedModel signature to TFLite.

Usage: python -m export.convert_child SAVED_MODEL SIGNATURE OUT.tflite OP_SETS QUANTIZE [REPRESENTATIVE.npz
       [FLOAT_NODES]]

OP_SETS is a comma-separated list of `tf.lite.OpsSet` names, plus CUSTOM to allow custom ops.
QUANTIZE is none, float16, dynamic (int8 weights, float activations) or int8 (full integer,
calibrated on the rows of REPRESENTATIVE.npz, one array per input name), each optionally
prefixed `sparse_` (sparse weight storage; `sparse` alone: float32), or int8_ai_edge (the
same with ai-edge-quantizer on the float model, for models whose loop the converter's
calibration cannot run). FLOAT_NODES: regular
expressions (joined by a tab) searched in tensor names whose ops int8 keeps in float
(selective quantization).
"""

import re
import sys

import numpy as np
import tensorflow as tf

try:  # registers tensorflow-text's ops, which a string-in model's graph holds
    import tensorflow_text  # noqa: F401
except ImportError:
    pass


def _tensor_names(converter):
    """Tensor names of the float conversion (those selective quantization names nodes by)."""
    from ai_edge_litert.interpreter import Interpreter

    optimizations, converter.optimizations = converter.optimizations, []
    try:
        model = converter.convert()
    finally:
        converter.optimizations = optimizations
    return [t["name"] for t in Interpreter(model_content=model).get_tensor_details()]


def _ai_edge_int8(converter, signature, out, rows):
    """Full int8 (int8 weights and activations, calibrated on `rows`) by Google's
    ai-edge-quantizer on the float TFLite model: it quantizes the model's subgraphs directly,
    a WHILE loop's body included, where the TF converter's calibration crashes on the loop."""
    import tempfile

    from ai_edge_quantizer import calibrator, quantizer, recipe

    with tempfile.TemporaryDirectory() as folder:
        float_path = f"{folder}/float.tflite"
        with open(float_path, "wb") as f:
            f.write(converter.convert())
        qt = quantizer.Quantizer(float_path, recipe.static_wi8_ai8())
        samples = [{k: v[i:i + 1] for k, v in rows.items()} for i in range(len(next(iter(rows.values()))))]
        # Profiler-based: the default mode reads every tensor after each run, and tensors of a
        # WHILE body have no data then ("Tensor data is null").
        calibration = qt.calibrate({signature: samples}, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
        model = qt.quantize(calibration, enable_progress_report=False).quantized_model
    with open(out, "wb") as f:
        f.write(model)


def main(saved_model, signature, out, op_sets, quantize="none", representative=None, float_nodes=""):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[signature])
    op_sets = op_sets.split(",")
    converter.allow_custom_ops = "CUSTOM" in op_sets
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, s) for s in op_sets if s != "CUSTOM"]
    if quantize == "int8_ai_edge":
        return _ai_edge_int8(converter, signature, out, dict(np.load(representative, allow_pickle=True)))
    if quantize.startswith("sparse"):
        main(saved_model, signature, out, ",".join(op_sets), "none" if quantize == "sparse" else
             quantize.removeprefix("sparse_"), representative, float_nodes)
        # What `Optimize.EXPERIMENTAL_SPARSITY` runs after conversion (lite.py: `_mlir_sparsify`):
        # pruned tensors stored as their non-zeros and indices. Run on the finished model, it also
        # serves int8 models that selective quantization or ai-edge-quantizer wrote.
        from tensorflow.lite.python.convert import mlir_sparsify

        with open(out, "rb") as f:
            model = mlir_sparsify(f.read())
        with open(out, "wb") as f:
            f.write(model)
        return None
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
        patterns = [re.compile(p) for p in float_nodes.split("\t") if p]
        if patterns:
            nodes = [n for n in _tensor_names(converter) if any(p.search(n) for p in patterns)]
            if not nodes:
                raise SystemExit(f"no tensor name matches the float nodes {float_nodes!r}")
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset,
                                                                 debug_options=options)
            with open(out, "wb") as f:
                f.write(debugger.get_nondebug_quantized_model())
            return
    with open(out, "wb") as f:
        f.write(converter.convert())


if __name__ == "__main__":
    main(*sys.argv[1:])
