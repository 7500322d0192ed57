"""Settings of the `lstm_lm` entry, with its presets."""

import dataclasses

from zoo.config import ConfigError


@dataclasses.dataclass
class LstmLmConfig:
    """Language-model settings; every field can be set with `--config=KEY=VALUE`.

    Attributes:
        vocabulary: "char" (every character of the training text is a token) or "spm" (a
            SentencePiece vocabulary of at most `vocab_size` pieces learned from it).
        vocab_size: most pieces of an "spm" vocabulary (ignored for "char").
        embedding_dim: size of the token embedding.
        units: LSTM state size of every layer.
        num_layers: stacked LSTM layers.
        dropout: dropout between layers and on the last layer's output.
        embedding_dropout: dropout on the embedded tokens.
        tie_embeddings: the output layer reuses the embedding matrix (a projection from
            `units` to `embedding_dim` first when they differ).
        sequence_length: tokens per training window.
        carry_state: carry every layer's state from one window to the next (truncated
            backpropagation through time): rows of a batch then read consecutive windows
            of one stream each, and the states are part of the checkpoint. Otherwise each
            window starts at a random position of the text, from a zero state.
        validation_fraction: the tail of the text (by characters) held out for validation
            when the data has no validation split of its own.
        eval_characters: most characters of the validation text scored after each epoch
            (0: all of it).
        max_prompt_length: most tokens of a prompt (longer ones are refused).
        max_length: most tokens generated (the size of the generation buffer).
        temperature: divides the logits before sampling (0: the most likely token).
        top_k: sample from the `top_k` most likely tokens only (0: all).
        top_p: sample from the most likely tokens holding `top_p` of the probability (1: all).
        sample_seed: the seed of `predict` and of the served configured generation.
        stop: strings that end a generation (comma-separated; the text is cut before the
            first one); the document separator always ends it.
        text_key: TFDS feature holding the text (empty: the dataset's only text feature).
    """

    vocabulary: str = "char"
    vocab_size: int = 2000
    embedding_dim: int = 128
    units: int = 512
    num_layers: int = 1
    dropout: float = 0.2
    embedding_dropout: float = 0.1
    tie_embeddings: bool = False
    sequence_length: int = 64
    carry_state: bool = True
    validation_fraction: float = 0.1
    eval_characters: int = 0
    max_prompt_length: int = 256
    max_length: int = 200
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    sample_seed: int = 0
    stop: str = ""
    text_key: str = ""

    def __post_init__(self):
        if self.vocabulary not in ("char", "spm"):
            raise ConfigError(f"--config vocabulary={self.vocabulary!r}: expected 'char' or 'spm'.")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"--config validation_fraction={self.validation_fraction}: expected 0 < value < 1.")
        for key in ("sequence_length", "max_prompt_length", "max_length", "units", "embedding_dim", "num_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--config {key}={getattr(self, key)}: expected a positive number.")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--config top_p={self.top_p}: expected 0 < value <= 1.")

    @property
    def stop_strings(self):
        return tuple(s for s in self.stop.split(",") if s)


def _tiny():
    # Windows at random places (the small preset carries state): tests cover both.
    return LstmLmConfig(vocab_size=200, embedding_dim=16, units=32, num_layers=1, dropout=0.0,
                        embedding_dropout=0.0, sequence_length=32, carry_state=False, eval_characters=2000,
                        max_prompt_length=64, max_length=24)


def _small():
    # One layer of 512 carrying its state over windows of 64 characters: what learns most in
    # minutes of a CPU (WORKSPACE_NOTES.md, "Issue 14").
    return LstmLmConfig()


def _base():
    return LstmLmConfig(embedding_dim=256, units=1024, num_layers=2, dropout=0.3, sequence_length=128)


LstmLmConfig.PRESETS = {"tiny": _tiny, "small": _small, "base": _base}
