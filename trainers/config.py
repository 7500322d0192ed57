"""Trainer settings: a typed dataclass whose fields `--config=KEY=VALUE` can set."""

import dataclasses


@dataclasses.dataclass
class TrainerConfig:
    """How a zoo model is trained (not what it is).

    Attributes:
        steps: total optimizer steps; 0 means `epochs` passes over the training split.
        epochs: passes over the training split when `steps` is 0; 0 (the default) lets the
            model pick from the data's size (`ZooEntry.training_length`), and the trainer
            prints what it picked.
        batch_size: global batch size (split over workers and replicas; must divide evenly).
        optimizer: "adam" or "adamw".
        learning_rate: peak learning rate.
        lr_schedule: "constant", "linear" or "cosine" decay to 0 at the last step.
        warmup_steps: linear warmup from 0 to `learning_rate` over this many steps.
        warmup_fraction: when `warmup_steps` is 0, warm up over this share of the planned
            steps (of the steps that fit `max_seconds`, with a time budget).
        weight_decay: AdamW decoupled weight decay.
        beta_1: Adam/AdamW first-moment decay (0.9; DCGAN's recipe uses 0.5).
        clipnorm: clip the global gradient to this norm (0: no clipping); an entry may have
            groups of variables clipped each on its own (`Phase.clip_groups`: an ensemble's members).
        mixed_precision: "auto" (the default): bfloat16 compute with float32 variables where the
            hardware has bfloat16 units (a TPU, GPUs of capability 8.0+, CPUs with AVX512_BF16
            or AMX), float32 elsewhere (`trainers/precision.py`); "float32" (or ""),
            "mixed_bfloat16", or "mixed_float16" (GPU; with dynamic loss scaling) force one.
        checkpoint_every: steps between checkpoints (one is always written at the end).
        keep_checkpoints: checkpoints kept on disk.
        log_every: steps between log lines, TensorBoard scalars and `metrics.jsonl` rows.
        steps_per_execution: steps run inside one `tf.function` call (the host syncs once per
            call; chunks never cross a log, checkpoint or epoch boundary).
        jit_compile: compile the training step with XLA.
        seed: seeds weights, dropout and the data order.
        deterministic: make every op deterministic (bitwise-reproducible runs, slower).
        max_seconds: a wall-time budget for this run (0: none). The learning-rate schedule's
            decay is fitted to it (the trainer re-estimates, from the measured time per step,
            how many steps fit, evaluations included), and training stops when it is spent,
            with a checkpoint and an evaluation as at the last step.
        early_stopping_metric: validation metric watched after each epoch ("" : off), e.g.
            "val_loss" or "chrf", or "task" for the model's own task metric (accuracy, chrF,
            negative ELBO, Fréchet distance; `zoo list` shows it); its best checkpoint is kept
            in `checkpoints/best/`.
        early_stopping_mode: "min", "max", or "auto" (the task metric's own direction; else
            min for names containing "loss" or "distance").
        early_stopping_patience: evaluations without improvement before training stops.
        teacher: a trained workdir of the same model and task (`--teacher=WORKDIR`) whose
            predictions the model also learns from (knowledge distillation); several separated by
            commas teach as an ensemble (the mean of their distributions at `T`); "" : none.
        distill_alpha: the task loss's weight; the distillation term gets `1 - alpha`.
        distill_temperature: `T`: both models' logits are divided by it before the KL
            divergence, which is multiplied by `T^2` (Hinton et al. 2015). A teacher is sure
            of the examples it trained on; 4 softens that enough to carry more than the labels
            (on SST-2, 2 lost to the student trained alone: WORKSPACE_NOTES.md "Issue 15").
        prune_sparsity: share of each pruned weight tensor set to zero by the end of pruning
            (0: no pruning); gradual magnitude pruning (`trainers/pruning.py`).
        prune_begin_step, prune_end_step: where the sparsity rises from 0 to `prune_sparsity`
            (Zhu and Gupta's cubic schedule); an end of 0 means two thirds of the planned steps.
        prune_frequency: steps between mask updates.
        prune_variables: comma-separated regular expressions searched in the paths of the
            trainable weights to prune (default: dense, convolution and LSTM kernels; add
            `embeddings$` to prune embedding tables too).
        prune_structure: "unstructured", or "2:4" (2 of every 4 consecutive input weights
            kept; needs `prune_sparsity=0.5`).
        profile_steps: "A-B" traces steps A to B with TensorFlow's profiler into
            `WORKDIR/logs/profile/` (TensorBoard's Profile tab) and prints the ops that took the
            most time (`trainers/profiling.py`); "" (the default): no tracing. Pick steps after
            the first chunk, whose time is mostly tracing.
    """

    steps: int = 0
    epochs: int = 0
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    warmup_fraction: float = 0.0
    weight_decay: float = 0.01
    beta_1: float = 0.9
    clipnorm: float = 1.0
    mixed_precision: str = "auto"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 100
    steps_per_execution: int = 10
    jit_compile: bool = False
    seed: int = 0
    deterministic: bool = False
    max_seconds: float = 0.0
    early_stopping_metric: str = ""
    early_stopping_mode: str = "auto"
    early_stopping_patience: int = 3
    teacher: str = ""
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    prune_sparsity: float = 0.0
    prune_begin_step: int = 0
    prune_end_step: int = 0
    prune_frequency: int = 100
    prune_variables: str = r"(^|/)(recurrent_)?kernel$"
    prune_structure: str = "unstructured"
    profile_steps: str = ""
