"""TFLite conversion of frozen functions, in child processes, and the LiteRT interpreter.

Variables read inside a `WHILE` body fail at run time in TFLite (`READ_VARIABLE ...
variable != nullptr`), so every function is frozen first: its variables become constants.
The TF 2.21 converter leaks memory on each `convert()` (tensorflow#122598), so each
conversion runs in a child process.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from export.errors import ConversionError, ExportError
from zoo import threads

BUILTINS = "TFLITE_BUILTINS"
# Not a TFLite op set: the converter's `allow_custom_ops`, for ops with kernels of their own
# (tensorflow-text's FastWordpieceTokenizer, FastBertNormalizer, ...), taken only when the
# builtins alone fail.
CUSTOM = "CUSTOM"
# Not an op set either: names the int8 model ai-edge-quantizer made from the float one.
AI_EDGE_QUANTIZER = "AI_EDGE_QUANTIZER"


def freeze(fn, signature_name, directory):
    """Saves `fn` with its variables frozen to constants as a SavedModel in `directory`."""
    concrete = fn.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    specs = tf.nest.flatten(concrete.structured_input_signature)
    names = [spec.name for spec in specs]
    if None in names or len(set(names)) != len(names):
        raise ExportError(f"{signature_name}: every input spec needs a unique name, got {names}.")

    def call(**kwargs):
        outputs = frozen(*[kwargs[n] for n in names])
        return tf.nest.pack_sequence_as(concrete.structured_outputs, outputs)

    module = tf.Module()
    module.fn = tf.function(call, input_signature=None).get_concrete_function(
        **dict(zip(names, specs))
    )
    tf.saved_model.save(module, directory, signatures={signature_name: module.fn})


INT8 = "TFLITE_BUILTINS_INT8"
# `sparse*`: the same as `none`/`dynamic`/`int8`, with the converter's sparse weight storage
# (`EXPERIMENTAL_SPARSITY`: a pruned tensor keeps only its non-zeros and their indices).
QUANTIZATIONS = ("none", "float16", "dynamic", "int8", "sparse", "sparse_dynamic", "sparse_int8")


def base_quantization(quantize):
    """The quantization of a variant without its sparse storage: `sparse_int8` -> `int8`."""
    if quantize == "sparse":
        return "none"
    return quantize.removeprefix("sparse_")


def convert(fn, signature_name, path, quantize="none", representative=None, int8_io=False, float_nodes=()):
    """Converts `fn` to a `.tflite` file at `path` with a signature named `signature_name`.

    Builtin ops first; custom ops (tensorflow-text's) only when a model needs them. For
    `quantize="int8"`, full-integer ops (`TFLITE_BUILTINS_INT8`) are tried first, calibrated
    on `representative` (dict of input name to rows); where some op has no integer kernel,
    the float builtins are allowed beside them. `float_nodes`: regular expressions matching
    tensor names whose ops the int8 model keeps in float (selective quantization with TF's
    `QuantizationDebugger`), for tensors whose range int8 cannot hold.

    Returns:
        The op sets the model was converted with.
    """
    tmp = tempfile.mkdtemp(prefix="zoo-tflite-")
    base = base_quantization(quantize)
    try:
        frozen_dir = os.path.join(tmp, "frozen")
        freeze(fn, signature_name, frozen_dir)
        out = os.path.join(tmp, "model.tflite")
        args = [quantize + ("_io" if base == "int8" and int8_io else "")]
        if base == "int8":
            np.savez(os.path.join(tmp, "representative.npz"), **representative)
            args += [os.path.join(tmp, "representative.npz"), "\t".join(float_nodes)]
        attempts = [(INT8,), (INT8, BUILTINS)] if base == "int8" else [(BUILTINS,)]
        attempts = [(ops, args) for ops in attempts + [ops + (CUSTOM,) for ops in attempts]]
        if base == "int8" and not int8_io:
            # Last: ai-edge-quantizer on the float model (it quantizes a WHILE loop's body,
            # where the converter's calibration crashes); the model keeps float inputs/outputs.
            attempts.append(((BUILTINS, AI_EDGE_QUANTIZER), [quantize.replace("int8", "int8_ai_edge"), args[1]]))
        for op_sets, child_args in attempts:
            proc = subprocess.run(
                [sys.executable, "-m", "export.convert_child", frozen_dir, signature_name, out,
                 ",".join(s for s in op_sets if s != AI_EDGE_QUANTIZER), *child_args],
                capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            if proc.returncode == 0:
                break
        else:
            how = (f"crashed with signal {-proc.returncode}" if proc.returncode < 0
                   else f"failed (exit {proc.returncode})")
            hint = ""
            if base == "int8":
                # Seen with TF 2.21: int8 calibration of a model with a WHILE decode loop dies
                # with SIGSEGV; float16 and dynamic-range quantization of the same model work.
                hint = (" Neither TF's int8 calibration nor ai-edge-quantizer could quantize this model "
                        "(the last attempt's output below); use float16 or dynamic.")
            lines = [line for line in proc.stderr.splitlines() if not line.startswith(("I0000", "W0000", "E0000"))]
            raise ConversionError(f"{os.path.basename(path)}: TFLite conversion ({quantize}) {how}.{hint}\n"
                                  + "\n".join(lines[-30:]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.move(out, path)
        return list(op_sets)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def custom_op_registerers():
    """Registration functions of the custom op kernels the exporter knows: tensorflow-text's
    (an Android app links the same kernels; README "TFLite")."""
    from tensorflow_text import tflite_registrar

    return list(tflite_registrar.SELECT_TFTEXT_OPS)


def interpreter(path, num_threads=None, **kwargs):
    """A LiteRT interpreter with tensorflow-text's custom ops registered, running on
    `num_threads` threads (default: `default_threads()`). XNNPACK, the default delegate, takes
    the interpreter's thread count."""
    from ai_edge_litert.interpreter import InterpreterWithCustomOps

    return InterpreterWithCustomOps(model_path=path, custom_op_registerers=custom_op_registerers(),
                                    num_threads=num_threads or default_threads(), **kwargs)


def default_threads():
    """The interpreter threads the exporter measures with: TensorFlow's intra-op threads as
    `zoo train` sets them (`zoo.threads.choose`: the usable cores, or TF_NUM_INTRAOP_THREADS),
    as many as the SavedModel beside it gets; with ZOO_THREADS=tf, the usable cores."""
    return threads.choose()[0] or threads.usable_cores()


def _ops(path):
    """(operator name, dtype of its first output) of each op of the model at `path`."""
    from ai_edge_litert.interpreter import OpResolverType

    # Without default delegates: XNNPACK would replace the ops it takes with DELEGATE nodes.
    interp = interpreter(path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    return [(op["op_name"], dtypes.get(op["outputs"][0], "none") if len(op["outputs"]) else "none")
            for op in interp._get_ops_details()]


def op_names(path):
    """The distinct operators of the model at `path`."""
    return sorted({name for name, _ in _ops(path)})


def op_output_types(path):
    """{operator: {output dtype: count}}: which ops of a quantized model run in integer."""
    counts = {}
    for name, dtype in _ops(path):
        counts.setdefault(name, {}).setdefault(dtype, 0)
        counts[name][dtype] += 1
    return counts


def uses_xnnpack(path, signature):
    """Whether the interpreter's default XNNPACK delegate takes the model at `path`: it refuses
    sparse hybrid (`sparse_dynamic`) fully connected layers, which then run on TFLite's own
    kernels (`signature_runner` falls back to them). Tried on one all-zero input."""
    runner = interpreter(path).get_signature_runner(signature)
    zeros = {name: np.zeros(d["shape"], d["dtype"]) for name, d in runner.get_input_details().items()}
    try:
        runner(**zeros)
        return True
    except RuntimeError as e:
        if "XNNPack" not in str(e):
            raise
        return False


def signature_runner(path, signature, xnnpack=None, num_threads=None):
    """A signature runner of the model at `path`, on XNNPACK where it takes the model
    (`xnnpack`: whether it does, when the caller knows already), on `num_threads` threads
    (`interpreter`)."""
    from ai_edge_litert.interpreter import OpResolverType

    if uses_xnnpack(path, signature) if xnnpack is None else xnnpack:
        return interpreter(path, num_threads).get_signature_runner(signature)
    return interpreter(path, num_threads,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                       ).get_signature_runner(signature)


def run_rows(path, signature, inputs, xnnpack=None, num_threads=None):
    """Runs a batch-1 TFLite signature over each row of `inputs` (dict of arrays), on XNNPACK
    where it takes the model (`signature_runner`), on `num_threads` threads (`interpreter`).

    Returns:
        (dict of output name to the rows' outputs stacked, median milliseconds per row).
    """
    runner = signature_runner(path, signature, xnnpack, num_threads)
    in_details, out_details = runner.get_input_details(), runner.get_output_details()
    # Integer inputs/outputs of a float signal (--int8_io): quantize on the way in,
    # dequantize on the way out, with the model's own scale and zero point.
    inputs = {k: _quantize(v, in_details[k]) for k, v in inputs.items()}
    rows = len(next(iter(inputs.values())))
    outputs, times = [], []
    for i in range(rows):
        start = time.perf_counter()
        outputs.append(runner(**{k: v[i:i + 1] for k, v in inputs.items()}))
        times.append(1000 * (time.perf_counter() - start))
    stacked = {k: _dequantize(np.concatenate([o[k] for o in outputs]), out_details[k]) for k in outputs[0]}
    return stacked, sorted(times)[rows // 2]


def _quantize(values, detail):
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale and np.asarray(values).dtype.kind == "f":
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(values / scale + zero), info.min, info.max).astype(detail["dtype"])
    return values


def _dequantize(values, detail):
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        return ((values.astype(np.float32) - zero) * scale).astype(np.float32)
    return values
