"""Evaluate a trained model on a data set's test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    probabilities: np.ndarray  # (N, K)
    predicted: np.ndarray  # (N,)
    confusion: np.ndarray  # (K, K): rows are true classes, columns predicted
    report: dict  # scikit-learn's per-class precision, recall, F1 and support


def predict_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for uint8 images, calling the model directly (no ``predict`` loop)."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        outputs.append(np.asarray(model(batch, training=False)))
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(outputs)


def evaluate(model, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> Evaluation:
    """Accuracy, cross-entropy loss, confusion matrix and per-class report on ``images``."""
    from sklearn.metrics import classification_report, confusion_matrix

    probabilities = predict_probabilities(model, images)
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()) if len(labels) else float("nan")
    classes = list(range(len(class_names)))
    return Evaluation(
        accuracy=float((predicted == labels).mean()) if len(labels) else float("nan"),
        loss=loss,
        probabilities=probabilities,
        predicted=predicted,
        confusion=confusion_matrix(labels, predicted, labels=classes),
        report=classification_report(labels, predicted, labels=classes, target_names=list(class_names), output_dict=True, zero_division=0),
    )


def top_k(probabilities: np.ndarray, class_names: tuple[str, ...], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most likely classes of one image, most likely first."""
    order = np.argsort(probabilities)[::-1][:k]
    return [(class_names[i], float(probabilities[i])) for i in order]
