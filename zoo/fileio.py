"""Files of workdirs and data on any TensorFlow filesystem: local paths, `gs://`, `ram://`, ...

Everything the zoo reads or writes for a workdir or `--data` goes through these functions
(`tf.io.gfile` underneath), never through `open`/`os.path`/`os.makedirs`, so a Cloud TPU VM can
train, resume, evaluate, predict and export with `--workdir=gs://bucket/run`. Libraries that
only take local paths (the TFLite converter, a fresh Python process checking a SavedModel,
matplotlib) work in a local temporary folder (`local_dir`, `local_copy`) whose results are then
copied (`copy`, `copy_tree`).

    >>> write_atomic("ram://fileio-doc/a/b.txt", "hello")
    >>> read_text("ram://fileio-doc/a/b.txt"), listdir("ram://fileio-doc/a")
    ('hello', ['b.txt'])
"""

import contextlib
import io
import os
import shutil
import tempfile
import uuid

import tensorflow as tf

gfile = tf.io.gfile


def is_local(path):
    """Whether `path` is on the local disk (no `scheme://`, or `file://`)."""
    path = str(path)
    return "://" not in path or path.startswith("file://")


def absolute(path):
    """`path` made absolute when it is local (a later command may run from another folder);
    other filesystems' paths are absolute already."""
    return str(path) if "://" in str(path) else os.path.abspath(str(path))


def join(*parts):
    return os.path.join(*[str(p) for p in parts])


def dirname(path):
    return os.path.dirname(str(path).rstrip("/"))


def exists(path):
    return gfile.exists(str(path))


def isdir(path):
    return gfile.isdir(str(path))


def isfile(path):
    return gfile.exists(str(path)) and not gfile.isdir(str(path))


def listdir(path):
    """Names in the folder `path`, sorted, without trailing slashes (object stores add them)."""
    return sorted(name.rstrip("/") for name in gfile.listdir(str(path)))


def walk(path):
    return gfile.walk(str(path))


def makedirs(path):
    gfile.makedirs(str(path))


def remove(path):
    gfile.remove(str(path))


def rmtree(path):
    """Removes a folder and everything in it; nothing when it is not there."""
    if gfile.exists(str(path)):
        gfile.rmtree(str(path))


def getsize(path):
    """Bytes of a file, or of every file under a folder."""
    path = str(path)
    if not gfile.isdir(path):
        return gfile.stat(path).length
    return sum(gfile.stat(join(folder, name)).length for folder, _, names in gfile.walk(path) for name in names)


def read_bytes(path):
    with gfile.GFile(str(path), "rb") as f:
        return f.read()


def read_text(path, errors="strict"):
    return read_bytes(path).decode("utf-8", errors)


def text_file(path, newline=None, errors="strict"):
    """An in-memory text file of `path`'s UTF-8 content, read whole: `newline` as for `open`
    (None: universal newlines; "": as stored, what `csv` wants)."""
    return io.StringIO(read_text(path, errors), newline=newline)


def write_atomic(path, data):
    """Writes `data` (str or bytes) to `path` so that a reader sees the old file or the whole
    new one: a temporary name beside it, then a rename (on an object store, the renamed object
    appears whole)."""
    path = str(path)
    parent = dirname(path)
    if parent:
        gfile.makedirs(parent)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with gfile.GFile(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        gfile.rename(tmp, path, overwrite=True)
    finally:
        if gfile.exists(tmp):
            gfile.remove(tmp)


def append_text(path, text):
    """Appends `text` to `path` (created when absent)."""
    parent = dirname(path)
    if parent:
        gfile.makedirs(parent)
    with gfile.GFile(str(path), "a") as f:
        f.write(text)


def copy(source, target, overwrite=True):
    parent = dirname(target)
    if parent:
        gfile.makedirs(parent)
    gfile.copy(str(source), str(target), overwrite=overwrite)


def copy_tree(source, target, last=()):
    """Copies the folder `source` to `target`, file by file; files named in `last` (names
    relative to `source`) are copied after all others."""
    source, target = str(source).rstrip("/"), str(target).rstrip("/")
    files = []
    for folder, _, names in gfile.walk(source):
        relative = os.path.relpath(folder, source) if is_local(source) else folder[len(source):].lstrip("/")
        for name in names:
            files.append(os.path.normpath(os.path.join(relative, name)))
    files.sort(key=lambda f: (f in last, f))
    for name in files:
        copy(join(source, name), join(target, name))
    return files


@contextlib.contextmanager
def local_dir(prefix="zoo-"):
    """A local temporary folder, removed afterwards."""
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def local_copy(path):
    """A local path holding `path`'s file or folder: `path` itself when it is local, else a
    temporary copy (removed afterwards)."""
    if is_local(path):
        yield str(path)
        return
    with local_dir() as folder:
        local = os.path.join(folder, os.path.basename(str(path).rstrip("/")))
        if gfile.isdir(str(path)):
            copy_tree(path, local)
        else:
            gfile.copy(str(path), local)
        yield local
