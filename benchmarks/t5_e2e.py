"""E2E data-to-text: the zoo's `t5` against the zoo's own `translator`, same split, same wall time.

    python benchmarks/t5_e2e.py [--minutes=20] [--t5_preset=mini] [--parallel] [--pretrain_minutes=10]

`../shared/data/text2text/e2e.tsv` (977 meaning representations, several references each) is
split 90/10 by input with the zoo's fixed seed (`zoo.t5.entry.split_by_input`, what
`zoo train --model=t5` does with the file). Each model trains with the README's command and
its entry's defaults plus the lengths the README gives for E2E, for `--minutes` of wall time
(`max_seconds`). Both are then scored the same way on the held-out inputs: multi-reference
BLEU, chrF, ROUGE-L (`zoo.text.metrics`) and slot accuracy (name and near stated). With
`--parallel` the two train at once, each pinned to its own core (`taskset`), as in the
figures of WORKSPACE_NOTES.md; otherwise one after the other. `--pretrain_minutes` adds a
third row: `t5_pretrain` (span corruption) on the training targets, then `t5 --init_from`
it for `--minutes` (on a third process: give it its own core, or run it alone).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "text2text", "e2e.tsv")
flags.DEFINE_string("data", DEFAULT_DATA, "E2E TSV with a header `input<TAB>target`.")
flags.DEFINE_float("minutes", 20.0, "Training wall time of each model.")
flags.DEFINE_string("t5_preset", "mini", "The t5 preset (the README's choice for a few thousand pairs).")
flags.DEFINE_string("translator_preset", "small", "The translator preset.")
flags.DEFINE_bool("parallel", False, "Train both at once, each pinned to its own core.")
flags.DEFINE_string("keep", "", "Keep the workdirs under this folder (default: a temporary one, removed).")
flags.DEFINE_integer("seed", 0, "The trainer's seed (weights, dropout, data order) for every row; the split "
                     "stays the zoo's fixed one.")
flags.DEFINE_multi_string("t5_config", [], "An extra t5 --config KEY=VALUE setting (ablations; repeat the flag).")
flags.DEFINE_list("models", ["t5", "translator"], "Rows to train: t5, translator (and t5_pretrained, added "
                  "by --pretrain_minutes).")
flags.DEFINE_float("pretrain_minutes", 0.0, "When > 0, also t5_pretrain on the training targets for this long, "
                   "then t5 from it (--init_from) for --minutes: a third row.")

# The README's settings for E2E: its inputs run to ~60 pieces and its sentences to ~60;
# names and the places they are near are delexicalized for t5 (the translator has no such
# setting).
T5_LENGTHS = ["max_input_length=96", "max_target_length=64", "delexicalize=name,near"]
TRANSLATOR_LENGTHS = ["max_source_length=96", "max_target_length=64"]


def _split():
    from zoo.t5.entry import split_by_input
    from zoo.text import labelled

    rows = [(e.text, e.label) for e in labelled.read(FLAGS.data, "input", "target").examples]
    return split_by_input(rows, "train"), split_by_input(rows, "validation")


def _write_pairs(path, pairs):
    with open(path, "w", encoding="utf-8") as f:
        for source, target in pairs:
            f.write(f"{source}\t{target}\n")


def _commands(root, train_file, validation_file):
    seconds = FLAGS.minutes * 60
    common = [f"--config=max_seconds={seconds}", "--config=log_every=100", "--config=checkpoint_every=100000",
              f"--config=seed={FLAGS.seed}"]
    zoo = [sys.executable, "-m", "zoo.cli", "train"]
    t5 = zoo + ["--model=t5", f"--workdir={root}/t5", f"--data={FLAGS.data}", f"--preset={FLAGS.t5_preset}",
                *common, *[f"--config={c}" for c in T5_LENGTHS + FLAGS.t5_config]]
    translator = zoo + ["--model=translator", f"--workdir={root}/translator", f"--data={train_file}",
                        f"--preset={FLAGS.translator_preset}", f"--config=validation_data={validation_file}",
                        *common, *[f"--config={c}" for c in TRANSLATOR_LENGTHS]]
    commands = {"t5": t5, "translator": translator}
    if FLAGS.pretrain_minutes > 0:
        pretrain = zoo + ["--model=t5_pretrain", f"--workdir={root}/t5_pretrain", f"--data={root}/targets.txt",
                          f"--preset={FLAGS.t5_preset}", f"--config=max_seconds={FLAGS.pretrain_minutes * 60}",
                          "--config=log_every=100", "--config=checkpoint_every=100000",
                          f"--config=seed={FLAGS.seed}", *[f"--config={c}" for c in T5_LENGTHS]]
        finetune = [c.replace(f"--workdir={root}/t5", f"--workdir={root}/t5_finetuned") for c in t5]
        commands["t5_pretrained"] = (pretrain, finetune + [f"--init_from={root}/t5_pretrain"])
    return commands


def _train(commands, root):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    seconds, running = {}, {}
    cores = os.cpu_count() or 1
    for core, (name, command) in enumerate(commands.items()):
        if isinstance(command, tuple):  # pretraining, then fine-tuning: one shell line
            command = ["sh", "-c", " && ".join(" ".join(f"'{a}'" for a in part) for part in command)]
        if FLAGS.parallel:
            command = ["taskset", "-c", str(core % cores)] + command
        log = open(os.path.join(root, f"{name}.log"), "w")
        start = time.perf_counter()
        running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), start)
        if not FLAGS.parallel:
            running[name][0].wait()
            seconds[name] = time.perf_counter() - start
    for name, (process, start) in running.items():
        if process.wait() != 0:
            raise SystemExit(f"{name} training failed; see {root}/{name}.log")
        seconds.setdefault(name, time.perf_counter() - start)
    return seconds


def _generate(name, workdir, inputs):
    from zoo import commands

    entry, trainer, _ = commands.restore(workdir)
    step = int(trainer.step.numpy())
    if name.startswith("t5"):
        return entry.generate(trainer.model, inputs), step, f"beam {entry.config.beam_size}"
    return entry.translate(trainer.model, inputs), step, f"beam {entry.beam_size}, lp {entry.length_penalty:g}"


def main(argv):
    from zoo.text import metrics

    if not os.path.exists(FLAGS.data):
        raise SystemExit(f"{FLAGS.data}: not found (the shared E2E data); nothing to measure.")
    train, held = _split()
    references = {}
    for source, target in held:
        references.setdefault(source, []).append(target)
    inputs = list(references)
    root = FLAGS.keep or tempfile.mkdtemp(prefix="bench-e2e-")
    os.makedirs(root, exist_ok=True)
    try:
        train_file, validation_file = os.path.join(root, "train.tsv"), os.path.join(root, "validation.tsv")
        _write_pairs(train_file, train)
        _write_pairs(validation_file, held)
        with open(os.path.join(root, "targets.txt"), "w", encoding="utf-8") as f:
            f.write("".join(target + "\n" for _, target in train))
        commands = {name: command for name, command in _commands(root, train_file, validation_file).items()
                    if name in FLAGS.models or name == "t5_pretrained"}
        seconds = _train(commands, root)
        rows = {}
        for name in commands:
            workdir = os.path.join(root, "t5_finetuned" if name == "t5_pretrained" else name)
            outputs, steps, decoding = _generate(name, workdir, inputs)
            scores = metrics.generation_scores(outputs, [references[i] for i in inputs])
            scores["slot_accuracy"] = metrics.slot_accuracy(inputs, outputs, ("name", "near"))
            preset = FLAGS.translator_preset if name == "translator" else FLAGS.t5_preset
            rows[f"zoo {name} ({preset}, {decoding})"] = {**scores, "steps": steps, "train_s": seconds[name],
                                                          "outputs": outputs}
    finally:
        if not FLAGS.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n== E2E data-to-text: {len(train)} training rows ({len({s for s, _ in train})} inputs), "
          f"{len(inputs)} held-out inputs ({len(held)} references), {FLAGS.minutes:g} min of training each, seed {FLAGS.seed}"
          f"{' (in parallel, one core each)' if FLAGS.parallel else ''}")
    print(f"{'model':44s} {'BLEU':>6s} {'chrF':>6s} {'ROUGE-L':>7s} {'slots':>6s} {'steps':>6s} {'train s':>7s}")
    for name, r in rows.items():
        print(f"{name:44s} {r['bleu']:6.2f} {r['chrf']:6.2f} {r['rouge_l']:7.2f} {100 * r['slot_accuracy']:6.2f} "
              f"{r['steps']:6d} {r['train_s']:7.0f}")
    by_name = dict(zip(commands, rows.values()))
    if "t5" in by_name and "translator" in by_name:
        print(f"BLEU ratio t5/translator: {by_name['t5']['bleu'] / max(by_name['translator']['bleu'], 1e-9):.3f}")
    for i in range(4):
        print(f"  {inputs[i]!r}\n    ref        {references[inputs[i]][0]!r}")
        for name, row in by_name.items():
            print(f"    {name:13s}  {row['outputs'][i]!r}")
    print(json.dumps({k: {m: v for m, v in r.items() if m != "outputs"} for k, r in rows.items()}))


if __name__ == "__main__":
    app.run(main)
