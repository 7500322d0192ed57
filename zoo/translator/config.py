"""Settings of the translator entry, with its presets."""

import dataclasses

from zoo.config import ConfigError


@dataclasses.dataclass
class TranslatorConfig:
    """Translator settings; every field can be set with `--config=KEY=VALUE`.

    Attributes:
        source_vocab_size: most SentencePiece pieces learned from the source side.
        target_vocab_size: most pieces learned from the target side.
        embedding_dim: size of the token embeddings.
        units: LSTM state size.
        num_layers: LSTM layers in the encoder and the decoder.
        bidirectional: read the source both ways.
        attention: "luong", "bahdanau" or "none".
        dropout: dropout rate between layers.
        label_smoothing: share of each target token's probability spread evenly over the
            vocabulary in the training loss (validation loss is the plain cross-entropy).
        max_source_length: source tokens kept (longer inputs are cut).
        max_target_length: target tokens produced, the end token included.
        decode: "beam" or "greedy", used by `predict`, `evaluate` and `serving_default`.
        beam_size: hypotheses kept by beam search.
        length_penalty: GNMT length penalty exponent for ranking finished beams.
        tune_decoding: at the end of training, choose the beam size (1, 4, 8) and length
            penalty (0, 0.6, 1, 1.5) by chrF on the validation split's `eval_examples`, and
            decode with them from then on (`assets/decoding.json`; `decode=greedy` keeps greedy).
        source_column: TSV column (from 0) of the source text.
        target_column: TSV column of the target text.
        source_key: TFDS feature of the source text (empty: the dataset's supervised keys).
        target_key: TFDS feature of the target text.
        eval_examples: held-out examples decoded for BLEU/chrF after each epoch (0: all).
        validation_data: a TSV file (or folder) of held-out pairs; when empty, a file
            `--data` is split 90/10 with a fixed seed.
    """

    source_vocab_size: int = 4000
    target_vocab_size: int = 4000
    embedding_dim: int = 128
    units: int = 256
    num_layers: int = 1
    bidirectional: bool = True
    attention: str = "luong"
    dropout: float = 0.2
    label_smoothing: float = 0.1
    max_source_length: int = 24
    max_target_length: int = 24
    decode: str = "beam"
    beam_size: int = 4
    length_penalty: float = 0.6
    tune_decoding: bool = True
    source_column: int = 0
    target_column: int = 1
    source_key: str = ""
    target_key: str = ""
    eval_examples: int = 1000
    validation_data: str = ""

    def __post_init__(self):
        if self.decode not in ("beam", "greedy"):
            raise ConfigError(f"--config decode: must be 'beam' or 'greedy', got {self.decode!r}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--config label_smoothing={self.label_smoothing}: expected 0 <= value < 1.")
        if self.attention not in ("luong", "bahdanau", "none"):
            raise ConfigError(
                f"--config attention: must be 'luong', 'bahdanau' or 'none', got {self.attention!r}."
            )


def _tiny():
    return TranslatorConfig(
        source_vocab_size=200, target_vocab_size=200, embedding_dim=16, units=32,
        dropout=0.0, max_source_length=20, max_target_length=16, beam_size=2,
        eval_examples=100, tune_decoding=False,  # tests: nine decodes after every short run
    )


def _small():
    return TranslatorConfig()


def _base():
    return TranslatorConfig(
        source_vocab_size=8000, target_vocab_size=8000, embedding_dim=256, units=512,
        num_layers=2, dropout=0.3, max_source_length=48, max_target_length=48,
    )


TranslatorConfig.PRESETS = {"tiny": _tiny, "small": _small, "base": _base}
