"""The model zoo: every entry registers itself when its module is imported here."""

from zoo import registry
from zoo.translator import entry as _translator  # noqa: F401  (registers "translator")
from zoo.vae import entry as _vae  # noqa: F401  (registers "vae")
from zoo.gan import entry as _gan  # noqa: F401  (registers "gan")
from zoo.bert import classifier as _bert_classifier  # noqa: F401  (registers "bert_classifier")
from zoo.bert import mlm as _bert_mlm  # noqa: F401  (registers "bert_mlm")
from zoo.t5 import entry as _t5  # noqa: F401  (registers "t5")
from zoo.t5 import pretrain as _t5_pretrain  # noqa: F401  (registers "t5_pretrain")
from zoo.lstm_lm import entry as _lstm_lm  # noqa: F401  (registers "lstm_lm")

__all__ = ["registry"]
