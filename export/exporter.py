"""The exporter: turns a zoo entry's `serving_functions` into checked artifacts.

Every artifact is run on held-out inputs and compared with the Keras model before the
export counts: SavedModels in a fresh process that imports only TensorFlow and
tensorflow-text (what TF Serving links), TFLite models with the LiteRT interpreter.

All or nothing: every artifact is built and checked in a local staging folder; only when all
pass are they published to `WORKDIR/export/` (any TF filesystem): the SavedModel as the next
version (`saved_model.publish`), each file by an atomic replace, the manifest last. A failed
export leaves the workdir's exports as they were.
"""

import dataclasses
import gc
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from export import saved_model, tflite
from export.errors import ExportError
from zoo import fileio

FORMATS = ("saved_model", "keras", "tflite")
REPRESENTATIVE_EXAMPLES = 200


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _to_numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


# Held-out checks run the serving signature this many inputs at a time: one call over all of
# them (872 SST-2 sentences through BERT) held ~1 GB of activations in the exporter's process.
CHECK_BATCH = 32


def _stack(parts):
    """One dict of arrays from a list of per-chunk output dicts."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _batched_outputs(fn, inputs):
    """`fn` over `inputs` (a list or array of serving inputs) in CHECK_BATCH chunks, stacked."""
    return _stack([_to_numpy(fn(tf.constant(inputs[i:i + CHECK_BATCH]))) for i in range(0, len(inputs), CHECK_BATCH)])


MAX_ABS_DIFF = 1e-4
# Float outputs may also differ by this share of their size: a few float32 rounding steps
# (2^-23 = 1.2e-7 each), so that sums (lstm_lm's summed nats of a window, hundreds) are not
# held to 1e-4, one or two rounding steps at their size, which another summation order crosses.
REL_DIFF = 1e-6


@dataclasses.dataclass(frozen=True)
class Verification:
    """How artifacts are checked against the Keras model (the `zoo export` flags).

    Attributes:
        verify: run every artifact on the held-out examples; when False, artifacts are
            written unchecked and their manifest entries say `"verified": false`.
        max_abs_diff: largest absolute difference of a float output of a float artifact
            (beyond `REL_DIFF` x the output's size).
        max_metric_drop: most task-metric points a quantized TFLite model may lose.
    """

    verify: bool = True
    max_abs_diff: float = MAX_ABS_DIFF
    max_metric_drop: float = 1.0


def _as_text(array):
    """An array of str from one of bytes (UTF-8) or str: numpy's `astype(str)` decodes bytes
    as ASCII and fails on "Café"."""
    decode = np.vectorize(lambda x: x.decode("utf-8") if isinstance(x, bytes) else str(x), otypes=[object])
    return decode(array).astype(str) if array.size else array.astype(str)


def _mismatches(expected, actual, max_abs_diff=MAX_ABS_DIFF):
    """Rows where two output dicts differ: exactly for tokens, labels and strings, by more
    than `max_abs_diff` + `REL_DIFF` x |expected| for float outputs."""
    bad = set()
    for key, want in expected.items():
        got = np.asarray(actual[key])
        if want.dtype.kind in "SOU":
            want, got = _as_text(want), _as_text(got)
        if want.shape != got.shape:
            return set(range(len(want)))
        if want.dtype.kind == "f":
            want64 = want.astype(np.float64)
            differs = np.abs(want64 - got.astype(np.float64)) > max_abs_diff + REL_DIFF * np.abs(want64)
        else:
            differs = want != got
        rows = differs.reshape(len(want), -1).any(axis=1)
        bad |= set(np.flatnonzero(rows).tolist())
    return bad


def export_saved_model(entry, model, servables, out_dir, inputs, expected, checks=Verification()):
    root = tf.Module()
    root.model = model
    root.resources = entry.resources()
    # Vocabularies (and label names) travel as SavedModel assets, beside the graph that also
    # embeds them, so a client can tokenize the way the model does.
    if fileio.isdir(entry.assets_dir):
        root.vocabularies = {name: tf.saved_model.Asset(fileio.join(entry.assets_dir, name))
                             for name in fileio.listdir(entry.assets_dir)}
    root.functions = {name: s.fn for name, s in servables.items() if not s.tflite}
    signatures = {name: fn.get_concrete_function() for name, fn in root.functions.items()}
    options, tpu_name = None, next((name for name, s in servables.items() if s.tpu), None)
    if tpu_name:
        # The Cloud TPU Inference Converter places the function aliased "tpu_func" on the TPU;
        # string pre- and post-processing stays in the signatures, on the CPU.
        root.tpu_func = servables[tpu_name].fn
        options = tf.saved_model.SaveOptions(function_aliases={"tpu_func": root.tpu_func})
    (arg,) = [spec.name for spec in tf.nest.flatten(signatures["serving_default"].structured_input_signature)]
    latency = {}

    def check(path):
        if not checks.verify:
            return
        actual, latency["ms"] = saved_model.run_fresh(path, "serving_default", {arg: list(inputs)}, CHECK_BATCH,
                                                      name=f"saved_model/{entry.name}")
        bad = _mismatches(expected, actual, checks.max_abs_diff)
        if bad:
            raise ExportError(
                f"saved_model/{entry.name}: serving_default differs from the Keras model on {len(bad)} of "
                f"{len(inputs)} held-out inputs (first: {inputs[min(bad)]!r}; float outputs may "
                f"differ by --max_abs_diff={checks.max_abs_diff})."
            )

    warmup_count = {}

    def warmup(path):
        warmup_count["n"] = saved_model.write_warmup_requests(path, entry.name, {arg: list(inputs)})

    path = saved_model.save(root, signatures, os.path.join(out_dir, "saved_model", entry.name), check, options,
                            warmup)  # published as a version by `_publish`
    artifact = {"format": "saved_model", "path": path, "signatures": sorted(signatures),
                "tpu_func": tpu_name, "warmup_requests": warmup_count["n"], "parity": {"verified": False}}
    if checks.verify:
        artifact["parity"] = {"verified": True, "checked": len(inputs), "mismatches": 0,
                              "process": "fresh (tensorflow + tensorflow_text only)"}
        artifact["latency_ms_batch1"] = round(latency["ms"], 3)
    return artifact


def export_keras(entry, model, out_dir, inputs, expected, checks=Verification()):
    """The trained model as a `.keras` file, checked by loading it back."""
    path = os.path.join(out_dir, "keras", f"{entry.name}.keras")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    if not checks.verify:
        return {"format": "keras", "path": path, "parity": {"verified": False}}
    import keras

    loaded = keras.saving.load_model(path)
    actual = _batched_outputs(entry.serving_functions(loaded)["serving_default"].fn, inputs)
    bad = _mismatches(expected, actual, checks.max_abs_diff)
    if bad:
        raise ExportError(f"{entry.name}.keras: the reloaded model differs on {len(bad)} of {len(inputs)} held-out "
                          f"inputs (threshold --max_abs_diff={checks.max_abs_diff} for float outputs).")
    return {"format": "keras", "path": path, "parity": {"verified": True, "checked": len(inputs), "mismatches": 0}}


def _row_outputs(servable, encoded):
    """The Keras outputs of a batch-1 servable, row by row, stacked."""
    rows = len(next(iter(encoded.values())))
    return _stack([_to_numpy(servable.fn(**{k: tf.constant(v[i:i + 1]) for k, v in encoded.items()}))
                   for i in range(rows)])


def export_tflite(entry, name, servable, out_dir, inputs, references, expected, quantize="none", source=None,
                  int8_io=False, checks=Verification()):
    """Converts one servable; float must match Keras (`checks.max_abs_diff` for float outputs,
    exactly otherwise), quantized must keep the task metric within `checks.max_metric_drop`.

    `expected` holds the Keras outputs for `servable.encode(inputs)` (see `_row_outputs`).
    """
    suffix = "" if quantize == "none" else f"_{quantize}"
    path = os.path.join(out_dir, "tflite", f"{entry.name}_{name}{suffix}.tflite")
    base = tflite.base_quantization(quantize)
    representative = None
    if base == "int8":
        representative = servable.encode(entry.training_inputs(source, REPRESENTATIVE_EXAMPLES))
    op_sets = tflite.convert(servable.fn, name, path, quantize, representative, int8_io, servable.int8_float_nodes)
    artifact = {"format": "tflite", "path": path, "signature": name, "quantization": quantize,
                "sparse_storage": quantize.startswith("sparse"),
                "op_sets": op_sets, "builtin_ops_only": set(op_sets) - {tflite.AI_EDGE_QUANTIZER} <= {tflite.BUILTINS, tflite.INT8},
                "full_integer": (op_sets == [tflite.INT8] and not servable.int8_float_nodes
                                 if base == "int8" else None),
                "float_nodes": list(servable.int8_float_nodes) if base == "int8" else None,
                "parity": {"verified": False}, "xnnpack": tflite.uses_xnnpack(path, name)}
    if checks.verify:
        artifact["parity"], artifact["latency_ms_batch1"] = _check_tflite(
            entry, servable, path, name, inputs, references, expected, base, checks, artifact["xnnpack"])
        artifact["latency_threads"] = tflite.default_threads()  # the interpreter's (and XNNPACK's)
    artifact["ops"] = tflite.op_names(path)
    if base == "int8":  # where selective quantization leaves float ops, they show here
        artifact["op_output_types"] = tflite.op_output_types(path)
    # Custom kernels an app must register (builtin op names are upper case).
    artifact["custom_ops"] = [op for op in artifact["ops"] if op != op.upper()]
    return artifact


def _check_tflite(entry, servable, path, name, inputs, references, expected, quantize, checks, xnnpack=None):
    """(parity, batch-1 latency) of a converted model; raises when it fails. A quantized model
    is `verified` only when its task metric was measured against Keras (its outputs are
    expected to differ, so mismatches alone prove nothing)."""
    actual, latency_ms = tflite.run_rows(path, name, servable.encode(inputs), xnnpack)
    bad = sorted(_mismatches(expected, actual, checks.max_abs_diff))
    parity = {"verified": quantize == "none", "checked": len(inputs), "mismatches": len(bad)}
    metric = servable.metric or ((entry.task_metric, entry.score, "max") if entry.task_metric else None)
    if metric and servable.decode is not None:
        metric_name, score, mode = metric
        keras_metric = score(servable.decode(expected), references)
        tflite_metric = score(servable.decode(actual), references)
        drop = keras_metric - tflite_metric if mode == "max" else tflite_metric - keras_metric
        parity.update({"verified": True, "metric": metric_name, "keras": round(keras_metric, 3),
                       "tflite": round(tflite_metric, 3), "drop": round(drop, 3)})
    elif quantize != "none":
        parity["note"] = "no task metric for this signature: mismatches counted, the metric drop not checked"
    failure = None
    if quantize == "none" and bad:
        failure = (f"differs from the Keras model on {len(bad)} of {len(inputs)} held-out inputs "
                   f"(first: {inputs[bad[0]]!r}; float outputs may differ by --max_abs_diff={checks.max_abs_diff})")
    elif quantize != "none" and "drop" in parity and parity["drop"] > checks.max_metric_drop:
        failure = (f"{parity['metric']} worsens by {parity['drop']:.2f} against Keras "
                   f"(threshold --max_metric_drop={checks.max_metric_drop})")
    if failure:
        raise ExportError(f"{os.path.basename(path)}: {failure}.")
    return parity, round(latency_ms, 3)


def _training_record(workdir):
    """Preset, config and the last validation metrics of the workdir, when it has them."""
    record = {}
    config = fileio.join(workdir, "zoo.json")
    if fileio.exists(config):
        stored = json.loads(fileio.read_text(config))
        record.update({k: stored[k] for k in ("preset", "data", "model_config", "trainer_config")})
    metrics = fileio.join(workdir, "metrics.jsonl")
    if fileio.exists(metrics):
        rows = [json.loads(line) for line in fileio.read_text(metrics).split("\n") if line.strip()]
        record["training_metrics"] = next((r for r in reversed(rows) if r["kind"] == "validation"), None)
    return record


def _keras_latency(servable, inputs, count=20):
    times = []
    for text in inputs[:count]:
        start = time.perf_counter()
        servable.fn(tf.constant([text]))
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def float32_model(entry, model):
    """`model`, or where it computes in another dtype (a mixed-precision trainer's model), a
    float32 copy holding the same weights: every artifact is float32 (TFLite has no bfloat16
    kernels; quantization starts from float32), whatever the training precision."""
    if all(layer.compute_dtype == "float32" for layer in model._flatten_layers()):  # noqa: SLF001
        return model
    from trainers.precision import policy_scope

    with policy_scope("float32"):
        copy = entry.build_model()
        copy.build()
    copy.set_weights(model.get_weights())
    return copy


def export(entry, model, workdir, formats=("saved_model", "tflite"), source=None, num_checks=100,
           quantize=("none",), int8_io=False, checks=Verification(), sparsity=None, checkpoint=None):
    """Exports what `entry.serving_functions(model)` declares under `workdir/export/`.

    Args:
        quantize: TFLite variants among `none`, `float16`, `dynamic`, `int8`, and `sparse`,
            `sparse_dynamic`, `sparse_int8` (the same with sparse weight storage).
        sparsity: for a pruned model, what the manifest reports under `sparsity` (the share
            of zeros of each pruned tensor).
        checkpoint: which checkpoint the model holds (`{"path", "step"}`), for the manifest.
        int8_io: int8 inputs and outputs for the `int8` variant (float ones get quantized).
        num_checks: held-out examples every artifact is run on (and SavedModel warmup
            requests are drawn from).
        checks: a `Verification`: whether artifacts are checked, and the thresholds.

    Returns:
        The manifest, also written to `workdir/export/manifest.json`.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"--formats: unknown {unknown}; expected some of {', '.join(FORMATS)}.")
    unknown = sorted(set(quantize) - set(tflite.QUANTIZATIONS))
    if unknown:
        raise ExportError(f"--quantize: unknown {unknown}; expected some of {', '.join(tflite.QUANTIZATIONS)}.")
    out_dir = fileio.join(workdir, "export")
    model = float32_model(entry, model)
    servables = entry.serving_functions(model)
    inputs, references = entry.held_out_examples(source, num_checks)
    with fileio.local_dir("zoo-export-") as stage:
        artifacts, skipped = _build(entry, model, servables, stage, formats, source, inputs, references, quantize,
                                    int8_io, checks)
        for artifact in artifacts:
            artifact["size_bytes"] = _size(artifact["path"])
            if os.path.isfile(artifact["path"]):
                artifact["sha256"] = _sha256(artifact["path"])
        manifest = {"model": entry.name, "checkpoint": checkpoint, **_training_record(workdir),
                    "keras_latency_ms_batch1": round(_keras_latency(servables["serving_default"], inputs), 3),
                    "artifacts": artifacts, "skipped": skipped}
        if sparsity is not None:
            manifest["sparsity"] = sparsity
        _publish(artifacts, stage, out_dir, entry.name)
    fileio.write_atomic(fileio.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2))
    return manifest


def _build(entry, model, servables, stage, formats, source, inputs, references, quantize, int8_io, checks):
    """(artifacts, skipped variants), each artifact built and checked under the local `stage`.
    A quantized TFLite variant whose conversion fails is skipped with the converter's reason
    (the export goes on); any failed check raises."""
    artifacts, skipped = [], []
    expected = None
    if checks.verify and {"saved_model", "keras"} & set(formats):
        expected = _batched_outputs(servables["serving_default"].fn, inputs)
    if "saved_model" in formats:
        artifacts.append(export_saved_model(entry, model, servables, stage, inputs, expected, checks))
    if "keras" in formats:
        artifacts.append(export_keras(entry, model, stage, inputs, expected, checks))
    if "tflite" not in formats:
        return artifacts, skipped
    for name, servable in servables.items():
        if not servable.tflite:
            continue
        row_expected = _row_outputs(servable, servable.encode(inputs)) if checks.verify else None
        for q in quantize:
            if tflite.base_quantization(q) not in servable.quantizations:
                skipped.append({"signature": name, "quantization": q, "reason": servable.quantization_note})
                print(f"[export] skipped {name} {q}: {servable.quantization_note}", flush=True)
                continue
            try:
                artifacts.append(export_tflite(entry, name, servable, stage, inputs, references, row_expected, q,
                                               source, int8_io, checks))
            except tflite.ConversionError as e:
                if q == "none":
                    raise
                lines = [line for line in str(e).split("\n") if line.strip()]
                reason = lines[0] + (f" Last output: {lines[-1].strip()[:300]}" if len(lines) > 1 else "")
                skipped.append({"signature": name, "quantization": q, "reason": reason})
                print(f"[export] skipped {name} {q}: {reason}", flush=True)
            # Each conversion's frozen graph and checking interpreter sit in reference
            # cycles; collected here, several artifacts peak at about the memory of one
            # (figures: WORKSPACE_NOTES.md "Export memory").
            gc.collect()
    return artifacts, skipped


def _publish(artifacts, stage, out_dir, name):
    """Copies checked artifacts from the local `stage` to `out_dir` (any TF filesystem) and
    points their manifest paths there: the SavedModel as the next version, then each file by
    an atomic replace."""
    for artifact in artifacts:
        if artifact["format"] == "saved_model":
            artifact["path"] = saved_model.publish(artifact["path"], fileio.join(out_dir, "saved_model", name))
    for artifact in artifacts:
        if artifact["format"] != "saved_model":
            target = fileio.join(out_dir, os.path.relpath(artifact["path"], stage))
            with open(artifact["path"], "rb") as f:
                fileio.write_atomic(target, f.read())
            artifact["path"] = target
