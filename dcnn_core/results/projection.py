"""What the network learned, in two dimensions: its last hidden features under PCA or t-SNE.

The features are the input to the final Dense ('predictions') layer — the
representation the classifier draws its lines through. Images of one class that
cluster together here are easy for the last layer to tell apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcnn_core.results.submodels import cached_submodel

PCA, TSNE = "PCA", "t-SNE"
TSNE_LIMIT = 1500  # t-SNE is O(n log n) at best and slow on a shared CPU: at most this many points
PCA_LIMIT = 2000  # enough to see the clusters; keeps the scatter small to send


@dataclass(frozen=True)
class Projection:
    """2-D coordinates of some test images."""

    method: str  # PCA or TSNE
    indices: np.ndarray  # which test images, ascending
    points: np.ndarray  # (len(indices), 2)
    note: str  # e.g. "1,500 of 10,000 test images, chosen at random (seed 0)"


def _classifier(model):
    """The final Dense layer, which draws the class boundaries."""
    last = model.layers[-1]
    if type(last).__name__ != "Dense":
        raise ValueError("The model does not end in a Dense layer, so its last hidden features cannot be found.")
    return last


def penultimate_layer(model):
    """The layer feeding the final Dense layer: its output is the feature vector projected here."""
    features = _classifier(model).input
    for layer in reversed(model.layers[:-1]):
        if _output_or_none(layer) is features:
            return layer
    raise ValueError("The layer feeding the model's final Dense layer cannot be found.")


def _output_or_none(layer):
    try:
        return layer.output
    except (AttributeError, ValueError):  # a layer used several times has no single output
        return None


def penultimate_features(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The features entering the final Dense layer, (N, D) float32, for uint8 images (N, H, W, C)."""
    last = _classifier(model)
    probe = cached_submodel(model, "penultimate", lambda: last.input)
    outputs = [
        np.asarray(probe(np.asarray(images[start : start + batch_size], np.float32), training=False)).reshape(
            min(batch_size, len(images) - start), -1
        )
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, int(last.input.shape[-1])), np.float32)


def subsample(count: int, limit: int, seed: int = 0) -> np.ndarray:
    """All indices below ``count``, or ``limit`` of them chosen at random (seeded), ascending."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The first two principal components of ``features`` (a zero column when there is only one)."""
    from sklearn.decomposition import PCA as SklearnPCA

    features = np.asarray(features, np.float64)
    components = min(2, features.shape[0], features.shape[1])
    if components < 1:
        return np.zeros((features.shape[0], 2))
    points = SklearnPCA(n_components=components, random_state=0).fit_transform(features)
    return np.pad(points, ((0, 0), (0, 2 - components)))


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded 2-D t-SNE embedding; refuses more than ``TSNE_LIMIT`` points."""
    from sklearn.manifold import TSNE as SklearnTSNE

    count = len(features)
    if count > TSNE_LIMIT:
        raise ValueError(f"t-SNE of {count:,} points would be too slow here; subsample to at most {TSNE_LIMIT:,}.")
    if count < 5:
        raise ValueError("t-SNE needs at least 5 images.")
    perplexity = float(min(30.0, (count - 1) / 3))
    embedding = SklearnTSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return embedding.fit_transform(np.asarray(features, np.float32))


def features_problem(model) -> str | None:
    """Why this model's last hidden features cannot be projected, or None when they can."""
    try:
        penultimate_layer(model)
    except ValueError as error:
        return str(error)
    return None


def project(model, images: np.ndarray, method: str = PCA, seed: int = 0) -> Projection:
    """Project test images' last hidden features to 2-D, subsampling (seeded) above the method's limit."""
    if method not in (PCA, TSNE):
        raise ValueError(f"Method must be {PCA} or {TSNE}.")
    limit = TSNE_LIMIT if method == TSNE else PCA_LIMIT
    indices = subsample(len(images), limit, seed)
    features = penultimate_features(model, images[indices])
    points = tsne_2d(features, seed) if method == TSNE else pca_2d(features)
    shown = f"{len(indices):,} of {len(images):,} test images, chosen at random (seed {seed})"
    note = shown if len(indices) < len(images) else f"all {len(images):,} test images"
    return Projection(method, indices, np.asarray(points, np.float32), note)
