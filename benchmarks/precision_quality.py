"""What `mixed_precision=auto` (bfloat16 on this machine) does to each model: the validation
metric and the training rate against float32, after the same steps.

    python benchmarks/precision_quality.py [--models=bert_classifier,vae,...] [--seeds=0]
        [--steps=bert_classifier=600,vae=2000]

For each model and seed, two runs of the README's command with the entry's defaults on the
developer data, side by side (one core each where `taskset` exists, the two cores swapped
between seeds): `--config=mixed_precision=float32` and the default (`auto`). Both train the
same `--steps` (the schedule fitted to them) from the same seed; the table gives the final
validation metric of each (the entry's own, on its held-out split) and the median training
examples/s from the trainer's log (each run's output: `<workdir>.out` / `.err`). Reads `../shared/data`; a model whose data is absent is
skipped with a message.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.developer_data import DATA, path, precision_line, train_rate  # noqa: E402

FLAGS = flags.FLAGS
STEPS = {"bert_classifier": 600, "vae": 2000, "gan": 1500, "translator": 800, "lstm_lm": 600, "t5": 600}
flags.DEFINE_list("models", list(DATA), "Entries to compare.")
flags.DEFINE_list("seeds", ["0"], "Seeds; each gives one float32 and one auto run.")
flags.DEFINE_list("steps", [], "model=steps overrides of the training length (default: STEPS).")
flags.DEFINE_string("workroot", "", "Where the workdirs go (default: a temporary folder, removed).")


def train(name, data, extra, steps, seed, precision, workdir, core):
    """Starts one run; its output goes to files beside the workdir (two runs at once never
    stall on a full pipe)."""
    command = [sys.executable, "-m", "zoo.cli", "train", f"--model={name}", f"--workdir={workdir}", f"--data={data}",
               f"--steps={steps}", f"--config=seed={seed}", f"--config=mixed_precision={precision}", *extra]
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    with open(workdir + ".out", "w") as out, open(workdir + ".err", "w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=ROOT)


def outcome(proc, workdir, metric):
    proc.wait()
    with open(workdir + ".out") as f:
        out = f.read()
    if proc.returncode:
        with open(workdir + ".err") as f:
            raise SystemExit(f"{' '.join(proc.args)} failed:\n{f.read()[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return result[metric], train_rate(workdir), precision_line(out)


def main(argv):
    del argv
    from zoo import registry

    steps = {**STEPS, **{k: int(v) for k, v in (s.split("=") for s in FLAGS.steps)}}
    workroot = FLAGS.workroot or tempfile.mkdtemp(prefix="zoo-precision-")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    rows = []
    for name in FLAGS.models:
        data, extra = path(name), DATA[name][1]
        if data is None:
            continue
        metric, mode = registry.get(name).validation_metric
        for index, seed in enumerate(FLAGS.seeds):
            runs = {}
            for slot, precision in enumerate(("float32", "auto")):
                workdir = os.path.join(workroot, f"{name}-{precision}-{seed}")
                core = cores[(slot + index) % 2] if len(cores) >= 2 else None
                runs[precision] = (train(name, data, extra, steps[name], seed, precision, workdir, core), workdir)
            results = {p: outcome(proc, workdir, metric) for p, (proc, workdir) in runs.items()}
            print(f"{name} seed {seed}: " + "; ".join(f"{p} {metric}={r[0]:.4g} at {r[1]:.1f} examples/s ({r[2]})"
                                                      for p, r in results.items()), flush=True)
            rows.append((name, steps[name], seed, metric, mode, results))
    print("\n| model | steps | seed | metric | float32 | auto | auto - float32 | float32 ex/s | auto ex/s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, n, seed, metric, mode, r in rows:
        (m32, s32, _), (mauto, sauto, _) = r["float32"], r["auto"]
        print(f"| {name} | {n} | {seed} | {metric} ({mode}) | {m32:.4g} | {mauto:.4g} | {mauto - m32:+.3g} | "
              f"{s32:.1f} | {sauto:.1f} | {sauto / s32:.2f}x |")
    if not FLAGS.workroot:
        shutil.rmtree(workroot, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
