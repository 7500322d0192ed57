"""The exporter: turns a zoo entry's `serving_functions` into checked artifacts.

Every artifact is run on held-out inputs and compared with the Keras model before the
export counts: SavedModels in a fresh process that imports only TensorFlow and
tensorflow-text (what TF Serving links), TFLite models with the LiteRT interpreter.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from export import saved_model, tflite
from export.errors import ExportError

FORMATS = ("saved_model", "tflite")


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
    expected = _to_numpy(servables["serving_default"].fn(tf.constant(inputs)))
    (arg,) = [spec.name for spec in tf.nest.flatten(signatures["serving_default"].structured_input_signature)]

    def check(path):
        actual = saved_model.run_fresh(path, "serving_default", {arg: list(inputs)})
        bad = _mismatches(expected, actual)
        if bad:
            raise ExportError(
                f"{path}: serving_default differs from the Keras model on {len(bad)} of "
                f"{len(inputs)} held-out inputs (first: {inputs[min(bad)]!r})."
            )

    path = saved_model.save(root, signatures, os.path.join(out_dir, "saved_model", entry.name), check)
    return {
        "format": "saved_model", "path": path, "signatures": sorted(signatures),
        "parity": {"checked": len(inputs), "mismatches": 0, "process": "fresh (tensorflow + tensorflow_text only)"},
    }


def export_tflite(entry, name, servable, out_dir, inputs):
    path = os.path.join(out_dir, "tflite", f"{entry.name}_{name}.tflite")
    tmp = path + ".tmp"
    tflite.convert(servable.fn, name, tmp)
    encoded = servable.encode(inputs)
    actual = tflite.run_rows(tmp, name, encoded)
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
    }


def export(entry, model, workdir, formats=FORMATS, source=None, num_checks=100):
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
    if "tflite" in formats:
        for name, servable in servables.items():
            if servable.tflite:
                artifacts.append(export_tflite(entry, name, servable, out_dir, inputs))
    for artifact in artifacts:
        artifact["size_bytes"] = _size(artifact["path"])
        if os.path.isfile(artifact["path"]):
            artifact["sha256"] = _sha256(artifact["path"])
    manifest = {"model": entry.name, "artifacts": artifacts}
    tmp = os.path.join(out_dir, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "manifest.json"))
    return manifest
