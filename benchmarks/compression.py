"""SST-2: smaller classifiers by distillation and by pruning, against the dense teacher.

    python benchmarks/compression_sst2.py [--workroot=/tmp/zoo-compression] [--parts=...]

Every model is trained by the README's command with the entry's defaults (one pass over
`sst2_train.tsv`, AdamW with warmup and linear decay), scored on all of `sst2_dev.tsv`:

- `teacher`: `bert_classifier --preset=small` (4 layers of 256), the dense reference.
- `teachers`: `--teachers` - 1 more runs of the teacher's command at seeds 1, 2, ...: with the
  teacher they form the ensemble the students learn from (`--teacher=A,B`: the mean of their
  distributions); its own dev accuracy (mean of the members' probabilities) is reported.
- `students`: a student of 2 layers of 128 (`--config num_layers=2 hidden_dim=128 num_heads=2
  intermediate_dim=512`) trained alone, and the same student with `--teacher=` the ensemble
  (the defaults `distill_alpha=0.5`, `distill_temperature=4`), for the same steps, at each of
  `--student_seeds`; each also with `--student_augment` (word pieces masked at random: the
  teacher labels the altered sentence, as in Tang et al. 2019's distillation with augmentation).
- `prune`: the teacher's model pruned to each of `--sparsities` during its training
  (`--config prune_sparsity=S`, the default schedule: from step 0 to two thirds of the run).

- `vae`: the `vae` (preset small) dense and pruned to `--vae_sparsity` on
  `../shared/data/images/mnist_train.npz` for `--vae_minutes` each (`--config max_seconds`, the
  README's time budget), negative ELBO on the 5,000 held out: the feature is not classifier-only.

Then each is exported to TFLite (`classify_ids` / the VAE's `decoder`, batch 1): float32, and
for the pruned ones sparse, sparse + int8 weights, sparse + int8; the table gives the validation
metric, parameters, file bytes, the ratio to the dense float32 file, and batch-1 latency. Runs go two at a time, one core each (`taskset`);
a workdir already trained is reused (a run killed half way resumes), so parts can be re-run.
Reads `../shared/data/classification/`; skips with a message when it is absent.
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
DATA = os.path.join(ROOT, "..", "shared", "data", "classification")
flags.DEFINE_string("data_dir", DATA, "Folder with sst2_train.tsv and sst2_dev.tsv.")
flags.DEFINE_string("workroot", "/tmp/zoo-compression", "Where the workdirs go (kept: re-runs reuse them).")
flags.DEFINE_list("parts", ["teacher", "teachers", "students", "prune", "vae", "export"], "Which runs.")
flags.DEFINE_list("student_augment", ["token_dropout=0.1"],
                  "--config of a second run of every student (alone and distilled) with its inputs augmented "
                  "(word pieces masked at random, Tang et al. 2019); empty: none.")
flags.DEFINE_integer("teachers", 1, "Members of the teacher ensemble (the teacher at seed 0, then seeds 1, ...).")
flags.DEFINE_list("student_seeds", ["0", "1"], "Seeds of the students (alone and distilled).")
flags.DEFINE_string("mnist", os.path.join(ROOT, "..", "shared", "data", "images", "mnist_train.npz"), "MNIST .npz.")
flags.DEFINE_float("vae_minutes", 10.0, "Training wall time of each VAE.")
flags.DEFINE_list("vae_sparsity", ["0.8"], "Pruning targets of the VAE.")
flags.DEFINE_list("sparsities", ["0.5", "0.8", "0.9"], "Pruning targets.")
flags.DEFINE_list("student", ["num_layers=2", "hidden_dim=128", "num_heads=2", "intermediate_dim=512"],
                  "The student's --config (model size).")
flags.DEFINE_string("student_name", "student", "Prefix of the students' workdirs (one per --student size).")
flags.DEFINE_list("distill_config", [], "Extra --config of the distilled student (default: none).")
flags.DEFINE_integer("cores", 2, "Runs at once, one core each.")
flags.DEFINE_integer("num_checks", 200, "Dev sentences each TFLite file is checked and timed on.")


def _zoo(*args, log=None, core=None):
    command = (["taskset", "-c", str(core)] if core is not None else []) + [sys.executable, "-m", "zoo.cli", *args]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = open(log, "a") if log else subprocess.DEVNULL
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _run_all(jobs):
    """Runs `(name, args)` jobs `FLAGS.cores` at a time, one core each; raises on a failure."""
    pending, running = list(jobs), {}  # process -> (core, name)
    while pending or running:
        busy = {core for core, _ in running.values()}
        for core in [c for c in range(FLAGS.cores) if c not in busy]:
            if not pending:
                break
            name, args = pending.pop(0)
            log = os.path.join(FLAGS.workroot, f"{name}.log")
            print(f"[{time.strftime('%H:%M:%S')}] start {name} on core {core}: zoo {' '.join(args)}", flush=True)
            running[_zoo(*args, log=log, core=core)] = (core, name)
        time.sleep(5)
        for proc in [p for p in running if p.poll() is not None]:
            _, name = running.pop(proc)
            print(f"[{time.strftime('%H:%M:%S')}] {name} exited {proc.returncode}", flush=True)
            if proc.returncode:
                raise SystemExit(f"{name} failed; see {os.path.join(FLAGS.workroot, name + '.log')}")


def _train_args(name, data, *config, teacher=None, model="bert_classifier", preset="small"):
    args = ["train", f"--model={model}", f"--workdir={os.path.join(FLAGS.workroot, name)}", f"--data={data}",
            f"--preset={preset}"]
    args += [f"--config={c}" for c in config]
    if teacher:
        args.append(f"--teacher={','.join(os.path.join(FLAGS.workroot, t) for t in teacher.split(','))}")
    return name, args


def _trained(name):
    return os.path.exists(os.path.join(FLAGS.workroot, name, "checkpoints", "checkpoint"))


def _figures(name, quantize, signature, metric):
    """The validation `metric`, parameters and the TFLite `signature` files of the workdir `name`."""
    from zoo import commands

    workdir = os.path.join(FLAGS.workroot, name)
    metrics = commands.evaluate(workdir)
    _, trainer, _ = commands.restore(workdir)
    manifest_path = os.path.join(workdir, "export", "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {"artifacts": []}
    have = {a["quantization"] for a in manifest["artifacts"] if a.get("signature") == signature}
    if not set(quantize) <= have:
        # The benchmark reports the metric drop of each quantized file instead of failing on it.
        proc = subprocess.run([sys.executable, "-m", "zoo.cli", "export", f"--workdir={workdir}", "--formats=tflite",
                               f"--quantize={','.join(quantize)}", f"--num_checks={FLAGS.num_checks}",
                               "--max_metric_drop=100"],
                              env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"export of {name} failed:\n{proc.stderr[-3000:]}")
        manifest = json.load(open(manifest_path))
    files = {a["quantization"]: a for a in manifest["artifacts"] if a.get("signature") == signature}
    value = metrics[metric] * (100 if metric == "accuracy" else 1)
    return {"metric": metric, "value": value, "steps": int(trainer.step.numpy()),
            "parameters": trainer.model.count_params(), "sparsity": manifest.get("sparsity", {}).get("pruned"),
            "files": {q: {"bytes": a["size_bytes"], "latency_ms": a.get("latency_ms_batch1"),
                          "drop": a["parity"].get("drop"), "xnnpack": a.get("xnnpack")} for q, a in files.items()}}


def _seeded(name, seed):
    return name if str(seed) == "0" else f"{name}_seed{seed}"


def _ensemble_accuracy(names, dev):
    """Dev accuracy (%) of the mean of the members' class probabilities (at temperature 1; the
    students learn the same mean at `distill_temperature`)."""
    import numpy as np
    from keras import ops

    from zoo import commands, sources

    probabilities, labels = 0.0, None
    for name in names:
        entry, trainer, _ = commands.restore(os.path.join(FLAGS.workroot, name))
        batches = list(entry.dataset(sources.parse(dev), sources.ALL, 64, training=False))
        logits = np.concatenate([np.asarray(entry.loss_and_logits(trainer.model, b, False)[1]) for b in batches])
        probabilities = probabilities + np.asarray(ops.softmax(logits, axis=-1)) / len(names)
        labels = np.concatenate([np.asarray(b["labels"]).reshape(-1) for b in batches])
    return float((probabilities.argmax(-1) == labels).mean() * 100)


def _table(rows, dense):
    print("\n| model | steps | validation | parameters | sparsity | TFLite file | bytes | x dense f32 | batch-1 ms | "
          "metric drop vs Keras |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        for q, f in row["files"].items():
            ratio = f"{f['bytes'] / dense:.3f}" if dense else "-"
            print(f"| {name} | {row['steps']} | {row['metric']} {row['value']:.2f} | {row['parameters']:,} | "
                  f"{row['sparsity'] or 0:.3f} | {q}{'' if f['xnnpack'] in (None, True) else ' (no XNNPACK)'} | "
                  f"{f['bytes']:,} | {ratio} | {f['latency_ms']} | {f['drop']} |")


def main(argv):
    del argv
    train, dev = (os.path.join(FLAGS.data_dir, f) for f in ("sst2_train.tsv", "sst2_dev.tsv"))
    sst2 = os.path.exists(train) and os.path.exists(dev)
    mnist = os.path.exists(FLAGS.mnist)
    if not sst2:
        print(f"skipped SST-2: {train} or {dev} not found (the shared data folder is absent)")
    if not mnist:
        print(f"skipped MNIST: {FLAGS.mnist} not found")
    os.makedirs(FLAGS.workroot, exist_ok=True)
    pruned = [f"pruned{int(round(float(s) * 100))}" for s in FLAGS.sparsities]
    vaes = ["vae_dense"] + [f"vae_pruned{int(round(float(s) * 100))}" for s in FLAGS.vae_sparsity]
    dev_config = f"validation_data={dev}"
    jobs = []
    if sst2 and "teacher" in FLAGS.parts and not _trained("teacher"):
        jobs.append(_train_args("teacher", train, dev_config))
    members = ["teacher"] + [f"teacher_seed{i}" for i in range(1, FLAGS.teachers)]
    if sst2 and "teachers" in FLAGS.parts:
        jobs += [_train_args(n, train, dev_config, f"seed={i}") for i, n in enumerate(members) if i and not _trained(n)]
    # (name, its --config after the student's size, teacher) of every student run.
    augmented = [("", [])] + ([("_aug", FLAGS.student_augment)] if FLAGS.student_augment else [])
    students = [(_seeded(f"{FLAGS.student_name}_alone{tag}", seed), [f"seed={seed}", *extra], None)
                for seed in FLAGS.student_seeds for tag, extra in augmented] + \
               [(_seeded(f"{FLAGS.student_name}_distilled_{len(members)}{tag}", seed),
                 [f"seed={seed}", *extra, *FLAGS.distill_config], ",".join(members))
                for seed in FLAGS.student_seeds for tag, extra in augmented]
    if sst2 and "students" in FLAGS.parts:
        jobs += [_train_args(name, train, dev_config, *FLAGS.student, *config)
                 for name, config, teacher in students if not teacher and not _trained(name)]
    if sst2 and "prune" in FLAGS.parts:
        jobs += [_train_args(n, train, dev_config, f"prune_sparsity={s}") for n, s in zip(pruned, FLAGS.sparsities)
                 if not _trained(n)]
    if mnist and "vae" in FLAGS.parts:
        budget = f"max_seconds={FLAGS.vae_minutes * 60:g}"
        jobs += [_train_args(n, FLAGS.mnist, budget, *([f"prune_sparsity={s}"] if s else []), model="vae")
                 for n, s in zip(vaes, [None] + FLAGS.vae_sparsity) if not _trained(n)]
    _run_all(jobs)
    if sst2 and "students" in FLAGS.parts:
        missing = [n for n in members if not _trained(n)]
        if missing:
            raise SystemExit(f"the teacher ensemble lacks {missing}: add 'teacher,teachers' to --parts.")
        _run_all([_train_args(name, train, dev_config, *FLAGS.student, *config, teacher=teacher)
                  for name, config, teacher in students if teacher and not _trained(name)])
    if "export" not in FLAGS.parts:
        return
    results = {}
    if sst2:
        rows = {}
        for name, quantize in [("teacher", ("none", "dynamic", "int8"))] + \
                [(name, ("none", "int8")) for name, _, _ in students] + \
                [(n, ("none", "sparse", "sparse_dynamic", "sparse_int8")) for n in pruned]:
            if _trained(name):
                rows[name] = _figures(name, quantize, "classify_ids", "accuracy")
        _table(rows, rows.get("teacher", {}).get("files", {}).get("none", {}).get("bytes"))
        results["sst2"] = rows
        if len(members) > 1 and all(_trained(n) for n in members):
            results["sst2_ensemble"] = _ensemble_accuracy(members, dev)
            print(f"\nteacher ensemble {' + '.join(members)}: dev accuracy {results['sst2_ensemble']:.2f}")
    if mnist and "vae" in FLAGS.parts:
        rows = {n: _figures(n, ("none",) if n == "vae_dense" else ("none", "sparse", "sparse_dynamic"), "decoder",
                            "neg_elbo") for n in vaes if _trained(n)}
        _table(rows, rows.get("vae_dense", {}).get("files", {}).get("none", {}).get("bytes"))
        results["mnist"] = rows
    with open(os.path.join(FLAGS.workroot, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
