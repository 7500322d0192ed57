"""Where a training step's time goes: TensorFlow's profiler over chosen steps, summed per op.

`--config profile_steps=A-B` makes the trainer trace steps A to B (the chunks of
`steps_per_execution` steps are cut at A and B) into `WORKDIR/logs/profile/`, which
TensorBoard's Profile tab reads, and print the ops that took the most time:

    Profile of steps 20-40 (1.91 s of ops on 2 threads): 31.2% _MklMatMul, 12.0% _MklFusedBatchMatMulV2, ...

The summary reads the trace (an `XSpace` protocol buffer) itself: every op event of the host's
threads, its *self* time (its duration less the events nested in it, so a `While` or a
function call is not counted twice), summed per op type.
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
    """Starts TensorFlow's profiler at step `first` and stops it at `last` (chief only)."""

    def __init__(self, steps, logdir):
        self.first, self.last = steps
        self.logdir = logdir
        self.running = False

    def boundaries(self, step):
        """Steps a chunk starting at `step` must not cross."""
        return [s for s in (self.first, self.last) if s > step]

    def before_chunk(self, step):
        if step == self.first and not self.running:
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
        return f"Profile of steps {self.first}-{min(step or self.last, self.last)} in {self.logdir} (TensorBoard's " \
               "Profile tab): " + describe(op_times(self.logdir))


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


def op_times(logdir):
    """{op type: seconds of self time} over every trace under `logdir`, host threads."""
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
                    if ":" in name and "::" not in name and not name.startswith(("tf_data", "$")):
                        totals[name.rsplit(":", 1)[1]] += self_ps / 1e12
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
