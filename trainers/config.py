"""Trainer settings: a typed dataclass whose fields `--config=KEY=VALUE` can set."""

import dataclasses


@dataclasses.dataclass
class TrainerConfig:
    """How a zoo model is trained (not what it is).

    Attributes:
        steps: total optimizer steps; 0 means `epochs` passes over the training split.
        epochs: passes over the training split when `steps` is 0.
        batch_size: global batch size (split over replicas).
        optimizer: "adam" or "adamw".
        learning_rate: peak learning rate.
        weight_decay: AdamW decoupled weight decay.
        clipnorm: clip gradients to this global norm (0: no clipping).
        checkpoint_every: steps between checkpoints (one is always written at the end).
        keep_checkpoints: checkpoints kept on disk.
        log_every: steps between log lines, TensorBoard scalars and `metrics.jsonl` rows.
        steps_per_execution: steps run inside one `tf.function` call (the host syncs once per
            call; chunks never cross a log, checkpoint or epoch boundary).
        jit_compile: compile the training step with XLA.
        seed: seeds weights, dropout and the data order.
        deterministic: make every op deterministic (bitwise-reproducible runs, slower).
        max_seconds: stop after this much training wall time in this run (0: no limit);
            a checkpoint is written and the model evaluated as at the last step.
    """

    steps: int = 0
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 100
    steps_per_execution: int = 10
    jit_compile: bool = False
    seed: int = 0
    deterministic: bool = False
    max_seconds: float = 0.0
