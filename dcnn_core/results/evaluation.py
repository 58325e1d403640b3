"""Evaluate a trained model on a data set's test split."""

from __future__ import annotations

from collections.abc import Callable
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


def predict_probabilities(model, images: np.ndarray, batch_size: int = 256, between_batches: Callable[[], None] | None = None,
                          ) -> np.ndarray:  # fmt: skip
    """Class probabilities for uint8 images, calling the model directly (no ``predict`` loop).

    ``between_batches`` is called before each batch and may raise to end early: a training run's test evaluation
    passes its Stop and turn check, so that the evaluation of a costly design can be stopped too.
    """
    outputs = []
    for start in range(0, len(images), batch_size):
        if between_batches is not None:
            between_batches()
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        outputs.append(np.asarray(model(batch, training=False)))
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(outputs)


def accuracy_and_loss(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean sparse categorical cross-entropy (NaN for no images)."""
    if not len(labels):
        return float("nan"), float("nan")
    picked = probabilities[np.arange(len(labels)), labels]
    return float((probabilities.argmax(axis=1) == labels).mean()), float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def evaluate(model, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> Evaluation:
    """Accuracy, cross-entropy loss, confusion matrix and per-class report on ``images``."""
    from sklearn.metrics import classification_report, confusion_matrix

    probabilities = predict_probabilities(model, images)
    predicted = probabilities.argmax(axis=1)
    accuracy, loss = accuracy_and_loss(probabilities, labels)
    classes = list(range(len(class_names)))
    return Evaluation(
        accuracy=accuracy,
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


def _by_confidence(evaluation: Evaluation, indices: np.ndarray) -> np.ndarray:
    """``indices`` ordered by the probability of their predicted class, most confident first (ties keep order)."""
    confidence = evaluation.probabilities[indices, evaluation.predicted[indices]]
    return indices[np.argsort(-confidence, kind="stable")]


def confusion_cell(evaluation: Evaluation, labels: np.ndarray, true_class: int, predicted_class: int) -> np.ndarray:
    """Indices of the test images of one confusion-matrix cell, most confident first.

    Args:
        evaluation: the result of ``evaluate`` on these images.
        labels: their true classes.
        true_class, predicted_class: the cell's row and column.
    """
    labels = np.asarray(labels)
    if len(labels) != len(evaluation.predicted):
        raise ValueError(f"{len(labels)} labels were given for {len(evaluation.predicted)} evaluated images.")
    classes = evaluation.probabilities.shape[1]
    for value, what in ((true_class, "true"), (predicted_class, "predicted")):
        if not 0 <= value < classes:
            raise ValueError(f"The {what} class must be from 0 to {classes - 1}; got {value}.")
    members = np.flatnonzero((labels == true_class) & (evaluation.predicted == predicted_class))
    return _by_confidence(evaluation, members)


def most_confident_errors(evaluation: Evaluation, labels: np.ndarray, limit: int = 12) -> np.ndarray:
    """Indices of up to ``limit`` misclassified images, the most confidently wrong first."""
    labels = np.asarray(labels)
    if len(labels) != len(evaluation.predicted):
        raise ValueError(f"{len(labels)} labels were given for {len(evaluation.predicted)} evaluated images.")
    wrong = np.flatnonzero(evaluation.predicted != labels)
    return _by_confidence(evaluation, wrong)[: max(0, int(limit))]
