"""Settings of the T5 entries (`t5`), with their presets."""

import dataclasses

from zoo import fileio
from zoo.config import ConfigError, keras_hub_preset_config

# Fields that fix the backbone's weights: a pretrained start (--preset=PATH, --init_from)
# must agree with the config on all of them.
ARCHITECTURE = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                "key_value_dim", "activation", "use_gated_activation", "tie_embedding_weights")
DECODERS = ("beam", "greedy", "sample")


@dataclasses.dataclass
class T5Config:
    """T5 settings; every field can be set with `--config=KEY=VALUE`.

    Attributes:
        vocabulary_size: most SentencePiece pieces learned from the training inputs and
            targets (T5's pad, end and unknown ids and 100 sentinels `<extra_id_N>` included;
            a small corpus gives fewer).
        num_layers, num_heads, hidden_dim, intermediate_dim, key_value_dim: the sizes of the
            encoder and of the decoder (`key_value_dim` 0: hidden_dim / num_heads).
        activation, use_gated_activation: the feed-forward block (T5 1.0: relu, not gated;
            T5 1.1: gelu, gated).
        tie_embedding_weights: the output projection is the token embedding.
        dropout: dropout rate everywhere in the transformer.
        max_input_length: input tokens kept (the end token included; longer inputs are cut).
        max_target_length: target tokens trained on and generated (the end token included).
        input_column, target_column: CSV/TSV columns (JSONL keys, TFDS features) of the
            input and target texts.
        prefix: text put before every input, e.g. "data to text: " (T5's task prefixes).
        validation_data: a file of held-out pairs; when empty, `--data` is split 90/10 by
            input with a fixed seed (all rows of one input fall on the same side).
        label_smoothing: share of each target token's probability spread over the
            vocabulary in the training loss.
        decode: what `predict`, `evaluate` and `serving_default` use: "beam", "greedy" or
            "sample".
        beam_size, length_penalty: beam search (GNMT length penalty exponent).
        temperature, top_k, top_p, sample_seed: sampling (`decode=sample`, the `sample` signature's
            defaults).
        eval_examples: held-out inputs generated for BLEU/chrF/ROUGE-L after each epoch
            (0: all).
        slot_keys: comma-separated attribute names whose values the output must state, for
            data-to-text inputs written `key : value | key : value` or `key[value], ...`
            (E2E); "*" for every attribute; empty: no slot accuracy.
        delexicalize: comma-separated attribute names of `key : value | ...` inputs whose
            values are replaced by placeholders `<key>` in inputs and targets for training and
            put back after generation (E2E: "name,near"), so names never seen in training are
            copied, not guessed. Empty: off.
        preset_dir: a local keras-hub T5 preset directory (`save_to_preset`): its
            vocabulary and weights to start from. Set by `--preset=PATH`.
        init_from: a `t5` or `t5_pretrain` workdir whose weights (and vocabulary) training
            starts from (`--init_from=WORKDIR`).
    """

    vocabulary_size: int = 32128
    num_layers: int = 6
    num_heads: int = 8
    hidden_dim: int = 512
    intermediate_dim: int = 2048
    key_value_dim: int = 64
    activation: str = "relu"
    use_gated_activation: bool = False
    tie_embedding_weights: bool = True
    dropout: float = 0.1
    max_input_length: int = 128
    max_target_length: int = 32
    input_column: str = "input"
    target_column: str = "target"
    prefix: str = ""
    validation_data: str = ""
    label_smoothing: float = 0.0
    decode: str = "beam"
    beam_size: int = 4
    length_penalty: float = 0.6
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    sample_seed: int = 0
    eval_examples: int = 500
    slot_keys: str = "name,near"
    delexicalize: str = ""
    preset_dir: str = ""
    init_from: str = ""

    def __post_init__(self):
        if self.decode not in DECODERS:
            raise ConfigError(f"--config decode={self.decode!r}: expected one of {', '.join(DECODERS)}.")
        if self.hidden_dim % self.num_heads and not self.key_value_dim:
            raise ConfigError(f"--config hidden_dim={self.hidden_dim} must be a multiple of "
                              f"num_heads={self.num_heads} (or set key_value_dim).")
        for key in ("max_input_length", "max_target_length", "beam_size", "num_layers", "num_heads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--config {key}={getattr(self, key)}: expected a positive integer.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--config label_smoothing={self.label_smoothing}: expected 0 <= value < 1.")
        if not 0.0 < self.top_p <= 1.0 or self.top_k < 0:
            raise ConfigError(f"--config top_p={self.top_p} top_k={self.top_k}: expected 0 < top_p <= 1 "
                              f"and top_k >= 0.")

    @property
    def head_dim(self):
        return self.key_value_dim or self.hidden_dim // self.num_heads

    @classmethod
    def from_preset_directory(cls, path):
        """The config of a local keras-hub T5 preset directory (`--preset=PATH`)."""
        backbone = keras_hub_preset_config(path, "T5Backbone")
        fields = {k: backbone[k] for k in ARCHITECTURE if k in backbone}
        fields["key_value_dim"] = backbone.get("key_value_dim") or 0
        activation = fields.get("activation", "relu")
        fields["activation"] = activation if isinstance(activation, str) else activation.get("config", {}).get(
            "name", "relu")
        return cls(**fields, dropout=backbone.get("dropout", 0.1), preset_dir=fileio.absolute(path))


def _tiny():
    # No dropout: a step on two replicas then equals one on one device.
    return T5Config(vocabulary_size=400, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                    key_value_dim=16, dropout=0.0, max_input_length=32, max_target_length=16, beam_size=2,
                    eval_examples=100)


def _mini():
    # For data sets of thousands of pairs on a CPU (E2E): BERT-small's sizes, 4 + 4 layers.
    return T5Config(num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024, key_value_dim=64)


def _small():
    return T5Config()  # t5-small: 6 + 6 layers, 512 wide, 8 heads of 64, feed-forward 2048


def _base():
    return T5Config(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, key_value_dim=64)


# The sampling seed was `seed` until it shadowed the trainer's (2026-11-27).
T5Config.RENAMED = {"seed": "sample_seed"}
T5Config.PRESETS = {"tiny": _tiny, "mini": _mini, "small": _small, "base": _base}
