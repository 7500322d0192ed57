"""Classification metrics: accuracy, macro-F1, per-class precision/recall, confusion matrix.

Example:
    >>> m, matrix = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    >>> m["accuracy"], round(m["macro_f1"], 3), m["recall/neg"]
    (0.75, 0.733, 0.5)
    >>> matrix.tolist()  # rows: true labels, columns: predicted
    [[1, 1], [0, 2]]
"""

import io

import keras
import numpy as np
import tensorflow as tf

from zoo import fileio


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts [true class, predicted class] (`tf.math.confusion_matrix`)."""
    return tf.math.confusion_matrix(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64),
                                    num_classes=num_classes, dtype=tf.int64).numpy()


def classification_metrics(y_true, y_pred, label_names):
    """Accuracy, macro-F1 and each class's precision and recall of predicted class ids, by
    Keras's metrics (`Accuracy`, `F1Score`, `Precision`/`Recall` per class id), and the
    confusion matrix. A class never predicted (or never present) has precision (recall) 0."""
    n = len(label_names)
    y_true, y_pred = np.asarray(y_true, np.int64).reshape(-1), np.asarray(y_pred, np.int64).reshape(-1)
    matrix = confusion_matrix(y_true, y_pred, n)
    if not len(y_true):
        return {"accuracy": 0.0, "macro_f1": 0.0, "examples": 0,
                **{f"{kind}/{name}": 0.0 for name in label_names for kind in ("precision", "recall")}}, matrix
    true_1h, pred_1h = (np.eye(n, dtype="float32")[y] for y in (y_true, y_pred))

    def result(metric, *args):
        metric.update_state(*args)
        return metric.result()

    metrics = {"accuracy": float(result(keras.metrics.Accuracy(), y_true, y_pred)),
               "macro_f1": float(result(keras.metrics.F1Score(average="macro", threshold=0.5), true_1h, pred_1h)),
               "examples": int(len(y_true))}
    for i, name in enumerate(label_names):
        metrics[f"precision/{name}"] = float(result(keras.metrics.Precision(class_id=i), true_1h, pred_1h))
        metrics[f"recall/{name}"] = float(result(keras.metrics.Recall(class_id=i), true_1h, pred_1h))
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
