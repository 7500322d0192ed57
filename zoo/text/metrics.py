"""Scores of generated text against one or several references per input.

Example:
    >>> scores = generation_scores(["the cat sat on the mat", "a dog"],
    ...                            [["a cat sat on a mat", "the cat sat on the mat"], ["the dog"]])
    >>> round(scores["bleu"], 1), scores["exact_match"], round(scores["rouge_l"], 1)
    (92.4, 0.5, 75.0)
    >>> slot_values("name : Blue Spice | area : city centre", ("name",))
    ['Blue Spice']
    >>> slot_values("data to text: name : Blue Spice | area : city centre", ("*",))
    ['Blue Spice', 'city centre']
    >>> slot_values("name[The Mill], near[Café Rouge], food[English]", ("name", "near"))
    ['The Mill', 'Café Rouge']
    >>> slot_accuracy(["name : The Mill | near : Avalon"], ["The Mill is near the Avalon."], ("name", "near"))
    1.0
"""

import re

_BRACKETS = re.compile(r"\s*([^,\[\]]+?)\s*\[([^\]]*)\]")


def _reference_streams(references):
    """sacrebleu's layout: one stream per reference position, None where an input has fewer."""
    most = max(len(r) for r in references)
    return [[r[i] if i < len(r) else None for r in references] for i in range(most)]


def _lcs(a, b):
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis, reference):
    """ROUGE-L F-measure (0-1) of two texts, on lower-cased whitespace tokens."""
    h, r = hypothesis.lower().split(), reference.lower().split()
    common = _lcs(h, r)
    if not common:
        return 0.0
    precision, recall = common / len(h), common / len(r)
    return 2 * precision * recall / (precision + recall)


def generation_scores(hypotheses, references):
    """Corpus BLEU and chrF (sacrebleu, every reference at once), ROUGE-L (best reference per
    input, averaged) and exact match (any reference), for `references[i]` a list of texts."""
    import sacrebleu

    hypotheses = list(hypotheses)
    references = [list(r) for r in references]
    streams = _reference_streams(references)
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, streams).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, streams).score,
        "rouge_l": 100.0 * sum(max(rouge_l(h, r) for r in refs) for h, refs in zip(hypotheses, references))
        / max(len(hypotheses), 1),
        "exact_match": sum(h in refs for h, refs in zip(hypotheses, references)) / max(len(hypotheses), 1),
    }


def parse_attributes(text):
    """(key, value) pairs of a meaning representation: `key : value | key : value` or E2E's
    `key[value], key[value]`; [] for other text."""
    if "|" in text or re.fullmatch(r"\s*[^:|]+ : .+", text or ""):
        pairs = [part.split(" : ", 1) for part in text.split("|")]
        # A task prefix ("data to text: name : X") is not part of the first key.
        return [(k.strip().rsplit(": ", 1)[-1], v.strip()) for k, v in (p for p in pairs if len(p) == 2)
                if v.strip()]
    return [(k.strip(), v.strip()) for k, v in _BRACKETS.findall(text or "") if v.strip()]


def slot_values(text, keys):
    """Values of the attributes named in `keys` ("*" in keys: all), in input order."""
    everything = "*" in keys
    wanted = {k.lower() for k in keys}
    return [v for k, v in parse_attributes(text) if everything or k.lower() in wanted]


def slot_accuracy(inputs, hypotheses, keys):
    """Share of the inputs' slot values (`slot_values`) that the generated texts state
    (case-insensitive substring), or None when the inputs hold none."""
    stated = total = 0
    for text, hypothesis in zip(inputs, hypotheses):
        lowered = hypothesis.lower()
        for value in slot_values(text, keys):
            total += 1
            stated += value.lower() in lowered
    return stated / total if total else None
