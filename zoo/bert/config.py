"""Settings of the BERT entries (`bert_classifier`, `bert_mlm`), with their presets."""

import dataclasses
import json

from zoo import fileio
from zoo.config import ConfigError, keras_hub_preset_config

# Fields that fix the backbone's weights: a pretrained backbone (preset, --init_from) must
# agree with the config on all of them.
ARCHITECTURE = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                "max_sequence_length")


@dataclasses.dataclass
class BertConfig:
    """What both BERT entries share; every field can be set with `--config=KEY=VALUE`.

    Attributes:
        vocabulary_size: most WordPiece tokens learned from the training text.
        num_layers, num_heads, hidden_dim, intermediate_dim: the transformer's sizes.
        dropout: dropout rate in the backbone (and before the classifier's head).
        max_sequence_length: positions the backbone has embeddings for.
        sequence_length: tokens per example, `[CLS]` and `[SEP]` included (longer texts are cut).
        lowercase: uncased BERT (lower-case, strip accents) tokenization.
        text_column: CSV/TSV column or JSONL key (TFDS feature) of the text.
        label_column: the same for the label.
        skip_bad_rows: leave out rows with an empty text, a missing or an unknown label, and
            report how many, instead of failing on the first.
        validation_data: a file or folder of held-out examples; when empty, a file `--data`
            is split 90/10 with a fixed seed.
        preset_dir: a local keras-hub BERT preset directory (`save_to_preset`): its vocabulary,
            and its weights to start from. Set by `--preset=PATH`.
        eval_examples: held-out examples scored after each epoch (0: all).
    """

    vocabulary_size: int = 8000
    num_layers: int = 4
    num_heads: int = 4
    hidden_dim: int = 256
    intermediate_dim: int = 1024
    dropout: float = 0.1
    max_sequence_length: int = 512
    sequence_length: int = 64
    lowercase: bool = True
    text_column: str = "text"
    label_column: str = "label"
    skip_bad_rows: bool = False
    validation_data: str = ""
    preset_dir: str = ""
    eval_examples: int = 0

    def __post_init__(self):
        if self.hidden_dim % self.num_heads:
            raise ConfigError(f"--config hidden_dim={self.hidden_dim} must be a multiple of "
                              f"num_heads={self.num_heads}.")
        if not 3 <= self.sequence_length <= self.max_sequence_length:
            raise ConfigError(f"--config sequence_length={self.sequence_length}: expected 3 to "
                              f"max_sequence_length={self.max_sequence_length}.")

    @classmethod
    def from_preset_directory(cls, path):
        """The config of a local keras-hub BERT preset directory (`--preset=PATH`)."""
        backbone = keras_hub_preset_config(path, "BertBackbone")
        lowercase = True
        tokenizer_file = fileio.join(path, "tokenizer.json")
        if fileio.isfile(tokenizer_file):
            lowercase = json.loads(fileio.read_text(tokenizer_file))["config"].get("lowercase", True)
        fields = {k: backbone[k] for k in ARCHITECTURE}
        return cls(**fields, dropout=backbone.get("dropout", 0.1), lowercase=lowercase,
                   preset_dir=fileio.absolute(path),
                   sequence_length=min(cls.sequence_length, backbone["max_sequence_length"]))


def _presets(cls):
    # `tiny` is for tests: no dropout, so a step on two replicas equals one on one device
    # (dropout masks depend on how a batch is split).
    return {
        "tiny": lambda: cls(vocabulary_size=400, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                            max_sequence_length=64, sequence_length=32, dropout=0.0),
        "small": lambda: cls(),  # 4 layers, 256 hidden, 4 heads
        "base": lambda: cls(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768,
                            intermediate_dim=3072, sequence_length=128),
    }


@dataclasses.dataclass
class BertClassifierConfig(BertConfig):
    """Classifier settings, beside `BertConfig`'s.

    Attributes:
        label_names: comma-separated labels in output order; when empty they are learned
            from the training data (sorted, numerically when all are integers).
        class_weights: "" (none), "balanced" (inverse class frequency in the training data),
            or `name:weight,...` for each label.
        init_from: a `bert_mlm` workdir whose pretrained backbone (and vocabulary) the
            classifier starts from (`--init_from=WORKDIR`).
        pooling: what the head reads: "cls" (BERT's `[CLS]` vector through its tanh
            pooler) or "mean" (the average of the final token vectors, padding left out).
        label_smoothing: share of each training target spread evenly over the labels
            (validation losses are not smoothed).
        token_dropout: share of each training text's word pieces replaced by `[MASK]`
            (drawn in the input pipeline from stateless seeds, like the masked LM's masks).
        rdrop: R-Drop (Liang et al., 2021): each training batch goes through the model twice
            (two dropout masks), the loss is the two passes' mean cross-entropy plus `rdrop`
            times the symmetric KL divergence between their predicted distributions; twice
            the training compute per step (0: off; weight 1 on SST-2 from scratch: 81.54 /
            79.59 at two seeds against 80.62 / 80.62 without, WORKSPACE_NOTES.md, session 15).
        ensemble_size: classifiers trained side by side in one run, each from its own random
            start and in its own data order, with its own loss and gradient clipping, served as
            one model predicting the mean of their probabilities; each costs one classifier's
            training and serving compute (1: one classifier; on SST-2 from scratch three of 2
            layers were not clearly above one: 80.50 / 80.96 against 81.31 / 80.62 at seeds 0 / 1,
            WORKSPACE_NOTES.md, session 19).
    """

    label_names: str = ""
    class_weights: str = ""
    init_from: str = ""
    pooling: str = "cls"
    label_smoothing: float = 0.0
    token_dropout: float = 0.0
    rdrop: float = 0.0
    ensemble_size: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.ensemble_size < 1:
            raise ConfigError(f"--config ensemble_size={self.ensemble_size}: expected 1 or more classifiers.")
        if self.rdrop < 0:
            raise ConfigError(f"--config rdrop={self.rdrop}: expected a weight >= 0 (0: off).")
        if not 0.0 <= self.token_dropout < 1.0:
            raise ConfigError(f"--config token_dropout={self.token_dropout}: expected a share in [0, 1).")
        if self.pooling not in ("cls", "mean"):
            raise ConfigError(f"--config pooling={self.pooling}: expected cls or mean.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--config label_smoothing={self.label_smoothing}: expected a share in [0, 1).")


OBJECTIVES = ("mlm", "electra", "clm")


@dataclasses.dataclass
class BertMlmConfig(BertConfig):
    """Masked-language-model settings, beside `BertConfig`'s.

    Attributes:
        mask_rate: share of the word pieces chosen for prediction (BERT: 0.15); of those,
            80% become `[MASK]`, 10% a random token, 10% stay.
        max_predictions: most masked positions per example (0: `mask_rate` of
            `sequence_length`, rounded up).
        pack: training rows are filled with consecutive texts (each ending in `[SEP]`, in
            shuffled order) instead of one padded text each (RoBERTa's "full sentences"):
            short texts then cost no padding, and an epoch is one pass over the text.
            Validation keeps one text a row.
        objective: "mlm" (BERT's: the backbone predicts the masked word pieces) or "electra"
            (Clark et al., 2020: a small masked-LM generator fills the masked positions with
            its samples and the backbone learns, at every position, whether the word piece
            is the original or a replacement; the backbone then learns from every word
            piece, not only the masked ones), or "clm" (causal LM: each word piece attends
            only to itself and those before it and the backbone predicts the next one, so
            every word piece is a target; at fine-tuning time the backbone attends both ways,
            as after "mlm").
        generator_size: with electra, the generator's width (heads, hidden and intermediate
            sizes) as a share of the backbone's, with the same number of layers (the paper's
            best: 1/4 to 1/2).
        detection_weight: with electra, the weight of the replaced-token loss beside the
            generator's masked-LM loss (the paper's 50).
    """

    mask_rate: float = 0.15
    max_predictions: int = 0
    pack: bool = True
    objective: str = "mlm"
    generator_size: float = 0.25
    detection_weight: float = 50.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.mask_rate < 1.0:
            raise ConfigError(f"--config mask_rate={self.mask_rate}: expected a share between 0 and 1.")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--config objective={self.objective}: expected one of "
                              f"{', '.join(OBJECTIVES)}.")
        if not 0.0 < self.generator_size <= 1.0:
            raise ConfigError(f"--config generator_size={self.generator_size}: expected a share in (0, 1].")
        if self.detection_weight <= 0:
            raise ConfigError(f"--config detection_weight={self.detection_weight}: expected a weight > 0.")

    def generator_sizes(self):
        """(num_heads, hidden_dim, intermediate_dim) of ELECTRA's generator: `generator_size` of
        the backbone's, the heads keeping the backbone's width per head (at least one)."""
        heads = max(1, round(self.num_heads * self.generator_size))
        head_dim = self.hidden_dim // self.num_heads
        return heads, heads * head_dim, max(1, round(self.intermediate_dim * self.generator_size))


BertClassifierConfig.PRESETS = _presets(BertClassifierConfig)
BertMlmConfig.PRESETS = _presets(BertMlmConfig)
