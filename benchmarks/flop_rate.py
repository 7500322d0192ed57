"""The fraction of the machine's peak FLOP rate that each model's training step reaches.

    python benchmarks/flop_rate.py [--models=bert_classifier,vae,gan] [--seconds=90]

For each model, in one run:

- FLOPs of one training example, forward and backward: the matrix products and convolutions
  of the traced graph of one step (every phase's loss and its gradients for the entry's
  `small` preset and default batch), counted from their static shapes (`op_flops`), divided
  by the batch, averaged over the first 8 batches the trainer feeds (cut to their longest text
  where the entry does that, as in training). A while loop (the LSTM models' recurrence,
  forward and its gradient) counts its body's ops times its trip count (the sequence length,
  static once the batch's shape is).
- Training examples/s: the README's command with the entry's defaults on the developer data,
  `--config max_seconds=--seconds` (the trainer's own `examples_per_sec` log, the median of
  the lines after the first, which includes tracing).
- Where the step's time goes: each run traces `--profile_steps` with TensorFlow's profiler
  (`--config profile_steps`, `trainers/profiling.py`) and prints the op types by self time.
- The machine's peak, measured in the same run: a `--matmul` square matrix product in float32
  and in bfloat16 (the processor's bfloat16 dot-product units, where it has them).

The table: examples/s, GFLOP per example, achieved GFLOP/s, and that as a share of each peak.
Reads `../shared/data`; a model whose data is absent is skipped with a message.
"""

import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.developer_data import DATA, path, precision_line, timed_run  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["bert_classifier", "vae", "gan", "translator", "lstm_lm", "t5"], "Entries to measure.")
flags.DEFINE_float("seconds", 90.0, "Training wall time of each model (the trainer's time budget).")
flags.DEFINE_integer("matmul", 2048, "Side of the square matrices of the peak measurement.")
flags.DEFINE_string("workroot", "", "Where the workdirs go (default: a temporary folder).")
flags.DEFINE_string("profile_steps", "40-60", "Steps each run traces (`--config profile_steps`): where the "
                    "step's time goes, by op type ('' : no profile).")


def peak_gflops(dtype, n, seconds=3.0):
    """Sustained GFLOP/s of an n x n matrix product in `dtype` (2 n^3 per product)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)

    @tf.function
    def products(count):
        c = tf.zeros((n, n), dtype)
        for _ in tf.range(count):
            c = tf.matmul(a, b) + c * 0
        return c

    products(tf.constant(2)).numpy()  # trace and warm up
    count, elapsed = 4, 0.0
    while elapsed < seconds:
        count *= 2
        start = time.perf_counter()
        products(tf.constant(count)).numpy()
        elapsed = time.perf_counter() - start
    return 2.0 * n ** 3 * count / elapsed / 1e9


def train_flops_per_example(name, data, batches=8, preset="small", overrides=()):
    """FLOPs of one example's forward and backward pass of entry `name` at `preset` with the
    `--config` `overrides` (its batch size among them)."""
    import tensorflow as tf

    from trainers.config import TrainerConfig
    from zoo import commands, registry, sources

    cls = registry.get(name)
    model_config, trainer_config = commands.initial_configs(cls, preset, overrides)
    batch_size = trainer_config.batch_size or TrainerConfig().batch_size
    entry = cls(model_config, tempfile.mkdtemp(prefix="zoo-flops-"))
    source = sources.parse(data)
    entry.prepare(source)
    # The batches the trainer feeds (cut to their longest text where the entry does that).
    entry.static_shapes, entry.batch_size = False, batch_size
    model = entry.build_model()
    model.build()
    phases = entry.phases(model)

    def step(batch):
        gradients = []
        for phase in phases:
            variables = phase.variables(model)
            with tf.GradientTape() as tape:
                loss = phase.loss(model, batch, training=True)
                loss = tf.reduce_mean(tf.cast(loss[0] if isinstance(loss, tuple) else loss, tf.float32))
            gradients += tape.gradient(loss, variables)
        return gradients

    # Each traced graph itself (variables read with their shapes; it cannot be frozen to
    # constants: dropout's seed generators write variables inside the step), one per batch
    # shape, averaged over the first `batches` batches.
    traced, counts = tf.function(step), []
    for batch in entry.dataset(source, "train", batch_size, training=True).take(batches):
        counts.append(graph_flops(traced.get_concrete_function(batch).graph))
    return statistics.mean(counts) / batch_size


def graph_flops(graph):
    """The FLOPs of one run of `graph`: its ops (`op_flops`), and each while loop's body times
    its trip count."""
    return sum(loop_flops(graph, op) if op.type in ("While", "StatelessWhile") else op_flops(op)
               for op in graph.get_operations())


def loop_flops(graph, op):
    """A while loop's body FLOPs x its trip count. Keras's recurrent layers give the loop
    `maximum_iterations` = Max(the static number of time steps) and run it to the end."""
    import numpy as np
    import tensorflow as tf

    limit = op.inputs[1]  # while_v2's inputs: loop counter, maximum_iterations, loop variables
    trips = tf.get_static_value(limit)
    if trips is None and limit.op.type == "Max":
        values = [tf.get_static_value(t) for t in limit.op.inputs]
        if all(v is not None for v in values):
            trips = np.max(values[0], axis=tuple(np.atleast_1d(values[1])) or None)
    if trips is None or trips < 0:  # -1: a loop without maximum_iterations
        raise ValueError(f"{op.name}: the trip count ({limit.op.type} {limit.op.name}) is not static.")
    # The body is a function of its own: its graph (TensorFlow's private `_get_function`; no
    # public way to reach it from the op) holds the body's ops with their static shapes.
    body = graph._get_function(op.get_attr("body").name).graph  # noqa: SLF001
    return int(trips) * graph_flops(body)


def op_flops(op):
    """Multiply-adds x 2 of a matrix product or convolution op from its static shapes (0 for
    other ops: their element-wise work is small beside these). TensorFlow's own profiler
    (`tf.compat.v1.profiler`, float_operation) was tried first: on BERT's step it left out the
    `MatMul`s and counted `BatchMatMulV2` 4.6x higher than its shapes give."""
    import numpy as np

    def shape(tensor):
        dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
        if dims is None or None in dims:
            raise ValueError(f"{op.name} ({op.type}): shape {tensor.shape} is not static")
        return dims

    if op.type == "MatMul":
        a, out = shape(op.inputs[0]), shape(op.outputs[0])
        return 2 * int(np.prod(out)) * (a[0] if op.get_attr("transpose_a") else a[1])
    if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, out = shape(op.inputs[0]), shape(op.outputs[0])
        return 2 * int(np.prod(out)) * (a[-2] if op.get_attr("adj_x") else a[-1])
    if op.type in ("Conv2D", "DepthwiseConv2dNative"):
        kernel, out = shape(op.inputs[1]), shape(op.outputs[0])
        per_output = kernel[0] * kernel[1] * (kernel[2] if op.type == "Conv2D" else 1)
        return 2 * int(np.prod(out)) * per_output
    if op.type in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):
        # Both cost what the forward convolution does: out_backprop x (kh x kw x in channels).
        grad = shape(op.inputs[2])
        kernel = shape(op.inputs[1]) if op.type == "Conv2DBackpropInput" else shape(op.outputs[0])
        return 2 * int(np.prod(grad)) * kernel[0] * kernel[1] * kernel[2]
    if op.type == "Einsum":  # 2 x the product of every index's size ("bqd,bkd->bqk": 2 b q k d)
        equation = op.get_attr("equation").decode()
        terms = equation.split("->")[0].split(",")
        if "..." in equation or len(terms) != len(op.inputs):
            raise ValueError(f"{op.name}: Einsum {equation!r} is not counted yet; add it to op_flops.")
        sizes = {}
        for term, tensor in zip(terms, op.inputs):
            sizes.update(zip(term, shape(tensor)))
        return 2 * int(np.prod(list(sizes.values())))
    if "MatMul" in op.type or "Conv" in op.type:
        raise ValueError(f"{op.name}: {op.type} is not counted yet; add its formula to op_flops.")
    return 0


def main(argv):
    del argv
    import tensorflow as tf

    workroot = FLAGS.workroot or tempfile.mkdtemp(prefix="zoo-flop-rate-")
    peaks = {"float32": peak_gflops(tf.float32, FLAGS.matmul), "bfloat16": peak_gflops(tf.bfloat16, FLAGS.matmul)}
    print(f"peak ({FLAGS.matmul} x {FLAGS.matmul} matmul): float32 {peaks['float32']:.1f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:.1f} GFLOP/s", flush=True)
    rows, profiles = [], {}
    for name in FLAGS.models:
        data, extra = path(name), DATA[name][1]
        if data is None:
            continue
        flops = train_flops_per_example(name, data)
        profile = [f"--config=profile_steps={FLAGS.profile_steps}"] if FLAGS.profile_steps else []
        rate, out = timed_run(name, data, extra + profile, os.path.join(workroot, name), FLAGS.seconds)
        policy = precision_line(out).split()[1]
        profiles[name] = next((line for line in out.splitlines() if line.startswith("Profile of steps")),
                              "no profile (the run ended before its steps)")
        achieved = flops * rate / 1e9
        rows.append((name, rate, flops / 1e9, achieved, policy))
        print(f"{name}: {rate:.1f} examples/s x {flops / 1e9:.4f} GFLOP"
              f" = {achieved:.2f} GFLOP/s", flush=True)
    print("\n| model | precision (auto) | examples/s | GFLOP / example (fwd + bwd) | GFLOP/s | of float32 peak | "
          "of bfloat16 peak | of its precision's peak |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rate, gflop, achieved, policy in rows:
        own = peaks["bfloat16" if "bfloat16" in policy else "float32"]
        print(f"| {name} | {policy} | {rate:.1f} | {gflop:.4f} | {achieved:.2f} | {achieved / peaks['float32']:.1%} | "
              f"{achieved / peaks['bfloat16']:.1%} | {achieved / own:.1%} |")
    print("\nWhere each step's time goes (self time of the traced ops, by type):")
    for name, line in profiles.items():
        print(f"- {name}: {line}")


if __name__ == "__main__":
    app.run(main)
