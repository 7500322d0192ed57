"""Classification metrics: accuracy, macro-F1, per-class precision/recall, confusion matrix.

Example:
    >>> m, matrix = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    >>> m["accuracy"], round(m["macro_f1"], 3), m["recall/neg"]
    (0.75, 0.733, 0.5)
    >>> matrix.tolist()  # rows: true labels, columns: predicted
    [[1, 1], [0, 2]]
"""

import io

import numpy as np

from zoo import fileio


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def classification_metrics(y_true, y_pred, label_names):
    matrix = confusion_matrix(y_true, y_pred, len(label_names))
    hits = np.diag(matrix).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(matrix.sum(0) > 0, hits / matrix.sum(0), 0.0)
        recall = np.where(matrix.sum(1) > 0, hits / matrix.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    metrics = {"accuracy": float(hits.sum() / max(1, matrix.sum())), "macro_f1": float(f1.mean()),
               "examples": int(matrix.sum())}
    for name, p, r in zip(label_names, precision, recall):
        metrics[f"precision/{name}"] = float(p)
        metrics[f"recall/{name}"] = float(r)
    return metrics, matrix


def plot_confusion_matrix(matrix, label_names, path, title=""):
    """Writes the confusion matrix as a PNG (rows: true labels, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(label_names)
    size = min(12, 2 + 0.6 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), label_names, rotation=45, ha="right")
    ax.set_yticks(range(n), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    fileio.write_atomic(path, png.getvalue())
