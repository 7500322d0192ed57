"""The `zoo` command: a thin layer of absl flags over `zoo.commands`.

    zoo list
    zoo train --model=translator --workdir=/tmp/dates [--data=builtin:dates] [--preset=small]
              [--steps=N | --epochs=N] [--batch_size=N] [--config=KEY=VALUE ...]
    zoo evaluate --workdir=DIR [--data=SOURCE]
    zoo predict --workdir=DIR INPUT ...
    zoo export --workdir=DIR [--formats=saved_model,tflite]

`zoo SUBCOMMAND --help` explains every flag. From Python: `zoo.cli.main(["train", ...])`
returns the exit code, or call the functions in `zoo.commands` directly.
"""

import json
import os
import sys

from absl import flags

USAGE = __doc__.split("\n\n")[1]


def _define_common(fv):
    flags.DEFINE_string("workdir", None, "Folder that holds the model's config, vocabularies, "
                        "checkpoints, logs and exports.", flag_values=fv)


def _define_train(fv):
    _define_common(fv)
    flags.DEFINE_string("model", None, "Registered model name (see `zoo list`).", flag_values=fv)
    flags.DEFINE_string("data", None, "Training data: a file or folder path, tfds:NAME[:SPLIT], or "
                        "builtin:NAME for data the zoo generates. Default: the model's builtin data.",
                        flag_values=fv)
    flags.DEFINE_string("preset", None, "Model size preset (default small): tiny, small or base; for BERT models also the "
                        "path of a local keras-hub preset directory (pretrained weights and vocabulary).",
                        flag_values=fv)
    flags.DEFINE_string("init_from", None, "A workdir whose pretrained weights and vocabulary training starts "
                        "from (same --preset): bert_classifier from bert_mlm, t5 from t5_pretrain.",
                        flag_values=fv)
    flags.DEFINE_string("teacher", None, "A trained workdir of the same model and task whose predictions the "
                        "model also learns from (knowledge distillation; --config distill_alpha=, "
                        "distill_temperature=); several, separated by commas, teach as an ensemble (the mean of "
                        "their distributions). The student takes the teacher's vocabulary and labels.",
                        flag_values=fv)
    flags.DEFINE_bool("skip_bad_rows", False, "Leave out bad data rows (empty text, missing or unknown label) "
                      "and report how many, instead of failing on the first one.", flag_values=fv)
    flags.DEFINE_integer("steps", None, "Total training steps (wins over --epochs).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("epochs", None, "Passes over the training split.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", None, "Global batch size.", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("strategy", "auto", ["auto", "cpu", "one_device", "mirrored", "multi_worker", "tpu"],
                      "Distribution: auto picks a TPU when one resolves, MirroredStrategy over several "
                      "GPUs, else one device; multi_worker reads TF_CONFIG; tpu uses --tpu.", flag_values=fv)
    flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu (empty on a TPU VM).",
                        flag_values=fv)
    flags.DEFINE_multi_string("config", [], "KEY=VALUE override of a model or trainer setting; "
                              "repeat for several. An unknown key lists the valid ones.", flag_values=fv)


def _define_checkpoint(fv):
    flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: latest, best (kept by early stopping in "
                        "checkpoints/best/) or a step number.", flag_values=fv)


def _define_predict(fv):
    _define_common(fv)
    _define_checkpoint(fv)


def _define_evaluate(fv):
    _define_common(fv)
    _define_checkpoint(fv)
    flags.DEFINE_string("data", None, "Data to score, all of it (a file, a folder, or tfds:NAME:SPLIT's "
                        "split). Default: the validation split of the data the model was trained on.",
                        flag_values=fv)


def _define_export(fv):
    _define_common(fv)
    _define_checkpoint(fv)
    flags.DEFINE_string("data", None, "Data whose held-out examples check the artifacts (and calibrate int8). "
                        "Default: the data the model was trained on.", flag_values=fv)
    flags.DEFINE_list("formats", ["saved_model", "tflite"], "Artifacts to write under "
                      "WORKDIR/export: saved_model (TF Serving layout), keras (.keras file), tflite.",
                      flag_values=fv)
    flags.DEFINE_list("quantize", ["none"], "TFLite variants: none (float32), float16, dynamic (int8 "
                      "weights), int8 (full integer, calibrated on training inputs); for pruned models also "
                      "sparse, sparse_dynamic and sparse_int8 (zeros left out of the file).", flag_values=fv)
    flags.DEFINE_bool("int8_io", False, "int8 inputs and outputs for the int8 variant (Edge TPU).", flag_values=fv)
    flags.DEFINE_bool("verify", True, "Run every artifact on --num_checks held-out examples and compare it "
                      "with the Keras model (SavedModel in a fresh process); a failed check removes the artifact "
                      "and fails the export. --noverify writes artifacts unchecked (the manifest says so).",
                      flag_values=fv)
    flags.DEFINE_float("max_abs_diff", 1e-4, "Largest absolute difference allowed between a float output of a "
                       "float artifact and Keras's, beyond 1e-6 of the output's size (a few float32 "
                       "rounding steps); tokens, labels and strings must match exactly.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("max_metric_drop", 1.0, "Most task-metric points a quantized TFLite model may lose "
                       "against Keras on the held-out examples.", flag_values=fv)
    flags.DEFINE_integer("num_checks", 100, "Held-out examples every artifact is checked on.", lower_bound=1,
                         flag_values=fv)


def _list(fv, args):
    from zoo import registry

    for name in registry.names():
        print(f"{name}\t{registry.get(name).description}")


def _train(fv, args):
    from zoo import commands

    overrides = list(fv.config)
    if fv.init_from:
        overrides.append(f"init_from={fv.init_from}")  # stored absolute by commands.train
    if fv.teacher:
        overrides.append(f"teacher={fv.teacher}")
    if fv.skip_bad_rows:
        overrides.append("skip_bad_rows=true")
    result = commands.train(fv.model, fv.workdir, data=fv.data, preset=fv.preset, steps=fv.steps,
                            epochs=fv.epochs, batch_size=fv.batch_size, overrides=overrides,
                            strategy=fv.strategy, tpu=fv.tpu)
    print(json.dumps(result))


def _evaluate(fv, args):
    from zoo import commands

    print(json.dumps(commands.evaluate(fv.workdir, data=fv.data, checkpoint=fv.checkpoint)))


def _predict(fv, args):
    from zoo import commands

    if not args:
        raise UsageError("zoo predict: give at least one INPUT after the flags.")
    for text, prediction in zip(args, commands.predict(fv.workdir, args, checkpoint=fv.checkpoint)):
        if "\n" in text + prediction:  # a language model's continuation: the text as written
            print(f"--- {text!r}\n{text}{prediction}")
        else:
            print(f"{text}\t{prediction}")


def _export(fv, args):
    from zoo import commands

    manifest = commands.export(fv.workdir, checkpoint=fv.checkpoint, data=fv.data, formats=fv.formats, num_checks=fv.num_checks, quantize=fv.quantize,
                               int8_io=fv.int8_io, verify=fv.verify, max_abs_diff=fv.max_abs_diff,
                               max_metric_drop=fv.max_metric_drop)
    for artifact in manifest["artifacts"]:
        print(f"{artifact['format']}\t{artifact['path']}\t{artifact['size_bytes']} bytes")
    print(json.dumps(manifest))


COMMANDS = {
    "list": (lambda fv: None, _list, [], "List the registered models."),
    "train": (_define_train, _train, ["model", "workdir"], "Train a model, or resume a workdir's training."),
    "evaluate": (_define_evaluate, _evaluate, ["workdir"], "Task metrics; the last line is one JSON object."),
    "predict": (_define_predict, _predict, ["workdir"], "Predictions for raw INPUTs given after the flags."),
    "export": (_define_export, _export, ["workdir"], "Export SavedModel and TFLite artifacts, checked."),
}


class UsageError(ValueError):
    pass


def _config_help():
    """The keys `--config` accepts, with their small-preset defaults."""
    import dataclasses

    from trainers import TrainerConfig
    from zoo import registry

    def keys(config):
        return "\n".join(f"    {f.name} = {getattr(config, f.name)!r}" for f in dataclasses.fields(config))

    parts = [f"\n--config keys of the trainer (trainers/config.py):\n{keys(TrainerConfig())}"]
    for name in registry.names():
        cls = registry.get(name)
        parts.append(f"--config keys of model {name!r} (preset small):\n{keys(cls.preset('small'))}")
        if cls.trainer_defaults:
            parts.append(f"  trainer defaults of {name!r}: "
                         + ", ".join(f"{k}={v!r}" for k, v in cls.trainer_defaults.items()))
        metric, mode = cls.validation_metric
        parts.append(f"  length without --steps/--epochs: {cls.training_length.describe()}; "
                     f"task metric (early_stopping_metric=task): {metric} ({mode})")
    return "\n".join(parts)


def _usage():
    lines = [USAGE, "", "Subcommands:"]
    lines += [f"  {name:9s} {spec[3]}" for name, spec in COMMANDS.items()]
    return "\n".join(lines)


def main(argv):
    """Runs `zoo` with `argv` (without the program name); returns the exit code."""
    from trainers.strategy import StrategyError
    from trainers.trainer import PREEMPTED_EXIT_CODE, Preempted, TrainingError
    from export.errors import ExportError
    from zoo.config import ConfigError
    from zoo.sources import DataError
    from zoo.workdir import WorkdirError

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"zoo: unknown subcommand {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    define, run, required, summary = COMMANDS[name]
    fv = flags.FlagValues()
    define(fv)
    if "--help" in rest or "-h" in rest or "--helpfull" in rest:
        extra = _config_help() if name == "train" else ""
        print(f"zoo {name}: {summary}\n\n{fv.get_help() or '  (no flags)'}{extra}")
        return 0
    try:
        args = fv(["zoo " + name] + rest)[1:]
        missing = [f"--{r}" for r in required if getattr(fv, r) is None]
        if missing:
            raise UsageError(f"zoo {name}: missing required flag(s) {', '.join(missing)}; see `zoo {name} --help`.")
        if args and name != "predict":
            raise UsageError(f"zoo {name}: unexpected arguments {args}; see `zoo {name} --help`.")
        run(fv, args)
    except Preempted as e:
        print(f"zoo {name}: {e}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except flags.Error as e:
        print(f"zoo {name}: error: {e}\nSee `zoo {name} --help`.", file=sys.stderr)
        return 2
    except (UsageError, ConfigError, DataError, WorkdirError, StrategyError, TrainingError, ExportError,
            KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"zoo {name}: error: {message}", file=sys.stderr)
        return 1 if isinstance(e, (TrainingError, ExportError)) else 2
    return 0


def quiet_native_logs():
    """Keeps TensorFlow's native start-up lines (oneDNN, CUDA, cpu_feature_guard, absl) off the
    console, unless `TF_CPP_MIN_LOG_LEVEL` asks for them (0 or 1).

    TensorFlow 2.21 writes them through absl before absl's logging is initialized, straight to
    file descriptor 2, whatever `TF_CPP_MIN_LOG_LEVEL` says. So descriptor 2 is pointed at
    /dev/null, and Python's own `sys.stderr` (the zoo's errors, tracebacks, warnings) at a copy
    of the original descriptor: only native writes are dropped.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if level in ("0", "1"):
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(original, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")


def run():
    """Console-script entry point."""
    quiet_native_logs()
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
