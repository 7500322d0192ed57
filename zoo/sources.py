"""Data sources named on the command line: a path, `tfds:NAME[:SPLIT]` or `builtin:NAME`.

Example:
    >>> parse("tfds:wmt14_translate/fr-en:train")
    Source(kind='tfds', name='wmt14_translate/fr-en', split='train')
    >>> parse("builtin:dates")
    Source(kind='builtin', name='dates', split=None)
"""

import dataclasses
import random
from typing import Optional

from zoo import fileio


class DataError(ValueError):
    """Input data that is missing or malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "file", "tfds" or "builtin"
    name: str
    split: Optional[str] = None

    def __str__(self):
        if self.kind == "file":
            return self.name
        return f"{self.kind}:{self.name}" + (f":{self.split}" if self.split else "")


def parse(text):
    """Parses a `--data` value into a `Source`.

    Raises:
        DataError: for an empty value or a file path that does not exist.
    """
    if not text:
        raise DataError("--data: expected a file or folder path, tfds:NAME[:SPLIT] or builtin:NAME.")
    for kind in ("tfds", "builtin"):
        if text.startswith(kind + ":"):
            parts = text[len(kind) + 1:].split(":")
            if not parts[0] or len(parts) > 2:
                raise DataError(f"--data={text}: expected {kind}:NAME[:SPLIT].")
            return Source(kind, parts[0], parts[1] if len(parts) == 2 else None)
    if not fileio.exists(text):
        raise DataError(f"--data={text}: no such file or folder.")
    return Source("file", fileio.absolute(text))


def absolute(text):
    """A `--data` value with a local path made absolute (stored so, it names the same data from
    any folder); `tfds:`, `builtin:` and remote paths are returned as they are."""
    if text.startswith(("tfds:", "builtin:")):
        return text
    return fileio.absolute(text)


def read_tsv(path, min_columns, header=False):
    """Reads rows of at least `min_columns` tab-separated fields (extra columns are kept).

    Raises:
        DataError: naming the file and line of the first row with too few fields.
    """
    rows = []
    for number, line in enumerate(fileio.text_file(path), start=1):
        line = line.rstrip("\n")
        if not line.strip() or (header and number == 1):
            continue
        fields = line.split("\t")
        if len(fields) < min_columns:
            raise DataError(
                f"{path}:{number}: expected at least {min_columns} tab-separated columns, "
                f"found {len(fields)}: {line[:80]!r}"
            )
        rows.append(fields)
    if not rows:
        raise DataError(f"{path}: no rows found.")
    return rows


# The split `zoo evaluate --data=X` scores: all of X (a file or folder whole, a TFDS source's
# named split), where training reads its `train` and `validation` parts.
ALL = "all"


def split_rows(rows, split, seed=0, validation_fraction=0.1):
    """The `train` or `validation` part of `rows`, shuffled with a fixed seed, or all of them
    in order (`ALL`).

    A file without splits of its own is split 90/10 (by default) with `seed`, so every
    command that reads the same file sees the same split.
    """
    if split == ALL:
        return list(rows)
    if split not in ("train", "validation"):
        raise DataError(f"Unknown split {split!r} for a file source; use train or validation.")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = len(rows) - max(1, int(round(len(rows) * validation_fraction)))
    chosen = order[:cut] if split == "train" else order[cut:]
    return [rows[i] for i in chosen]


def tfds_split(source, split, unlisted_held_out="validation"):
    """(builder, TFDS split name) for the `train` or held-out `split` of a `tfds:` source.

    Training reads `source.split` (or `train`); the held-out split is `validation`, else
    `test`; `ALL` (what `zoo evaluate --data=tfds:NAME:SPLIT` scores) is `SPLIT`, else the
    held-out one. Prepared datasets list their splits; without metadata (`tfds.testing.mock_data`)
    the split names are taken on trust, the held-out one being `unlisted_held_out`.

    Raises:
        DataError: naming the source and its splits when the wanted one is not there.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(source.name)
    names = list(builder.info.splits) or [source.split or "train", unlisted_held_out]
    if split == "train" or (split == ALL and source.split):
        name = source.split or "train"
    else:
        name = next((n for n in ("validation", "test") if n in names), None)
        if name is None:
            raise DataError(f"--data={source}: no validation or test split in {names}.")
    if name not in names:
        raise DataError(f"--data={source}: no split {name!r}; splits: {names}.")
    return builder, name
