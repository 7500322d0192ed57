"""SavedModels in the TF Serving layout: written and checked in a fresh process on the local
disk, then published as the next version of the base path (`publish`)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from export.errors import ExportError
from zoo import fileio

# Runs in a fresh interpreter that imports only what TF Serving links: TensorFlow and the
# tensorflow-text ops. This project is not on its path, and loading and running the model
# must import nothing more (`import tensorflow` itself already pulls in parts of Keras).
_SERVE_SCRIPT = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tf-text ops, as TF Serving links them)
before = set(sys.modules)
path, signature, inputs_file, chunk = sys.argv[1:5]
chunk = int(chunk)
with open(inputs_file) as f:
    inputs = json.load(f)
loaded = tf.saved_model.load(path)
fn = loaded.signatures[signature]
rows = len(next(iter(inputs.values())))
chunks = [fn(**{k: tf.constant(v[i:i + chunk]) for k, v in inputs.items()}) for i in range(0, rows, chunk)]
outputs = {k: tf.concat([c[k] for c in chunks], 0) for k in chunks[0]}
times = []
for i in range(min(20, len(next(iter(inputs.values()))))):
    row = {k: tf.constant(v[i:i + 1]) for k, v in inputs.items()}
    start = time.perf_counter()
    fn(**row)
    times.append(1000 * (time.perf_counter() - start))
leaked = sorted(m for m in set(sys.modules) - before
                if m.split(".")[0] in ("keras", "zoo", "trainers", "export"))
text = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])  # not astype(str): that reads ASCII
result = {k: (text(v.numpy()).tolist() if v.dtype == tf.string and v.shape.num_elements() else v.numpy().tolist())
          for k, v in outputs.items()}
print(json.dumps({"outputs": result, "leaked_modules": leaked,
                  "latency_ms_batch1": sorted(times)[len(times) // 2]}))
"""


def next_version(base):
    versions = [int(d) for d in fileio.listdir(base) if d.isdigit()] if fileio.isdir(base) else []
    return max(versions, default=0) + 1


def write_warmup_requests(path, model_name, inputs, signature="serving_default", count=10):
    """Writes `assets.extra/tf_serving_warmup_requests`: TF Serving replays these
    `PredictionLog`s before it serves the version, so the first client does not pay for
    graph initialization.

    Args:
        inputs: dict of input name to a list of values (one request per value, batch 1).

    Returns:
        The number of requests written.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    folder = os.path.join(path, "assets.extra")
    os.makedirs(folder, exist_ok=True)
    rows = min(count, len(next(iter(inputs.values()))))
    with tf.io.TFRecordWriter(os.path.join(folder, "tf_serving_warmup_requests")) as writer:
        for i in range(rows):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values[i:i + 1]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return rows


def save(root, signatures, folder, check=None, options=None, warmup=None):
    """Saves `root` with `signatures` in the local `folder`; `warmup(folder)` may add files
    (warmup requests), then `check(folder)` runs if given. `publish` puts it in place."""
    tf.saved_model.save(root, folder, signatures=signatures, options=options)
    if warmup is not None:
        warmup(folder)
    if check is not None:
        check(folder)
    return folder


# The file TF Serving's loader reads first: on an object store it is written last.
GRAPH_FILE = "saved_model.pb"


def publish(folder, base):
    """Copies the checked SavedModel in the local `folder` to `base` as its next version and
    returns the version's path. A server polling `base` never loads a partial version:

    - on a filesystem with atomic renames (local disks), the version is copied beside its
      final place under a name TF Serving ignores (`.tmp-...`, not a number), then renamed;
    - on an object store (`gs://`, where a rename is a copy of every object), the files are
      copied straight into `base/VERSION/` with `saved_model.pb` last: until it lands, a
      server that lists the version cannot start loading it (no graph; TF Serving retries
      a failed load), and once it lands every other file is already there.

    A copy that fails removes what it wrote.
    """
    version = next_version(base)
    final = fileio.join(base, str(version))
    if fileio.is_local(base):
        fileio.makedirs(base)
        tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base)
        try:
            fileio.copy_tree(folder, tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
    try:
        fileio.copy_tree(folder, final, last=(GRAPH_FILE,))
    except BaseException:
        fileio.rmtree(final)
        raise
    return final


def run_fresh(path, signature, inputs, chunk, name=None):
    """Runs `signature` of the SavedModel at `path` in a fresh Python process.

    Args:
        inputs: dict of argument name to a JSON-able list.
        chunk: rows per call of the signature.
        name: what errors call the model (default: `path`).

    Returns:
        (dict of output name to numpy array, median batch-1 latency in ms).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(inputs, f)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SERVE_SCRIPT, os.path.abspath(path), signature, f.name, str(chunk)],
            capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise ExportError(f"{name or path}: signature {signature!r} failed in a fresh process:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["leaked_modules"]:
        raise ExportError(f"{name or path}: loading imported {result['leaked_modules'][:5]}; it must need only "
                          f"TensorFlow.")
    return {k: np.array(v) for k, v in result["outputs"].items()}, result["latency_ms_batch1"]
