"""The developer data each benchmark trains on (`../shared/data`, never copied into the
project), with the flags the README gives for it."""

import os

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
# model: (file under SHARED, `zoo train` flags the README names for it)
DATA = {"bert_classifier": ("classification/sst2_train.tsv",
                            ["--config=validation_data=" + os.path.join(SHARED, "classification", "sst2_dev.tsv")]),
        "vae": ("images/mnist_train.npz", []),
        "gan": ("images/mnist_train.npz", []),
        "translator": ("translation/eng_fra.tsv", []),
        "lstm_lm": ("text/tinyshakespeare_train.txt", []),
        "t5": ("text2text/e2e.tsv", [])}


def path(name):
    """The data file of `name`, or None (with a message) where the shared folder lacks it."""
    data = os.path.join(SHARED, DATA[name][0])
    if not os.path.exists(data):
        print(f"skipped {name}: {data} not found (the shared data folder is absent)")
        return None
    return data
