"""`builtin:dates`: dates written the many ways people write them, paired with ISO 8601.

A generated translation task for demos and tests: "3rd of March 2021", "march 3, 21",
"03/03/2021" and a dozen other forms all map to "2021-03-03". Slash dates are US order
(month/day), dotted and dashed ones European (day.month); two-digit years pivot at 50
(21 -> 2021, 87 -> 1987). Every split is a pure function of its seed, so `train`,
`validation` and `test` never change and never overlap in their seeds.

Example:
    >>> pairs = generate(2, seed=0)
    >>> [len(p) for p in pairs]
    [2, 2]
"""

import datetime
import random

MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST = datetime.date(1950, 1, 1).toordinal()
LAST = datetime.date(2049, 12, 31).toordinal()
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
SPLIT_SIZES = {"train": 20000, "validation": 1000, "test": 1000}


def _ordinal(day):
    if day in (11, 12, 13):
        return f"{day}th"
    return f"{day}" + {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _formats(d):
    month, short = MONTHS[d.month - 1], MONTHS[d.month - 1][:3]
    weekday = DAYS[d.weekday()]
    yy = f"{d.year % 100:02d}"
    return [
        f"{_ordinal(d.day)} of {month} {d.year}",
        f"{month.lower()} {d.day}, {yy}",
        f"{d.month:02d}/{d.day:02d}/{d.year}",
        f"{d.month}/{d.day}/{yy}",
        f"{d.day}.{d.month}.{d.year}",
        f"{d.day:02d}-{d.month:02d}-{d.year}",
        f"{d.day} {short} {d.year}",
        f"{short}. {d.day}, {d.year}",
        f"{month} {_ordinal(d.day)}, {d.year}",
        f"{weekday}, {month} {d.day}, {d.year}",
        f"{weekday[:3].lower()} {d.day} {short.lower()} {yy}",
        f"the {_ordinal(d.day)} of {month.lower()}, {d.year}",
        f"{d.year}/{d.month}/{d.day}",
        f"{d.day} {month.upper()} {d.year}",
    ]


def generate(count, seed):
    """Returns `count` (human date, ISO date) pairs drawn with `seed`."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        d = datetime.date.fromordinal(rng.randint(FIRST, LAST))
        pairs.append((rng.choice(_formats(d)), d.isoformat()))
    return pairs


def split(name):
    """The fixed pairs of split `name` (`train`, `validation` or `test`)."""
    if name not in SPLIT_SEEDS:
        raise ValueError(
            f"builtin:dates has no split {name!r}; splits: {', '.join(SPLIT_SEEDS)}."
        )
    return generate(SPLIT_SIZES[name], seed=1000 + SPLIT_SEEDS[name])
