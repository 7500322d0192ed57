"""The exporter: turns a zoo entry's `serving_functions` into checked artifacts.

Every artifact is run on held-out inputs and compared with the Keras model before the
export counts: SavedModels in a fresh process that imports only TensorFlow and
tensorflow-text (what TF Serving links), TFLite models with the LiteRT interpreter.
"""

import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from export import saved_model, tflite
from export.errors import ExportError

FORMATS = ("saved_model", "keras", "tflite")


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


def _mismatches(expected, actual):
    """Rows where two output dicts differ, compared exactly (tokens, labels, strings)."""
    bad = set()
    for key, want in expected.items():
        got = np.asarray(actual[key])
        if want.dtype.kind in "SOU":
            want = want.astype(str)
            got = got.astype(str)
        if want.shape != got.shape:
            return set(range(len(want)))
        rows = (want != got).reshape(len(want), -1).any(axis=1)
        bad |= set(np.flatnonzero(rows).tolist())
    return bad


def export_saved_model(entry, model, servables, out_dir, inputs):
    root = tf.Module()
    root.model = model
    root.resources = entry.resources()
    root.functions = {name: s.fn for name, s in servables.items() if not s.tflite}
    signatures = {name: fn.get_concrete_function() for name, fn in root.functions.items()}
    options, tpu_name = None, next((name for name, s in servables.items() if s.tpu), None)
    if tpu_name:
        # The Cloud TPU Inference Converter places the function aliased "tpu_func" on the TPU;
        # string pre- and post-processing stays in the signatures, on the CPU.
        root.tpu_func = servables[tpu_name].fn
        options = tf.saved_model.SaveOptions(function_aliases={"tpu_func": root.tpu_func})
    expected = _to_numpy(servables["serving_default"].fn(tf.constant(inputs)))
    (arg,) = [spec.name for spec in tf.nest.flatten(signatures["serving_default"].structured_input_signature)]
    latency = {}

    def check(path):
        actual, latency["ms"] = saved_model.run_fresh(path, "serving_default", {arg: list(inputs)})
        bad = _mismatches(expected, actual)
        if bad:
            raise ExportError(
                f"{path}: serving_default differs from the Keras model on {len(bad)} of "
                f"{len(inputs)} held-out inputs (first: {inputs[min(bad)]!r})."
            )

    path = saved_model.save(root, signatures, os.path.join(out_dir, "saved_model", entry.name), check, options)
    return {
        "format": "saved_model", "path": path, "signatures": sorted(signatures),
        "tpu_func": tpu_name,
        "parity": {"checked": len(inputs), "mismatches": 0, "process": "fresh (tensorflow + tensorflow_text only)"},
        "latency_ms_batch1": round(latency["ms"], 3),
    }


def export_keras(entry, model, servables, out_dir, inputs):
    """The trained model as a `.keras` file, checked by loading it back."""
    path = os.path.join(out_dir, "keras", f"{entry.name}.keras")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.keras"
    model.save(tmp)
    import keras

    loaded = keras.saving.load_model(tmp)
    expected = _to_numpy(servables["serving_default"].fn(tf.constant(inputs)))
    actual = _to_numpy(entry.serving_functions(loaded)["serving_default"].fn(tf.constant(inputs)))
    bad = _mismatches(expected, actual)
    if bad:
        os.unlink(tmp)
        raise ExportError(f"{path}: the reloaded model differs on {len(bad)} of {len(inputs)} held-out inputs.")
    os.replace(tmp, path)
    return {"format": "keras", "path": path, "parity": {"checked": len(inputs), "mismatches": 0}}


def export_tflite(entry, name, servable, out_dir, inputs):
    path = os.path.join(out_dir, "tflite", f"{entry.name}_{name}.tflite")
    tmp = path + ".tmp"
    tflite.convert(servable.fn, name, tmp)
    encoded = servable.encode(inputs)
    actual, latency_ms = tflite.run_rows(tmp, name, encoded)
    bad = []
    for i in range(len(inputs)):
        row = {k: tf.constant(v[i:i + 1]) for k, v in encoded.items()}
        expected = _to_numpy(servable.fn(**row))
        if _mismatches(expected, {k: v[i:i + 1] for k, v in actual.items()}):
            bad.append(i)
    if bad:
        os.unlink(tmp)
        raise ExportError(
            f"{path}: differs from the Keras model on {len(bad)} of {len(inputs)} held-out "
            f"inputs (first: {inputs[bad[0]]!r})."
        )
    # Only a checked model replaces the previous one, in one rename.
    os.replace(tmp, path)
    ops = tflite.op_names(path)
    return {
        "format": "tflite", "path": path, "signature": name, "op_sets": [tflite.BUILTINS],
        "builtin_ops_only": True, "ops": ops,
        "parity": {"checked": len(inputs), "mismatches": 0},
        "latency_ms_batch1": round(latency_ms, 3),
    }


def _training_record(workdir):
    """Preset, config and the last validation metrics of the workdir, when it has them."""
    record = {}
    config = os.path.join(workdir, "zoo.json")
    if os.path.exists(config):
        with open(config) as f:
            stored = json.load(f)
        record.update({k: stored[k] for k in ("preset", "data", "model_config", "trainer_config")})
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
        with open(metrics) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        record["training_metrics"] = next((r for r in reversed(rows) if r["kind"] == "validation"), None)
    return record


def _keras_latency(servable, inputs, count=20):
    times = []
    for text in inputs[:count]:
        start = time.perf_counter()
        servable.fn(tf.constant([text]))
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def export(entry, model, workdir, formats=("saved_model", "tflite"), source=None, num_checks=100):
    """Exports what `entry.serving_functions(model)` declares under `workdir/export/`.

    Returns:
        The manifest, also written to `workdir/export/manifest.json`.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"--formats: unknown {unknown}; expected some of {', '.join(FORMATS)}.")
    out_dir = os.path.join(workdir, "export")
    servables = entry.serving_functions(model)
    inputs = entry.held_out_inputs(source, num_checks)
    artifacts = []
    if "saved_model" in formats:
        artifacts.append(export_saved_model(entry, model, servables, out_dir, inputs))
    if "keras" in formats:
        artifacts.append(export_keras(entry, model, servables, out_dir, inputs))
    if "tflite" in formats:
        for name, servable in servables.items():
            if servable.tflite:
                artifacts.append(export_tflite(entry, name, servable, out_dir, inputs))
    for artifact in artifacts:
        artifact["size_bytes"] = _size(artifact["path"])
        if os.path.isfile(artifact["path"]):
            artifact["sha256"] = _sha256(artifact["path"])
    manifest = {"model": entry.name, **_training_record(workdir),
                "keras_latency_ms_batch1": round(_keras_latency(servables["serving_default"], inputs), 3),
                "artifacts": artifacts}
    tmp = os.path.join(out_dir, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "manifest.json"))
    return manifest
