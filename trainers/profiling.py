"""Where a training step's time goes: TensorFlow's profiler over chosen steps, summed per op.

`--config profile_steps=A-B` makes the trainer trace steps A to B (the chunks of
`steps_per_execution` steps are cut at A and B) into `WORKDIR/logs/profile/`, which
TensorBoard's Profile tab reads, and print the ops that took the most time:

    Profile of steps 40-60 in WORKDIR/logs/profile/plugins/profile/2026_11_28_04_21_05 (TensorBoard's
    Profile tab): 2.05 s of ops; 47.0% _MklMatMul, 18.1% AddN, 5.8% Sigmoid, ...

The summary reads the trace (an `XSpace` protocol buffer) itself: every op event of the host's
threads, its *self* time (its duration less the events nested in it on the same thread, so a
`While` or a function call is not counted twice), summed per op type. Evaluations or
checkpoints that fall inside the range are traced too; tf.data's map functions count as ops.
"""

import collections
import re

import tensorflow as tf

from zoo import fileio
from zoo.config import ConfigError


def parse_steps(value):
    """(first, last) step of `profile_steps`, or None for "".

    Raises:
        ConfigError: naming `profile_steps` and the expected form.

    Example:
        >>> parse_steps("20-40")
        (20, 40)
        >>> parse_steps("40-20")
        Traceback (most recent call last):
        ...
        zoo.config.ConfigError: --config profile_steps=40-20: expected FIRST-LAST with 0 <= FIRST < LAST (steps), e.g. 20-40.
    """
    if not value:
        return None
    found = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
    if not found or int(found[1]) >= int(found[2]):
        raise ConfigError(f"--config profile_steps={value}: expected FIRST-LAST with 0 <= FIRST < LAST (steps), "
                          "e.g. 20-40.")
    return int(found[1]), int(found[2])


class StepProfiler:
    """Starts TensorFlow's profiler at step `first` and stops it at `last`. Every worker cuts
    its chunks at both (each chunk ends in collectives the workers must call alike); only
    the one with `trace` (the chief) traces."""

    def __init__(self, steps, logdir, trace=True):
        self.first, self.last = steps
        self.logdir = logdir
        self.trace = trace
        self.running = False

    def boundaries(self, step):
        """Steps a chunk starting at `step` must not cross."""
        return [s for s in (self.first, self.last) if s > step]

    def describe_start(self, step, total):
        """A warning line where this run will not reach `first` (resumed past it, or shorter)."""
        if self.trace and not step <= self.first < total:
            return f"Warning: --config profile_steps={self.first}-{self.last}: this run trains steps {step}-{total}; " \
                   "nothing is traced."
        return None

    def before_chunk(self, step):
        if self.trace and step == self.first and not self.running:
            tf.profiler.experimental.start(self.logdir)
            self.running = True

    def after_chunk(self, step, total):
        """Stops at `last`, or at the run's last step `total` (before its evaluation); returns
        the summary line then, else None."""
        if self.running and step >= min(self.last, total):
            return self.stop(step)
        return None

    def stop(self, step=None):
        """Stops tracing (at `step`, where it ended before `last`); returns the summary line."""
        if not self.running:
            return None
        tf.profiler.experimental.stop()
        self.running = False
        run = latest_run(self.logdir)
        return f"Profile of steps {self.first}-{min(step or self.last, self.last)} in {run} (TensorBoard's " \
               "Profile tab): " + describe(op_times(run))


def _self_times(events):
    """[(name, self ps)] of one thread's events (start ps, end ps, name): each event's duration
    less the time of the events directly nested in it."""
    out, stack = [], []  # stack of [end, name, self]
    for start, end, name in sorted(events, key=lambda e: (e[0], -e[1])):
        while stack and stack[-1][0] <= start:
            finished = stack.pop()
            out.append((finished[1], finished[2]))
        if stack:
            stack[-1][2] -= min(end, stack[-1][0]) - start
        stack.append([end, name, end - start])
    out.extend((name, self_ps) for _, name, self_ps in stack)
    return out


def latest_run(logdir):
    """The newest trace folder under `logdir` (each start of the profiler writes its own,
    `plugins/profile/<date and time>`; an earlier run's traces stay beside it)."""
    folders = sorted({fileio.dirname(p) for p in _walk(logdir) if p.endswith(".xplane.pb")})
    return folders[-1] if folders else logdir


def op_times(logdir):
    """{op type: seconds of self time} over every trace under `logdir`, host threads. Ops of
    the host's threads only: on a GPU these are launch times, not kernel times; an op's
    nested events are those of its own thread."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals = collections.Counter()
    paths = [p for p in _walk(logdir) if p.endswith(".xplane.pb")]
    for path in paths:
        space = xplane_pb2.XSpace()
        space.ParseFromString(fileio.read_bytes(path))
        for plane in space.planes:
            if not plane.name.startswith("/host:"):
                continue
            names = {i: m.name for i, m in plane.event_metadata.items()}
            for line in plane.lines:
                # TensorFlow's op events are named "op name:op type"; the rest are the
                # runtime's own ("KernelAndDeviceFunc::Run", the caller waiting on the whole
                # function; "ExecutorState::Process"; tf.data's "Iterator::...") and are left out.
                events = [(e.offset_ps, e.offset_ps + e.duration_ps, names.get(e.metadata_id, ""))
                          for e in line.events]
                for name, self_ps in _self_times(events):
                    op_type = name.rsplit(":", 1)[-1]
                    if ":" in name and "::" not in name and op_type == op_type.strip() and \
                            not name.startswith(("tf_data", "$")):
                        totals[op_type] += self_ps / 1e12
    return dict(totals)


def describe(times, top=8):
    """One line: the ops' total seconds and the `top` op types' shares."""
    total = sum(times.values())
    if not total:
        return "no op events were traced."
    ranked = sorted(times.items(), key=lambda kv: -kv[1])
    return f"{total:.2f} s of ops; " + ", ".join(f"{100 * s / total:.1f}% {name}" for name, s in ranked[:top])


def _walk(root):
    for folder, _, files in fileio.walk(root):
        for name in files:
            yield fileio.join(folder, name)
