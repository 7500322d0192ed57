"""Exported artifacts of one trained model: sizes, batch-1 latencies, quantized metric, memory.

    python benchmarks/export_artifacts.py [--model=translator|bert_classifier|t5] [--steps=N] [--workdir=W]

Trains the model (translator: preset small on `builtin:dates`; bert_classifier: preset small
on `../shared/data/classification/sst2_train.tsv`, SST-2 dev as the held-out split; t5: preset
mini on `../shared/data/text2text/e2e.tsv` with the README's E2E settings), then:
1. `zoo export --formats=saved_model,keras,tflite --quantize=...` (every variant the model
   has) under `/usr/bin/time -v` (peak RSS of the whole process tree; conversions run in
   child processes);
2. the memory references under `/usr/bin/time -v`: one float32 TFLite conversion alone
   (`python -m export.convert_child` on one frozen function), and
   `zoo export --formats=tflite --quantize=none` (the same command, float32 TFLite only);
and prints, from the manifest, each artifact's size against float32, its batch-1 median
latency beside the SavedModel's and the Keras model's (measured in the same export), and the
task metric (translator: chrF on 100 held-out dates; classifier: accuracy on all 872 SST-2
dev sentences; t5: chrF on the 98 held-out E2E inputs) of each artifact against Keras.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, "..", "shared", "data", "classification")
E2E = os.path.join(ROOT, "..", "shared", "data", "text2text", "e2e.tsv")
MODELS = {
    "translator": {"train": ["--preset=small", "--config=eval_examples=200"], "steps": 800,
                   "quantize": "none,float16,dynamic", "checks": 100, "reference": "beam_search_tokens"},
    # The entries' own defaults (optimizer, schedule, batch); only the length and the data are set.
    "bert_classifier": {"train": ["--preset=small", f"--data={SST2}/sst2_train.tsv",
                                  f"--config=validation_data={SST2}/sst2_dev.tsv"],
                        "steps": 600, "quantize": "none,float16,dynamic,int8", "checks": 872,
                        "reference": "classify_ids"},
    # The README's E2E command (delexicalized names); 900 steps is about 4 epochs.
    "t5": {"train": ["--preset=mini", f"--data={E2E}", "--config=max_input_length=96",
                     "--config=max_target_length=64", "--config=delexicalize=name,near"],
           "steps": 900, "quantize": "none,float16,dynamic", "checks": 98, "reference": "greedy_tokens"},
}
flags.DEFINE_enum("model", "translator", list(MODELS), "The model to train and export.")
flags.DEFINE_integer("steps", None, "Training steps before exporting (default: per model).")
flags.DEFINE_string("workdir", "", "Export this workdir, trained earlier by this benchmark for the same "
                    "--model (its export/ is replaced), instead of training a new one.")


def timed(cmd):
    """Runs `cmd` under /usr/bin/time -v; returns (stdout, peak RSS in MiB)."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return proc.stdout, kib / 1024


def main(argv):
    del argv
    spec = MODELS[FLAGS.model]
    steps = FLAGS.steps or spec["steps"]
    needed = {"bert_classifier": os.path.join(SST2, "sst2_train.tsv"), "t5": E2E}.get(FLAGS.model)
    if needed and not os.path.exists(needed):
        print(f"skipped: {needed} not found (the shared data folder is absent)")
        return
    zoo = [sys.executable, "-m", "zoo.cli"]
    workdir = FLAGS.workdir
    if workdir:
        with open(os.path.join(workdir, "zoo.json")) as f:
            record = json.load(f)
        if record["model"] != FLAGS.model:
            raise app.UsageError(f"--workdir={workdir} holds a {record['model']!r}, not --model={FLAGS.model}.")
    else:
        workdir = tempfile.mkdtemp(prefix="bench-export-")
        subprocess.run(zoo + ["train", f"--model={FLAGS.model}", f"--workdir={workdir}", f"--steps={steps}",
                              *spec["train"]],
                       check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True)
    out, export_mib = timed(zoo + ["export", f"--workdir={workdir}", "--formats=saved_model,keras,tflite",
                                   f"--quantize={spec['quantize']}", f"--num_checks={spec['checks']}"])
    manifest = json.loads(out.strip().splitlines()[-1])

    # The memory reference: one float32 conversion of the same function, alone.
    from export import tflite
    from zoo import commands

    entry, trainer, source = commands.restore(workdir)
    steps = int(trainer.step.numpy())  # what the checkpoint holds (a --workdir may have stopped on max_seconds)
    frozen = os.path.join(workdir, "frozen-reference")
    name = spec["reference"]
    tflite.freeze(entry.serving_functions(trainer.model)[name].fn, name, frozen)
    _, single_mib = timed([sys.executable, "-m", "export.convert_child", frozen, name,
                           os.path.join(workdir, "single.tflite"), tflite.BUILTINS, "none"])

    # And the float32 TFLite export alone through the same command (parent process included).
    _, float_only_mib = timed(zoo + ["export", f"--workdir={workdir}", "--formats=tflite", "--quantize=none"])

    arts = manifest["artifacts"]
    sm = next(a for a in arts if a["format"] == "saved_model")
    metric = next(a["parity"]["metric"] for a in arts if a["format"] == "tflite")
    with open(os.path.join(workdir, "zoo.json")) as f:
        preset = json.load(f).get("preset")
    print(f"\n== {FLAGS.model} ({preset}, {steps} steps); validation: {json.dumps(manifest.get('training_metrics'))}")
    print(f"Keras serving_default batch-1 median latency: {manifest['keras_latency_ms_batch1']:.2f} ms; "
          f"SavedModel (fresh process, strings in/out): {sm['latency_ms_batch1']:.2f} ms, {sm['size_bytes']:,} bytes")
    # The same artifacts on one interpreter thread (LiteRT's own default) beside the export's
    # figure, measured on `latency_threads` threads (the usable cores, as the SavedModel uses).
    servables = entry.serving_functions(trainer.model)
    inputs = entry.held_out_examples(source, 50)[0]
    one_thread = {a["path"]: tflite.run_rows(a["path"], a["signature"], servables[a["signature"]].encode(inputs),
                                             a["xnnpack"], num_threads=1)[1]
                  for a in arts if a["format"] == "tflite"}
    print(f"{'TFLite artifact':46s} {'bytes':>11s} {'x fp32':>7s} {'ms b=1':>7s} {'x SM':>5s} {'1 thr':>6s} "
          f"{metric + ' keras':>14s} {metric + ' tflite':>15s} {'mismatch':>8s}")
    for a in (a for a in arts if a["format"] == "tflite"):
        fp32 = next(b for b in arts if b.get("signature") == a["signature"] and b["quantization"] == "none")
        p = a["parity"]
        print(f"{os.path.basename(a['path']):46s} {a['size_bytes']:11,d} {a['size_bytes'] / fp32['size_bytes']:7.2f} "
              f"{a['latency_ms_batch1']:7.2f} {a['latency_ms_batch1'] / sm['latency_ms_batch1']:5.2f} "
              f"{one_thread[a['path']]:6.2f} {p['keras']:14.2f} {p['tflite']:15.2f} {p['mismatches']:5d}/{p['checked']}")
    print(f"(ms b=1: median batch-1 latency, on XNNPACK where it takes the model, "
          f"{next(a for a in arts if a['format'] == 'tflite').get('latency_threads')} interpreter threads; x SM: "
          f"against the SavedModel's batch-1 latency (strings in: tokenization included); 1 thr: the same artifact "
          f"on one thread)")
    for skipped in manifest.get("skipped", []):
        print(f"skipped {skipped['signature']} {skipped['quantization']}: {skipped['reason']}")
    print(f"\n== Memory (peak RSS, /usr/bin/time -v): every format and quantization {export_mib:.0f} MiB")
    print(f"  vs one float32 conversion alone (converter process) {single_mib:.0f} MiB: ratio {export_mib / single_mib:.2f}")
    print(f"  vs `zoo export --formats=tflite --quantize=none` {float_only_mib:.0f} MiB: "
          f"ratio {export_mib / float_only_mib:.2f} (target at most 1.5)")


if __name__ == "__main__":
    app.run(main)
