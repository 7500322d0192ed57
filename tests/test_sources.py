import calendar
import datetime
import re

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
    # Each text, read back by the rules the module states, is its ISO date (and its weekday, when
    # it names one, is that date's): month names say the month; slash dates are month/day/year
    # (year first when it has four digits), dotted and dashed ones day.month.year; two-digit
    # years pivot at 50.
    months = {name[:3].lower(): i for i, name in enumerate(calendar.month_name) if name}
    weekdays = {name[:3].lower(): i for i, name in enumerate(calendar.day_name)}

    def read(text):
        words, numbers = re.findall(r"[a-z]+", text.lower()), re.findall(r"\d+", text)
        named = [months[w[:3]] for w in words if w[:3] in months]
        if named:  # the day, then the year
            (day, year), month = numbers, named[0]
        elif "/" in text and len(numbers[0]) == 4:
            year, month, day = numbers
        else:
            month, day, year = numbers if "/" in text else numbers[1::-1] + numbers[2:]
        year = int(year) + (0 if len(year) == 4 else 2000 if int(year) < 50 else 1900)
        try:
            date = datetime.date(year, int(month), int(day))
        except ValueError:  # e.g. a 13th month: not a date
            return None
        assert all(date.weekday() == weekdays[w[:3]] for w in words if w[:3] in weekdays), text
        return date.isoformat()

    for text, iso in pairs:
        assert read(text) == iso, (text, iso)
    # Many numeric dates could have day and month swapped and still be dates (both 12 or less).
    numeric = [iso for text, iso in pairs if not re.search("[a-z]", text.lower())]
    assert sum(iso[5:7] != iso[8:] and int(iso[8:]) <= 12 for iso in numeric) > 50
