"""AppTest of the Predict page with a finished run: error analysis, uploads, looking inside, export, import."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.design import spec
from dcnn_core.results import evaluation, export
from dcnn_core.training import job as training
from tests.helpers import png, tighten_app_rules, train_in_app

TIMEOUT = 90
APP = str(Path(__file__).resolve().parent.parent / "app.py")
OWNER = "5eed0f00d5eed0f00d5eed0f"
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 30, "image_size": 16, "seed": 1}}  # = conftest's tiny_shapes


@pytest.fixture(scope="module")
def page_job(tiny_shapes) -> training.TrainingJob:
    """A finished one-epoch run on tiny Shapes, owned by the test session and held by the app's registry."""
    from ui import resources

    run = train_in_app(spec.preset("Simple CNN"), training.TrainConfig(epochs=1, batch_size=16, seed=3), TINY_SHAPES, OWNER)
    assert run.status == training.FINISHED, run.message
    return resources.trained(run.run_id)


def _open_predict(dataset_choice: dict = TINY_SHAPES) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["owner_id"] = OWNER
    at.session_state["dataset_choice"] = dict(dataset_choice)
    at.run()
    at.switch_page("pages/predict.py")
    at.run()
    _ok(at)
    return at


@pytest.fixture
def predict_page(page_job) -> AppTest:
    at = _open_predict()
    at.selectbox(key="predict_run").set_value(page_job.job_id).run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _chart(at: AppTest, key: str) -> dict:
    matches = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart") if chart.proto.id.endswith(key)]
    assert matches, f"no chart {key!r}"
    return matches[0]


def _rows(array) -> int:
    """Length of a figure's array: a list, or Plotly's typed-array form {"dtype", "bdata", "shape"?}."""
    if not isinstance(array, dict):
        return len(array)
    values = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return int(str(array["shape"]).split(",")[0]) if "shape" in array else len(values)


def _uploader(at: AppTest, key: str):
    (uploader,) = [u for u in at.get("file_uploader") if u.key == key]
    return uploader


def _jpeg(array: np.ndarray) -> bytes:
    return png(array, "JPEG")


def test_page_shows_metrics_and_the_chosen_confusion_cell(predict_page, page_job, tiny_shapes):
    result = evaluation.evaluate(page_job.model, tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names)
    assert predict_page.metric[0].value == f"{result.accuracy:.4f}"
    predict_page.selectbox(key="predict_cell_true").set_value(2).run()
    predict_page.selectbox(key="predict_cell_predicted").set_value(2).run()
    _ok(predict_page)
    cell = evaluation.confusion_cell(result, tiny_shapes.y_test, 2, 2)
    captions = " ".join(c.value for c in predict_page.caption)
    assert f"{len(cell):,} test images of **{tiny_shapes.class_names[2]}** predicted as **{tiny_shapes.class_names[2]}**" in captions
    if len(cell):
        titles = [a["text"] for a in _chart(predict_page, "predict_cell_gallery")["layout"]["annotations"]]
        assert [int(t.split()[0][1:]) for t in titles] == cell[:12].tolist()  # most confident first
    assert "The most confident mistakes" in " ".join(m.value for m in predict_page.markdown)


def test_upload_and_webcam_photos_get_a_top_k_chart(predict_page, tiny_shapes):
    photo = np.zeros((64, 48), np.uint8)
    photo[16:48, 12:36] = 255  # a bright square on black
    _uploader(predict_page, "predict_upload").set_value(("square.png", png(photo), "image/png")).run()
    _ok(predict_page)
    bars = _chart(predict_page, "predict_topk_upload")["data"][0]
    assert set(bars["y"]) <= {str(name) for name in tiny_shapes.class_names} and len(bars["y"]) == 5
    assert predict_page.selectbox(key="predict_inside_source").value == "Your upload: square.png"  # "Look inside" follows it

    predict_page.toggle(key="predict_camera_on").set_value(True).run()
    predict_page.camera_input(key="predict_camera").set_value(("webcam.jpg", _jpeg(np.stack([photo] * 3, -1)), "image/jpeg")).run()
    _ok(predict_page)
    assert _chart(predict_page, "predict_topk_camera")["data"][0]["type"] == "bar"

    _uploader(predict_page, "predict_upload").set_value(("notes.png", b"just some text", "image/png")).run()
    _ok(predict_page)
    assert any("is not an image" in e.value for e in predict_page.error)


def test_look_inside_shows_grad_cam_feature_maps_filters_and_projection(predict_page):
    overlay = _chart(predict_page, "predict_explain_overlay")
    assert overlay["data"][-1]["type"] == "heatmap" and _rows(overlay["data"][-1]["z"]) == 16
    assert "Grad-CAM for" in overlay["layout"]["annotations"][1]["text"]
    predict_page.selectbox(key="predict_explain_class").set_value(4).run()
    predict_page.radio(key="predict_explain_method").set_value("Saliency").run()
    _ok(predict_page)
    assert "Saliency for 'star'" in _chart(predict_page, "predict_explain_overlay")["layout"]["annotations"][1]["text"]
    predict_page.selectbox(key="predict_feature_layer").set_value("block2_conv1").run()
    maps = _chart(predict_page, "predict_feature_maps")
    assert len(maps["data"]) == 16 and _rows(maps["data"][0]["z"]) == 8  # 8×8 maps after the first pooling
    assert len(_chart(predict_page, "predict_filters")["data"]) == 32
    assert len(_chart(predict_page, "predict_pca")["data"]) == 6  # one trace per class
    predict_page.button(key="predict_tsne").click().run()
    _ok(predict_page)
    assert sum(_rows(trace["x"]) for trace in _chart(predict_page, "predict_tsne_chart")["data"]) == 30


def test_a_drawing_is_predicted(predict_page):
    ink = np.zeros((16, 16), bool)
    ink[4:12, 4:12] = True
    predict_page.session_state["predict_draw_ink"] = ink
    predict_page.run()
    _ok(predict_page)
    assert _chart(predict_page, "predict_topk_draw")["data"][0]["type"] == "bar"
    assert predict_page.selectbox(key="predict_inside_source").value == "Your drawing"


def test_exports_are_offered_only_after_their_check(predict_page):
    assert not [b for b in predict_page.get("download_button") if b.proto.id.endswith("predict_download_keras")]
    predict_page.button(key="predict_export_keras").click().run()
    predict_page.button(key="predict_export_tflite").click().run()
    _ok(predict_page)
    offered = {b.proto.id.rsplit("-", 1)[-1] for b in predict_page.get("download_button")}
    assert {"predict_download_keras", "predict_download_tflite", "predict_download_history"} <= offered
    assert sum("reloaded and checked" in c.value for c in predict_page.caption) == 2


def test_importing_a_keras_model_adds_a_run_and_a_misfit_is_refused(page_job, tiny_shapes):
    data = export.export_keras(page_job.model, tiny_shapes.x_test[:4])
    at = _open_predict({"key": "digits", "options": {}})  # 8×8 images: the 16×16 model does not fit
    _uploader(at, "predict_import").set_value(("shapes.keras", data, "application/octet-stream")).run()
    _ok(at)
    shown = [e.value.replace("\\", "") for e in at.error]  # as the user reads it: Markdown escapes removed
    assert any("takes inputs of shape (16, 16, 1)" in text and "8×8×1" in text for text in shown)

    at = _open_predict()
    _uploader(at, "predict_import").set_value(("shapes.keras", data, "application/octet-stream")).run()
    at.run()
    _ok(at)
    assert at.selectbox(key="predict_run").value.startswith("import-")
    result = evaluation.evaluate(page_job.model, tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names)
    assert at.metric[0].value == f"{result.accuracy:.4f}"  # the same weights, evaluated on the same images
    assert any("is imported" in s.value for s in at.success)


def test_imported_models_per_person_are_bounded(page_job, tiny_shapes, monkeypatch):
    tighten_app_rules(monkeypatch, max_imported_models_per_owner=1)
    data = export.export_keras(page_job.model, tiny_shapes.x_test[:4])
    at = _open_predict()
    _uploader(at, "predict_import").set_value(("one.keras", data, "application/octet-stream")).run()
    at.run()
    _uploader(at, "predict_import").set_value(("two.keras", data, "application/octet-stream")).run()
    _ok(at)
    assert len(at.session_state["predict_imported"]) == 1
    assert any("the most this server keeps per person" in error.value for error in at.error)


def test_a_dense_only_run_falls_back_to_saliency(tiny_shapes):
    from ui import resources

    run = train_in_app(spec.preset("Article baseline"), training.TrainConfig(epochs=1, seed=1), TINY_SHAPES, OWNER)
    job = resources.trained(run.run_id)
    assert job is not None and job.status == training.FINISHED
    at = _open_predict()
    at.selectbox(key="predict_run").set_value(job.job_id).run()
    _ok(at)
    assert at.radio(key="predict_explain_method").options == ["Saliency"]
    assert any("no convolution layers" in i.value for i in at.info)
    assert "Saliency for" in _chart(at, "predict_explain_overlay")["layout"]["annotations"][1]["text"]
    assert len(_chart(at, "predict_pca")["data"]) == 6


HOSTILE = "**bold** <b>x</b> [link](javascript:alert(1))"


def _rendered(markdown: str) -> str:
    """What a Markdown element shows, as HTML (CommonMark, as Streamlit's renderer reads it)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(markdown)


def _shows_literally(markdown: str, text: str) -> bool:
    html = _rendered(markdown)
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped in html and "<strong>bold" not in html and "<b>" not in html and "<a " not in html


def test_hostile_file_names_are_shown_as_typed(page_job, tiny_shapes):
    data = export.export_keras(page_job.model, tiny_shapes.x_test[:4])
    at = _open_predict({"key": "digits", "options": {}})
    _uploader(at, "predict_import").set_value((f"{HOSTILE}.keras", data, "application/octet-stream")).run()
    _ok(at)
    assert any(_shows_literally(e.value, f"'{HOSTILE}.keras' takes inputs") for e in at.error)

    at = _open_predict()
    _uploader(at, "predict_import").set_value((f"{HOSTILE}.keras", data, "application/octet-stream")).run()
    at.run()
    _ok(at)
    assert any(_shows_literally(s.value, f"'{HOSTILE}.keras' is imported") for s in at.success)
    _uploader(at, "predict_upload").set_value((f"{HOSTILE}.png", b"just some text", "image/png")).run()
    _ok(at)
    assert any(_shows_literally(e.value, f"'{HOSTILE}.png' is not an image") for e in at.error)


def _predicted(model, image: np.ndarray) -> int:
    return int(np.argmax(np.asarray(model(image[None].astype(np.float32), training=False))[0]))


def test_the_explained_class_names_the_current_prediction_without_widget_warnings(predict_page, page_job, tiny_shapes, monkeypatch):
    from streamlit.elements.lib import policies

    warnings: list[str] = []
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    monkeypatch.setattr(policies._LOGGER, "warning", lambda message, *args, **kwargs: warnings.append(message % args))
    names = tiny_shapes.class_names
    predictions = [_predicted(page_job.model, image) for image in tiny_shapes.x_test]
    label = lambda index: f"the predicted class ({names[predictions[index]]})"
    picker = predict_page.selectbox(key="predict_explain_class")
    assert picker.options[0] == label(0)  # test image #0 is the only image so far
    photo = np.zeros((64, 48), np.uint8)
    photo[16:48, 12:36] = 255
    _uploader(predict_page, "predict_upload").set_value(("square.png", png(photo), "image/png")).run()  # a second image
    assert predict_page.selectbox(key="predict_inside_source").value == "Your upload: square.png"
    shown = predict_page.selectbox(key="predict_explain_class").options[0]
    second = next(i for i in range(len(predictions)) if label(i) not in (shown, label(0)))
    predict_page.number_input(key="predict_test_index").set_value(second).run()
    _ok(predict_page)
    picker = predict_page.selectbox(key="predict_explain_class")
    assert predict_page.selectbox(key="predict_inside_source").value == f"Test image #{second}"  # "Look inside" follows the newest
    assert picker.options[0] == label(second) and picker.format_func(picker.value) == label(second)
    # the browser keeps the text it was first given unless the value is sent again with the new text
    assert picker.proto.set_value and picker.proto.raw_value == label(second)
    predict_page.run()  # a rerun with nothing changed sends nothing
    assert not predict_page.selectbox(key="predict_explain_class").proto.set_value
    assert not [w for w in warnings if "predict_inside_source" in w or "predict_explain_class" in w], warnings
