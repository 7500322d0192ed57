import pytest

from zoo import sources
from zoo.datasets import dates


def test_parse_kinds(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("a\tb\n")
    assert sources.parse(str(path)).kind == "file"
    assert sources.parse("tfds:wmt14_translate/fr-en:train") == sources.Source("tfds", "wmt14_translate/fr-en", "train")
    assert sources.parse("builtin:dates") == sources.Source("builtin", "dates", None)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(sources.DataError, match="nope.tsv: no such file"):
        sources.parse(str(tmp_path / "nope.tsv"))


def test_line_without_tab_names_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("hello\tbonjour\n\ncat\tchat\nno tab here\n")
    with pytest.raises(sources.DataError, match=r"bad.tsv:4: expected at least 2 tab-separated columns"):
        sources.read_tsv(str(path), min_columns=2)


def test_split_is_fixed_and_disjoint():
    rows = [[str(i)] for i in range(100)]
    train, val = sources.split_rows(rows, "train"), sources.split_rows(rows, "validation")
    assert len(train) == 90 and len(val) == 10
    assert not {r[0] for r in train} & {r[0] for r in val}
    assert sources.split_rows(rows, "validation") == val


def test_dates_are_real_dates():
    pairs = dates.split("validation")
    assert len(pairs) == 1000 and pairs == dates.split("validation")
    assert all(len(iso) == 10 and iso[4] == "-" and iso[7] == "-" for _, iso in pairs)
    assert len({fmt for fmt, _ in pairs}) > 900
    assert dates.generate(1, seed=5) == dates.generate(1, seed=5)
    text, iso = dates.generate(1, seed=3)[0]
    assert iso[:4] in text or iso[2:4] in text
