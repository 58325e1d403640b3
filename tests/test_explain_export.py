"""Error analysis, looking inside the network, 2-D projections, proven export and safe import."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from dcnn_core.design import build, plan, spec
from dcnn_core.results import evaluation, explain, explain_plots, export, plots, projection
from dcnn_core.runtime import import_keras
from tests.helpers import zip_of


@pytest.fixture(scope="module")
def result(trained_job, tiny_shapes) -> evaluation.Evaluation:
    return evaluation.evaluate(trained_job.model, tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names)


@pytest.fixture(scope="module")
def keras_bytes(trained_job, tiny_shapes) -> bytes:
    return export.export_keras(trained_job.model, tiny_shapes.x_test[:8])


# --- error analysis ------------------------------------------------------------------------------


def test_per_class_metrics_match_a_count_by_hand(result, tiny_shapes):
    labels, predicted = tiny_shapes.y_test, result.predicted
    for label, name in enumerate(tiny_shapes.class_names):
        hits = np.sum((labels == label) & (predicted == label))
        predicted_as = np.sum(predicted == label)
        assert result.report[name]["support"] == np.sum(labels == label)
        assert result.report[name]["recall"] == pytest.approx(hits / np.sum(labels == label))
        assert result.report[name]["precision"] == pytest.approx(hits / predicted_as if predicted_as else 0.0)


def test_confusion_cells_hold_exactly_their_images_most_confident_first(result, tiny_shapes):
    labels = tiny_shapes.y_test
    seen = []
    for true_class in range(6):
        for predicted_class in range(6):
            cell = evaluation.confusion_cell(result, labels, true_class, predicted_class)
            expected = np.flatnonzero((labels == true_class) & (result.predicted == predicted_class))
            assert sorted(cell.tolist()) == expected.tolist()
            assert len(cell) == result.confusion[true_class, predicted_class]
            confidence = result.probabilities[cell, predicted_class]
            assert np.all(np.diff(confidence) <= 0)
            seen.extend(cell.tolist())
    assert sorted(seen) == list(range(len(labels)))


def test_cell_order_on_hand_made_probabilities():
    probabilities = np.array([[0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.9, 0.1], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 0, 1])
    made = evaluation.Evaluation(0.4, 1.0, probabilities, probabilities.argmax(1), np.zeros((2, 2)), {})
    assert evaluation.confusion_cell(made, labels, 0, 1).tolist() == [2, 0, 1]
    assert evaluation.confusion_cell(made, labels, 1, 1).tolist() == [4]
    assert evaluation.confusion_cell(made, labels, 1, 0).tolist() == []
    assert evaluation.most_confident_errors(made, labels, limit=2).tolist() == [2, 0]
    with pytest.raises(ValueError, match="from 0 to 1"):
        evaluation.confusion_cell(made, labels, 2, 0)


def test_most_confident_errors_are_wrong_and_sorted(result, tiny_shapes):
    labels = tiny_shapes.y_test
    errors = evaluation.most_confident_errors(result, labels, limit=5)
    wrong = np.flatnonzero(result.predicted != labels)
    assert len(errors) == min(5, len(wrong))
    assert set(errors.tolist()) <= set(wrong.tolist())
    confidence = result.probabilities[errors, result.predicted[errors]]
    assert np.all(np.diff(confidence) <= 0)
    every_error = np.sort(result.probabilities[wrong, result.predicted[wrong]])[::-1]
    np.testing.assert_allclose(confidence, every_error[: len(errors)])


# --- inside the network --------------------------------------------------------------------------


def test_feature_maps_one_per_convolution_with_their_shapes(trained_job, tiny_shapes):
    maps = explain.feature_maps(trained_job.model, tiny_shapes.x_test[0])
    assert [name for name, _ in maps] == ["block1_conv1", "block2_conv1", "block3_conv1"]
    assert [array.shape for _, array in maps] == [(16, 16, 32), (8, 8, 64), (4, 4, 128)]
    # The first map is the first convolution applied to the rescaled image.
    model = trained_job.model
    rescaled = model.get_layer("rescale")(tiny_shapes.x_test[:1].astype(np.float32))
    reference = np.asarray(model.get_layer("block1_conv1")(rescaled))[0]
    np.testing.assert_allclose(maps[0][1], reference, atol=1e-5)


def test_feature_maps_count_every_convolution_of_a_residual_design():
    design = spec.preset("ResNet-style mini")
    model = build.build_model(design, (16, 16, 1), 6)
    maps = explain.feature_maps(model, np.zeros((16, 16, 1), np.uint8))
    convolutions = [node for node in plan.expand(design, 6) if node.class_name in ("Conv2D", "SeparableConv2D")]
    assert len(maps) == len(convolutions) == 7  # 1 + (2 + shortcut) + (2 + shortcut)


def test_first_layer_filters_are_scaled_per_filter(trained_job):
    filters = explain.first_layer_filters(trained_job.model)
    assert filters.shape == (3, 3, 1, 32)
    assert np.allclose(filters.min(axis=(0, 1, 2)), 0) and np.allclose(filters.max(axis=(0, 1, 2)), 1)


def test_grad_cam_is_input_sized_in_unit_range_and_depends_on_the_class(trained_job, tiny_shapes, result):
    image = tiny_shapes.x_test[0]
    predicted = int(result.predicted[0])
    other = (predicted + 1) % 6
    first = explain.grad_cam(trained_job.model, image, predicted)
    second = explain.grad_cam(trained_job.model, image, other)
    for heatmap in (first, second):
        assert heatmap.method == explain.GRAD_CAM and heatmap.layer == "block3_conv1"
        assert heatmap.values.shape == (16, 16)
        assert heatmap.values.min() >= 0 and heatmap.values.max() <= 1
    assert first.values.max() == pytest.approx(1.0)
    assert not np.allclose(first.values, second.values)
    with pytest.raises(ValueError, match="from 0 to 5"):
        explain.grad_cam(trained_job.model, image, 6)


def test_saliency_and_the_fallback_for_a_model_without_convolutions(trained_job, tiny_shapes):
    heatmap = explain.saliency(trained_job.model, tiny_shapes.x_test[1], 2)
    assert heatmap.method == explain.SALIENCY and heatmap.values.shape == (16, 16)
    assert 0 <= heatmap.values.min() and heatmap.values.max() == pytest.approx(1.0)
    dense = build.build_model(spec.preset("Article baseline"), (16, 16, 1), 6)
    fallback = explain.grad_cam(dense, tiny_shapes.x_test[1], 0)
    assert fallback.method == explain.SALIENCY and "no convolution" in fallback.note
    assert explain.feature_maps(dense, tiny_shapes.x_test[1]) == []


def test_wrong_image_shape_is_refused(trained_job):
    with pytest.raises(ValueError, match="model takes"):
        explain.grad_cam(trained_job.model, np.zeros((28, 28, 1), np.uint8), 0)


# --- learned features ----------------------------------------------------------------------------


def test_penultimate_features_feed_the_output_layer(trained_job, tiny_shapes):
    features = projection.penultimate_features(trained_job.model, tiny_shapes.x_test[:10])
    assert features.shape == (10, 128)
    last = trained_job.model.get_layer("predictions")
    logits = features @ np.asarray(last.kernel) + np.asarray(last.bias)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax, evaluation.predict_probabilities(trained_job.model, tiny_shapes.x_test[:10]), atol=1e-5)


def test_pca_and_tsne_projections(trained_job, tiny_shapes):
    pca = projection.project(trained_job.model, tiny_shapes.x_test, projection.PCA)
    assert pca.points.shape == (len(tiny_shapes.x_test), 2) and pca.note.startswith("all")
    tsne = projection.project(trained_job.model, tiny_shapes.x_test, projection.TSNE, seed=1)
    assert tsne.points.shape == (len(tiny_shapes.x_test), 2) and np.all(np.isfinite(tsne.points))
    figure = explain_plots.projection_scatter(pca.points, tiny_shapes.y_test[pca.indices], tiny_shapes.class_names, pca.indices)
    assert len(figure.data) == 6 and sorted(np.concatenate([t.customdata for t in figure.data]).tolist()) == pca.indices.tolist()


def test_subsampling_is_seeded_and_capped():
    first, again = projection.subsample(5000, 1500, seed=3), projection.subsample(5000, 1500, seed=3)
    assert len(first) == 1500 and np.array_equal(first, again) and np.all(np.diff(first) > 0)
    assert projection.subsample(20, 1500).tolist() == list(range(20))
    with pytest.raises(ValueError, match="too slow"):
        projection.tsne_2d(np.zeros((projection.TSNE_LIMIT + 1, 3)))


# --- export --------------------------------------------------------------------------------------


def test_keras_export_reloads_to_the_same_predictions(trained_job, tiny_shapes, keras_bytes):
    keras = import_keras()
    assert zipfile.is_zipfile(io.BytesIO(keras_bytes))
    reloaded = export.import_keras_model(keras_bytes, "mine.keras", (16, 16, 1), 6)
    images = tiny_shapes.x_test[:20]
    expected = evaluation.predict_probabilities(trained_job.model, images)
    np.testing.assert_allclose(evaluation.predict_probabilities(reloaded, images), expected, atol=1e-6)
    assert isinstance(reloaded, keras.Model)


def test_tflite_export_predicts_like_the_model(trained_job, tiny_shapes):
    data = export.export_tflite(trained_job.model, tiny_shapes.x_test[:4])
    images = tiny_shapes.x_test[10:30]
    expected = evaluation.predict_probabilities(export.float32_copy(trained_job.model), images)  # trained in bfloat16 or not
    np.testing.assert_allclose(export.run_tflite(data, images), expected, atol=export.TFLITE_TOLERANCE)


def test_a_run_trained_in_mixed_bfloat16_exports_to_tflite_and_keras_and_imports_back(trained_job, tiny_shapes):
    """On a CPU with native bfloat16, "auto" trains some presets in mixed bfloat16: TensorFlow Lite has no bfloat16
    kernels, so it gets the same weights computing in float32; the .keras file keeps the policy and imports back."""
    from dcnn_core.runtime import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        mixed = build.build_model(spec.preset("Simple CNN"), (16, 16, 1), 6, float32_output=True)  # as a run builds it
    with dtype_policy("float32"):
        plain = build.build_model(spec.preset("Simple CNN"), (16, 16, 1), 6)
    for model in (mixed, plain):
        model.set_weights(trained_job.model.get_weights())  # the trained weights (mixed precision keeps them in float32)
    assert export.float32_copy(plain) is plain  # float32 already: nothing to copy
    images = tiny_shapes.x_test[10:30]
    data = export.export_tflite(mixed, tiny_shapes.x_test[:4])
    in_float32 = evaluation.predict_probabilities(plain, images)
    np.testing.assert_allclose(export.run_tflite(data, images), in_float32, atol=export.TFLITE_TOLERANCE)
    as_trained = evaluation.predict_probabilities(mixed, images)
    np.testing.assert_allclose(export.run_tflite(data, images), as_trained, atol=0.02)  # bfloat16 keeps ~3 digits
    reloaded = export.import_keras_model(export.export_keras(mixed), "mixed.keras", (16, 16, 1), 6)
    np.testing.assert_allclose(evaluation.predict_probabilities(reloaded, images), as_trained, atol=1e-6)


def test_an_export_that_does_not_reproduce_the_model_is_refused(trained_job, monkeypatch):
    keras = import_keras()
    other = build.build_model(spec.preset("Simple CNN"), (16, 16, 1), 6)  # same design, other weights
    monkeypatch.setattr(keras.saving, "load_model", lambda *args, **kwargs: other)
    with pytest.raises(export.ExportError, match="does not reproduce"):
        export.export_keras(trained_job.model)


def test_history_csv():
    text = export.history_csv({"loss": [1.5, 0.75], "val_loss": [float("nan"), 0.5]})
    assert text == "epoch,loss,val_loss\n1,1.5,\n2,0.75,0.5\n"
    assert export.history_csv({}) == "epoch\n"


# --- import --------------------------------------------------------------------------------------


def _saved(model) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _with_config(data: bytes, change) -> bytes:
    """A copy of a .keras zip with its config.json changed by ``change(config)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                change(config)
                content = json.dumps(config).encode()
            target.writestr(item.filename, content)
    return buffer.getvalue()


def test_a_lambda_layer_is_refused():
    keras = import_keras()
    inputs = keras.Input((16, 16, 1))
    doubled = keras.layers.Lambda(lambda x: x * 2)(inputs)
    outputs = keras.layers.Dense(6, activation="softmax")(keras.layers.Flatten()(doubled))
    data = _saved(keras.Model(inputs, outputs))
    with pytest.raises(export.ImportRefused, match="Lambda layer"):
        export.import_keras_model(data, "tricky.keras", (16, 16, 1), 6)


def test_wrong_input_shape_and_class_count_are_refused(keras_bytes):
    with pytest.raises(export.ImportRefused, match=r"takes inputs of shape \(16, 16, 1\).*28×28×1"):
        export.import_keras_model(keras_bytes, "mine.keras", (28, 28, 1), 6)
    with pytest.raises(export.ImportRefused, match="has 10 classes"):
        export.import_keras_model(keras_bytes, "mine.keras", (16, 16, 1), 10)


def test_a_model_without_softmax_is_refused():
    keras = import_keras()
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Dense(6)(keras.layers.Flatten()(inputs))
    with pytest.raises(export.ImportRefused, match="softmax"):
        export.import_keras_model(_saved(keras.Model(inputs, outputs)), "logits.keras", (16, 16, 1), 6)


@pytest.mark.parametrize(
    "make, name, message",
    [
        (lambda good: good, "model.h5", "not a .keras file"),
        (lambda good: b"not a zip at all", "model.keras", "not a zip"),
        (lambda good: zip_of({"weights.h5": b"x"}), "model.keras", "no config.json"),
        (lambda good: zip_of({"config.json": b"{not json"}), "model.keras", "not valid JSON"),
        (lambda good: b"", "model.keras", "is empty"),
        (lambda good: good + b"\0" * 2048, "big.keras", "the limit is"),
        (
            lambda good: _with_config(good, lambda config: config["config"]["layers"][1].update(module="os", class_name="system")),
            "model.keras",
            "outside Keras",
        ),
    ],
    ids=["extension", "not-zip", "no-config", "bad-json", "empty", "too-big", "foreign-module"],
)
def test_files_that_are_not_safe_keras_models_are_refused(keras_bytes, make, name, message):
    max_bytes = len(keras_bytes) + 1024
    with pytest.raises(export.ImportRefused, match=message):
        export.import_keras_model(make(keras_bytes), name, (16, 16, 1), 6, max_bytes=max_bytes)


def test_clickable_confusion_heatmap_marks_every_cell_row_by_row():
    confusion = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    figure = plots.clickable_confusion_heatmap(confusion, ("a", "b", "<c>"))
    markers = figure.data[-1]
    assert list(markers.customdata) == confusion.ravel().tolist()
    index = 1 * 3 + 2  # row "b", column "<c>": what a click there reports as its point_index
    assert (markers.y[index], markers.x[index]) == ("b", "&lt;c&gt;")
    assert figure.data[0].hoverinfo == "skip"


def test_filters_grid_shows_colour_kernels_as_images_and_gray_ones_as_heatmaps():
    colour = explain_plots.filters_grid(np.random.default_rng(0).random((3, 3, 3, 8)))
    gray = explain_plots.filters_grid(np.random.default_rng(0).random((5, 5, 1, 40)))
    assert [trace.type for trace in colour.data] == ["image"] * 8
    assert [trace.type for trace in gray.data] == ["heatmap"] * 32  # at most 32 shown
