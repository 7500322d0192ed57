"""A PNG of the training curves, drawn from `metrics.jsonl`."""

import io
import json
import os


def plot(workdir, path=None):
    """Draws loss, learning rate and every validation metric against the step.

    Writes `workdir/training_curves.png` (atomically) and returns its path.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from zoo import fileio

    rows = [json.loads(line) for line in fileio.read_text(os.path.join(workdir, "metrics.jsonl")).split("\n")
            if line.strip()]
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "validation"]
    val_keys = sorted({k for r in val for k, v in r.items()
                       if isinstance(v, (int, float)) and k not in ("step", "epoch", "examples")})
    panels = [("train", "loss"), ("train", "learning_rate")] + [("validation", k) for k in val_keys]
    cols = min(3, len(panels))
    rows_n = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.5 * cols, 3.2 * rows_n), squeeze=False)
    for ax, (kind, key) in zip(axes.flat, panels):
        series = [(r["step"], r[key]) for r in (train if kind == "train" else val) if key in r]
        if series:
            ax.plot(*zip(*series), marker="." if kind == "validation" else None)
        ax.set_title(f"{kind} {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path = path or os.path.join(workdir, "training_curves.png")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=80)
    plt.close(fig)
    fileio.write_atomic(path, png.getvalue())
    return path
