"""`builtin:reviews`: short movie-review-like texts with a sentiment label, generated.

The BERT entries' default data, so `zoo train --model=bert_classifier` runs with nothing to
download: each text is a few filler words around one or two opinion words (with an
occasional negation, which flips the label), in three classes `negative`, `neutral`,
`positive`. Seeded: the same splits every time (9,000 train / 1,000 validation).

Example:
    >>> rows = split("train")
    >>> len(rows), sorted({label for _, label in rows})
    (9000, ['negative', 'neutral', 'positive'])
"""

import random

OPINIONS = {
    "negative": ["awful", "boring", "bad", "dull", "tedious", "clumsy", "weak", "forgettable"],
    "neutral": ["average", "okay", "plain", "ordinary", "passable", "middling", "so-so", "uneven"],
    "positive": ["great", "superb", "good", "lovely", "moving", "brilliant", "charming", "gripping"],
}
FLIP = {"negative": "positive", "positive": "negative", "neutral": "neutral"}
FILLER = ["the", "film", "movie", "was", "a", "story", "and", "acting", "really", "quite", "plot", "cast",
          "script", "ending", "music", "overall", "director", "scenes", "felt", "its"]
SIZES = {"train": 9000, "validation": 1000}


def example(rng):
    label = rng.choice(sorted(OPINIONS))
    words = rng.sample(FILLER, rng.randint(3, 8))
    opinion = rng.choice(OPINIONS[label])
    if label != "neutral" and rng.random() < 0.2:
        opinion, label = "not " + opinion, FLIP[label]
    words.insert(rng.randint(0, len(words)), opinion)
    return " ".join(words), label


def split(name):
    """(text, label) pairs of the `train` or `validation` split."""
    rng = random.Random({"train": 0, "validation": 1}[name])
    return [example(rng) for _ in range(SIZES[name])]
