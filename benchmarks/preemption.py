"""Preemption: seconds from SIGTERM to exit, and what the per-step stop check costs.

    python benchmarks/preemption.py [--baseline=7c6c6ea] [--parts=cost,exit] [--steps=600]

Both parts run the zoo's CLI of this checkout beside the same CLI of `--baseline` (a git
revision: the trainer before the stop flag was read inside a chunk, checked out with
`git worktree` into a temporary folder), in the same run, one after the other:

1. cost: `zoo train --model=translator --preset=small` on `builtin:dates` with the entry's
   defaults (batch 64) for `--steps`, at `steps_per_execution` 1 and 100; examples/s is
   the mean of the `[train]` rows after the first (tracing); `--repeats` interleaved runs,
   the median reported. Target: the check costs at most 2%.
2. exit: the same command with `steps_per_execution` 1, 100 and 1,000 (and `log_every`,
   `checkpoint_every` as large, batch 8: 2,500 steps an epoch), one worker and two
   (MultiWorkerMirroredStrategy on localhost, SIGTERM to the second); SIGTERM 8 s after
   training starts; seconds until every worker has exited (75) with its checkpoint.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from tests.helpers import free_ports  # noqa: E402
FLAGS = flags.FLAGS
flags.DEFINE_string("baseline", "7c6c6ea", "Git revision of the trainer to compare with.")
flags.DEFINE_multi_string("parts", ["cost", "exit"], "Parts to run: cost, exit.")
flags.DEFINE_integer("steps", 600, "Training steps of each cost run.")
flags.DEFINE_integer("repeats", 3, "Interleaved repeats of each cost run.")
flags.DEFINE_float("sleep", 8.0, "Seconds of training before SIGTERM in the exit runs.")
flags.DEFINE_list("cost_spe", ["1", "100"], "steps_per_execution values of the cost part.")
flags.DEFINE_list("exit_spe", ["1", "100", "1000"], "steps_per_execution values of the exit part.")
flags.DEFINE_list("workers", ["1", "2"], "Worker counts of the exit part.")


def _env(root, tf_config=None):
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _train(root, workdir, *extra, tf_config=None):
    return subprocess.Popen([sys.executable, "-m", "zoo.cli", "train", "--model=translator", "--preset=small",
                             f"--workdir={workdir}", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(root, tf_config), cwd=root)


def _rate(root, steps_per_execution):
    workdir = tempfile.mkdtemp(prefix="bench-preempt-")
    try:
        proc = _train(root, workdir, f"--steps={FLAGS.steps}", "--config=log_every=100",
                      f"--config=steps_per_execution={steps_per_execution}", "--config=checkpoint_every=100000")
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{root}: training failed:\n{out[-3000:]}")
        rates = [float(m) for m in re.findall(r"\[train\] step=\d+ .*?examples_per_sec=([\d.]+)", out)]
        return statistics.mean(rates[1:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _exit_seconds(root, steps_per_execution, workers):
    workdir = tempfile.mkdtemp(prefix="bench-preempt-")
    every = max(steps_per_execution, 100_000)
    extra = ["--steps=1000000", "--batch_size=8", f"--config=steps_per_execution={steps_per_execution}",
             f"--config=log_every={every}", f"--config=checkpoint_every={every}"]
    try:
        if workers == 1:
            procs = [_train(root, workdir, *extra)]
        else:
            cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
            procs = [_train(root, workdir, *extra, "--strategy=multi_worker",
                            tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}})
                     for i in range(workers)]
        for line in procs[0].stdout:
            if line.startswith("Training length"):
                break
        time.sleep(FLAGS.sleep)
        sent = time.monotonic()
        procs[-1].send_signal(15)
        codes = []
        for proc in procs:
            proc.communicate(timeout=1800)
            codes.append(proc.returncode)
        return time.monotonic() - sent, codes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv):
    del argv
    baseline = tempfile.mkdtemp(prefix="zoo-baseline-")
    subprocess.run(["git", "worktree", "add", "--detach", baseline, FLAGS.baseline], cwd=ROOT, check=True,
                   capture_output=True)
    roots = {"zoo (this checkout)": ROOT, f"zoo at {FLAGS.baseline}": baseline}
    try:
        if "cost" in FLAGS.parts:
            print(f"\n== Step rate, translator small on builtin:dates, batch 64, {FLAGS.steps} steps, "
                  f"median of {FLAGS.repeats} interleaved runs (examples/s)")
            for spe in map(int, FLAGS.cost_spe):
                rates = {name: [] for name in roots}
                for _ in range(FLAGS.repeats):
                    for name, root in roots.items():
                        rates[name].append(_rate(root, spe))
                medians = {name: statistics.median(r) for name, r in rates.items()}
                now, before = medians.values()
                print(f"steps_per_execution={spe:4d}: " + "  ".join(f"{n} {v:.1f}" for n, v in medians.items())
                      + f"  ratio {now / before:.3f} (cost {100 * (1 - now / before):+.1f}%)")
        if "exit" in FLAGS.parts:
            print(f"\n== Seconds from SIGTERM to exit (translator small, batch 8, SIGTERM {FLAGS.sleep:g} s into "
                  f"training; exit codes)")
            for workers in map(int, FLAGS.workers):
                for spe in map(int, FLAGS.exit_spe):
                    cells = []
                    for name, root in roots.items():
                        seconds, codes = _exit_seconds(root, spe, workers)
                        cells.append(f"{name} {seconds:6.1f} s {codes}")
                    print(f"workers={workers} steps_per_execution={spe:5d}: " + "  ".join(cells))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", baseline], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    app.run(main)
