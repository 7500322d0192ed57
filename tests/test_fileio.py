"""Workdirs and data on any TensorFlow filesystem (`zoo/fileio.py`), tested on TF's in-memory
`ram://` filesystem: what `gs://` on a Cloud TPU VM needs, without a bucket."""

import builtins
import io
import json
import os
import shutil
import sys
import uuid

import numpy as np
import pytest
import tensorflow as tf

from export import saved_model
from tests.helpers import ROOT
from zoo import commands, fileio


def _ram(name):
    """A fresh `ram://` folder (the filesystem lives as long as the process)."""
    return f"ram://{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def local_only_functions_refuse_ram(monkeypatch):
    """Makes `open`, `os.*`, `os.path.*` and `shutil.*` fail on a `ram://` path: code that
    reaches a workdir or data path with them would write a local folder named `ram:` (or
    `gs:`) instead of the bucket."""
    ours = tuple(os.path.join(ROOT, package) + os.sep for package in ("zoo", "trainers", "export"))

    def guard(module, name):
        original = getattr(module, name)

        def guarded(*args, **kwargs):
            # Only the project's own calls: libraries may probe paths their own way (TF's
            # checkpoint writer globs a prefix to log its size, and finds nothing remote).
            caller = sys._getframe(1).f_code.co_filename
            if not caller.startswith(ours):
                return original(*args, **kwargs)
            for value in list(args) + list(kwargs.values()):
                if isinstance(value, (str, bytes, os.PathLike)) and "ram:" in os.fsdecode(value):
                    raise AssertionError(f"{getattr(module, '__name__', module)}.{name}({value!r}): a workdir or "
                                         f"data path reached a local-only file function; use zoo.fileio.")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, guarded)

    for module, names in ((builtins, ["open"]), (io, ["open"]),
                          (os, ["makedirs", "mkdir", "listdir", "scandir", "replace", "rename", "remove", "unlink",
                                "walk", "stat"]),
                          (os.path, ["exists", "isfile", "isdir", "getsize", "abspath", "realpath"]),
                          (shutil, ["copyfile", "copy", "copy2", "copytree", "rmtree", "move"])):
        for name in names:
            guard(module, name)


def test_the_guard_catches_a_local_function_on_a_remote_path(local_only_functions_refuse_ram):
    # Code compiled as a file of the project is "ours": its `os`/`open` on ram:// are stopped.
    source = "def make(path):\n    os.makedirs(path, exist_ok=True)\n\ndef write(path):\n    open(path, 'w')\n"
    namespace = {"os": os}
    exec(compile(source, os.path.join(ROOT, "zoo", "not_a_module.py"), "exec"), namespace)
    with pytest.raises(AssertionError, match="os.makedirs.*use zoo.fileio"):
        namespace["make"]("ram://somewhere/x")
    with pytest.raises(AssertionError, match="open"):
        namespace["write"]("ram://somewhere/x.txt")


def test_files_round_trip_on_ram():
    root = _ram("files")
    fileio.write_atomic(f"{root}/a/b.json", json.dumps({"x": 1}))
    fileio.append_text(f"{root}/a/log.txt", "1\n")
    fileio.append_text(f"{root}/a/log.txt", "2\n")
    assert json.loads(fileio.read_text(f"{root}/a/b.json")) == {"x": 1}
    assert list(fileio.text_file(f"{root}/a/log.txt")) == ["1\n", "2\n"]
    assert fileio.listdir(f"{root}/a") == ["b.json", "log.txt"]  # no temporary file left beside
    assert fileio.isdir(f"{root}/a") and fileio.isfile(f"{root}/a/b.json") and not fileio.isfile(f"{root}/a")
    assert fileio.getsize(f"{root}/a") == len('{"x": 1}') + 4
    with fileio.local_copy(f"{root}/a/b.json") as local:
        with open(local) as f:
            assert json.load(f) == {"x": 1}
    assert not os.path.exists(local)  # the temporary copy is gone
    assert fileio.absolute(f"{root}/a") == f"{root}/a" and os.path.isabs(fileio.absolute("x/y"))


def _tiny_saved_model(folder):
    module = tf.Module()
    module.v = tf.Variable(3.0)
    module.f = tf.function(lambda x: {"y": x * module.v}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, folder, signatures={"serving_default": module.f})


def test_a_saved_model_version_is_published_graph_last_on_an_object_store(tmp_path, monkeypatch):
    _tiny_saved_model(str(tmp_path / "model"))
    base = _ram("serving") + "/model"
    order = []
    copy = fileio.copy
    monkeypatch.setattr(fileio, "copy", lambda a, b, **k: (order.append(b), copy(a, b, **k)))
    assert saved_model.publish(str(tmp_path / "model"), base) == f"{base}/1"
    assert order[-1] == f"{base}/1/saved_model.pb" and any("/variables/" in p for p in order[:-1])
    assert saved_model.publish(str(tmp_path / "model"), base) == f"{base}/2"
    assert float(tf.saved_model.load(f"{base}/2").signatures["serving_default"](x=tf.constant([2.0]))["y"][0]) == 6.0

    # A copy that fails half-way leaves no version a server could pick up.
    def failing(a, b, **k):
        if b.endswith("saved_model.pb"):
            raise OSError("connection reset")
        copy(a, b, **k)

    monkeypatch.setattr(fileio, "copy", failing)
    with pytest.raises(OSError):
        saved_model.publish(str(tmp_path / "model"), base)
    assert fileio.listdir(base) == ["1", "2"]


def test_a_saved_model_version_appears_on_a_local_disk_in_one_rename(tmp_path, monkeypatch):
    _tiny_saved_model(str(tmp_path / "model"))
    base = tmp_path / "serving"
    seen = []
    rename = os.rename

    def watched(a, b):
        # Everything is in place under a name TF Serving ignores before the version appears.
        seen.append((sorted(os.listdir(base)), sorted(os.listdir(a))))
        rename(a, b)

    monkeypatch.setattr(os, "rename", watched)
    assert saved_model.publish(str(tmp_path / "model"), str(base)) == str(base / "1")
    (names_before, files), = seen
    assert not any(n.isdigit() for n in names_before) and "saved_model.pb" in files
    assert sorted(os.listdir(base)) == ["1"]


def _dates_tsv(path, rows=300):
    from zoo.translator.entry import BUILTINS

    fileio.write_atomic(path, "".join(f"{a}\t{b}\n" for a, b in BUILTINS["dates"]("train")[:rows]))


@pytest.mark.slow
def test_train_resume_evaluate_predict_export_on_ram(tmp_path, monkeypatch, local_only_functions_refuse_ram):
    # One process (ram:// is the process's memory), nothing written to the local disk.
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    root = _ram("zoo")
    _dates_tsv(f"{root}/data/pairs.tsv")
    workdir = f"{root}/runs/translator"
    first = commands.train("translator", workdir, data=f"{root}/data/pairs.tsv", preset="tiny", steps=2,
                           overrides=["checkpoint_every=2", "eval_examples=8"])
    assert first["step"] == 2
    resumed = commands.train("translator", workdir, data=f"{root}/data/pairs.tsv", preset="tiny", steps=4,
                             overrides=["checkpoint_every=2", "eval_examples=8"])
    assert resumed["step"] == 4
    names = fileio.listdir(workdir)
    assert {"zoo.json", "assets", "checkpoints", "logs", "metrics.jsonl", "training_curves.png"} <= set(names)
    assert "chrf" in commands.evaluate(workdir)
    (prediction,) = commands.predict(workdir, ["3 March 2021"])
    assert isinstance(prediction, str)
    manifest = commands.export(workdir, formats=("saved_model", "tflite"), num_checks=8)
    published = json.loads(fileio.read_text(f"{workdir}/export/manifest.json"))
    assert published == json.loads(json.dumps(manifest))
    for artifact in manifest["artifacts"]:
        assert artifact["path"].startswith(f"{workdir}/export/") and fileio.exists(artifact["path"])
        assert artifact["parity"]["verified"]
    assert fileio.listdir(f"{workdir}/export/saved_model/translator") == ["1"]
    assert os.listdir(here) == []  # no folder named `ram:` (or anything else) appeared locally
    served = tf.saved_model.load(f"{workdir}/export/saved_model/translator/1")
    assert served.signatures["serving_default"](inputs=tf.constant(["3 March 2021"]))["translations"].shape == (1,)


@pytest.mark.slow
@pytest.mark.parametrize("model, data", [("bert_classifier", "csv"), ("vae", "builtin:shapes")])
def test_side_outputs_and_assets_go_to_a_ram_workdir(model, data, tmp_path, monkeypatch,
                                                     local_only_functions_refuse_ram):
    # The BERT confusion matrix, the image grids and the Fréchet classifier are written
    # through the same functions; the SavedModel export takes the assets from ram://.
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    root = _ram(model)
    if data == "csv":
        rows = "".join(f"{w} film {i},{'pos' if w == 'good' else 'neg'}\n" for i in range(60) for w in ("good", "bad"))
        fileio.write_atomic(f"{root}/data/reviews.csv", "text,label\n" + rows)
        data = f"{root}/data/reviews.csv"
    workdir = f"{root}/run"
    commands.train(model, workdir, data=data, preset="tiny", steps=2, overrides=["checkpoint_every=2"])
    commands.evaluate(workdir)
    commands.export(workdir, formats=("saved_model",), num_checks=4)
    written = {os.path.basename(f"{folder}/{name}") for folder, _, files in fileio.walk(workdir) for name in files}
    assert "zoo.json" in written and "manifest.json" in written and any(n.endswith(".png") for n in written)
    assert os.listdir(here) == []
    assert np.isfinite(json.loads(fileio.read_text(f"{workdir}/metrics.jsonl").split("\n")[0])["loss"])
