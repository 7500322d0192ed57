"""Labelled (or unlabelled) texts from CSV, TSV, JSONL files or a folder per class.

Every example remembers where it came from (`file:line`), so a bad row is reported by file
and line: a missing label, an empty text, or a label outside the known ones raise a
`DataError`, unless `skip_bad_rows` is set, in which case they are counted and left out.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> _ = open(path, "w").write('text,label\\n"good, really",pos\\nbad,neg\\n')
    >>> rows = read(path)
    >>> [(r.text, r.label) for r in rows.examples], rows.skipped
    ([('good, really', 'pos'), ('bad', 'neg')], 0)
"""

import csv
import dataclasses
import json
import os

from zoo import fileio
from zoo.sources import DataError

EXTENSIONS = (".csv", ".tsv", ".jsonl")
TEXT_FILE_EXTENSIONS = (".txt", ".text", "")


@dataclasses.dataclass(frozen=True)
class Example:
    text: str
    label: str  # None when unlabelled
    where: str  # "file:line" (or the file of a folder-per-class example)


@dataclasses.dataclass
class Rows:
    examples: list
    skipped: int = 0
    problems: list = dataclasses.field(default_factory=list)  # first few skipped rows, for the report


class _Collector:
    def __init__(self, skip_bad_rows, names=("text", "label")):
        self.skip_bad_rows = skip_bad_rows
        self.names = names
        self.rows = Rows([])

    def add(self, text, label, where, require_label, labels=None):
        text = "" if text is None else str(text)
        label = None if label is None or str(label).strip() == "" else str(label).strip()
        problem = None
        if not text.strip():
            problem = f"{where}: empty {self.names[0]}"
        elif require_label and label is None:
            problem = f"{where}: missing {self.names[1]}"
        elif labels is not None and label is not None and label not in labels:
            problem = f"{where}: unknown label {label!r}; expected one of {sorted(labels)}"
        if problem is None:
            self.rows.examples.append(Example(text, label, where))
        elif self.skip_bad_rows:
            self.rows.skipped += 1
            if len(self.rows.problems) < 5:
                self.rows.problems.append(problem)
        else:
            raise DataError(problem + " (--skip_bad_rows leaves such rows out and counts them).")


def _table(path, delimiter, text_column, label_column, collector, require_label, labels):
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with fileio.text_file(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty; expected a header row naming the columns.")
        header = [h.strip() for h in header]
        columns = [text_column] + ([label_column] if require_label else [])
        for name in columns:
            if name not in header:
                raise DataError(f"{path}:1: no column {name!r} in the header {header}; set "
                                f"--config {collector.names[0]}_column=... / {collector.names[1]}_column=... to the right names.")
        t = header.index(text_column)
        lab = header.index(label_column) if label_column in header else None
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            where = f"{path}:{reader.line_num}"
            text = row[t] if t < len(row) else None
            label = row[lab] if lab is not None and lab < len(row) else None
            collector.add(text, label, where, require_label, labels)


def _jsonl(path, text_column, label_column, collector, require_label, labels):
    with fileio.text_file(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not a JSON object ({e.msg}).") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object with keys {text_column!r} and {label_column!r}.")
            collector.add(record.get(text_column), record.get(label_column), where, require_label, labels)


def _class_folders(path, collector, labels):
    # Not `keras.utils.text_dataset_from_directory`: in Keras 3 its dataset does not say which
    # file each text came from (no `file_paths`), so an empty or unreadable file could not be
    # named, and it reads `.txt` files only; the walk itself is a few lines over `fileio` (gs:// too).
    classes = [d for d in fileio.listdir(path) if fileio.isdir(fileio.join(path, d))]
    for label in classes:
        folder = fileio.join(path, label)
        for name in fileio.listdir(folder):
            file = fileio.join(folder, name)
            if os.path.splitext(name)[1].lower() in TEXT_FILE_EXTENSIONS and fileio.isfile(file):
                collector.add(fileio.read_text(file, errors="replace").strip(), label, file, True, labels)


def read(path, text_column="text", label_column="label", skip_bad_rows=False, require_label=True,
         labels=None, names=("text", "label")):
    """Reads the examples of a file, or of a folder (of class folders, or of data files).

    Args:
        path: a `.csv`, `.tsv` (both with a header row) or `.jsonl` file, a folder holding
            one folder of text files per class, or a folder of such data files.
        text_column, label_column: column names (JSON keys).
        skip_bad_rows: leave bad rows out and count them instead of raising.
        require_label: False for unlabelled text (the label column may then be absent).
        labels: the known label names; others are bad rows.
        names: what the two columns hold, for error messages ("empty text", "missing label").

    Returns:
        `Rows` with the examples in file order and the number skipped.
    """
    collector = _Collector(skip_bad_rows, names)
    if fileio.isdir(path):
        entries = fileio.listdir(path)
        if any(fileio.isdir(fileio.join(path, e)) for e in entries):
            _class_folders(path, collector, labels)
        else:
            files = [fileio.join(path, e) for e in entries if e.lower().endswith(EXTENSIONS)]
            if not files:
                raise DataError(f"--data={path}: the folder holds neither class folders nor "
                                f"{'/'.join(EXTENSIONS)} files.")
            for file in files:
                _read_file(file, text_column, label_column, collector, require_label, labels)
    else:
        _read_file(path, text_column, label_column, collector, require_label, labels)
    if not collector.rows.examples:
        raise DataError(f"--data={path}: no usable examples ({collector.rows.skipped} bad rows skipped).")
    return collector.rows


def _read_file(path, text_column, label_column, collector, require_label, labels):
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        _table(path, ",", text_column, label_column, collector, require_label, labels)
    elif extension == ".tsv":
        _table(path, "\t", text_column, label_column, collector, require_label, labels)
    elif extension == ".jsonl":
        _jsonl(path, text_column, label_column, collector, require_label, labels)
    elif not require_label and extension in (".txt", ".text"):
        with fileio.text_file(path) as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    collector.add(line.strip(), None, f"{path}:{number}", False)
    else:
        raise DataError(f"--data={path}: unknown file type {extension!r}; expected "
                        f"{', '.join(EXTENSIONS)}{' or .txt' if not require_label else ''}.")
