"""What the Predict page shows of a trained model, computed once per model version and shared.

A *trained model* is anything with a model and the data it was trained on: a training run that has
ended, or a ``.keras`` model a user imported (``TrainedModel``). Its analysis — the test-set
evaluation, projections of learned features, verified exports — is slow to compute, so it is kept,
keyed by (run id, version): a run continued for more epochs has a new version, and every tab then
computes fresh results instead of showing the old ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from dcnn_core.data.datasets import Dataset
from dcnn_core.results import evaluation, explain, projection


class TrainedModel(Protocol):
    """A model ready to predict, with the data set it was trained on."""

    job_id: str
    model: Any
    dataset: Dataset
    status: str
    ended: bool

    @property
    def version(self) -> int: ...

    @property
    def display_name(self) -> str: ...

    def training_history(self) -> dict[str, list[float]] | None:
        """Per-epoch metrics; None for a model that was not trained here (imported)."""


def version_of(run: TrainedModel) -> int:
    return int(getattr(run, "version", 0))


class RunAnalysis:
    """Results for one version of one trained model; each computed at most once, on first request."""

    def __init__(self, run: TrainedModel):
        self.run = run
        self.version = version_of(run)
        self._lock = threading.RLock()  # re-entrant: one result may be computed from another (filters from their weights)
        self._results: dict[str, Any] = {}

    def get(self, name: str, compute: Callable[[], Any]) -> Any:
        """The result called ``name``, computed by ``compute()`` the first time it is asked for."""
        with self._lock:
            if name not in self._results:
                self._results[name] = compute()
            return self._results[name]

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._results

    # --- one image at a time: what the model predicts, and what it looks at ---------------------------

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """The class probabilities for one uint8 image (H, W, C)."""
        return evaluation.predict_probabilities(self.run.model, image[None])[0]

    def has_convolutions(self) -> bool:
        return self.get("has_convolutions", lambda: bool(explain.conv_layers(self.run.model)))

    def heatmap(self, image: np.ndarray, class_index: int, method: str) -> explain.Heatmap:
        """Where the evidence for ``class_index`` lies (``explain.GRAD_CAM`` or ``explain.SALIENCY``)."""
        explainer = explain.grad_cam if method == explain.GRAD_CAM else explain.saliency
        return explainer(self.run.model, image, class_index)

    def feature_maps(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Each convolution's output for one image, input to output."""
        return dict(explain.feature_maps(self.run.model, image))

    def first_layer_filters(self) -> np.ndarray:
        return self.get("first_layer_filters", lambda: explain.first_layer_filters(self.run.model))

    # --- the whole test set ----------------------------------------------------------------------------

    def projection(self, method: str) -> projection.Projection:
        """The test images' last hidden features in 2-D (``projection.PCA`` or ``projection.TSNE``)."""
        return self.get(method, lambda: projection.project(self.run.model, self.run.dataset.x_test, method))

    def features_problem(self) -> str | None:
        """Why the learned features cannot be shown for this model, or None."""
        return self.get("features_problem", lambda: projection.features_problem(self.run.model))

    def evaluation(self) -> evaluation.Evaluation:
        """Accuracy, loss, confusion matrix and per-class report on the test split."""
        data = self.run.dataset
        return self.get("evaluation", lambda: evaluation.evaluate(self.run.model, data.x_test, data.y_test, data.class_names))


class Analyses:
    """The analyses of the process, at most ``capacity`` of them (least recently used go first)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._by_key: OrderedDict[tuple[str, int], RunAnalysis] = OrderedDict()

    def of(self, run: TrainedModel) -> RunAnalysis:
        """The analysis of ``run`` as it is now (a new one once it has been trained further)."""
        key = (run.job_id, version_of(run))
        with self._lock:
            analysis = self._by_key.get(key)
            if analysis is None or analysis.run is not run:
                for stale in [k for k in self._by_key if k[0] == run.job_id]:
                    del self._by_key[stale]
                analysis = self._by_key[key] = RunAnalysis(run)
            self._by_key.move_to_end(key)
            while len(self._by_key) > self.capacity:
                self._by_key.popitem(last=False)
            return analysis

    def forget(self, job_id: str) -> None:
        with self._lock:
            for key in [k for k in self._by_key if k[0] == job_id]:
                del self._by_key[key]
