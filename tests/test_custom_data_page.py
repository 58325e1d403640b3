"""AppTest of the "Your images" section: import, review before training, refusals, removal."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.data import custom_data, shapes
from tests.helpers import png, shapes_zip, tighten_app_rules
from ui import resources

TIMEOUT = 60


def _section():
    from ui import state
    from ui.custom_data_view import draw_custom_data_section

    state.init_state()
    draw_custom_data_section()


def _shapes_zip() -> bytes:
    return shapes_zip(6, 20, True, seed=2, extra={"shapes/circle/notes.txt": b"drawn by a computer"})[0]


def _photos(seed: int, count: int = 4) -> list[tuple[str, bytes, str]]:
    rng = np.random.default_rng(seed)
    return [(f"p{i}.png", png(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)), "image/png") for i in range(count)]


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


@pytest.fixture(autouse=True)
def fresh_settings():
    """Settings are cached per process; read the environment again for each test, and after the last."""
    resources.settings.clear()
    yield
    resources.settings.clear()


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_function(_section, default_timeout=TIMEOUT)
    app.run()
    assert not app.exception
    return app


def test_a_good_zip_is_imported_chosen_and_reviewed_before_training(at):
    at.file_uploader(key="data_custom_zip").set_value(("shapes.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Imported **shapes**: 36 images in 6 classes (30 to train, 6 to test)" in at.success[0].value
    dataset = at.session_state["custom_datasets"]["shapes"]
    assert dataset.input_shape == (32, 32, 3) and dataset.class_names == tuple(sorted(shapes.SHAPE_NAMES))
    assert at.session_state["dataset_choice"].to_dict() == {"key": "custom", "options": {"name": "shapes"}}
    counts, grid = _figures(at)
    assert counts["data"][0]["y"] == [6] * 6
    assert sum(trace["type"] == "image" for trace in grid["data"]) == 12
    skipped = at.dataframe[0].value
    assert skipped.to_dict("records") == [{"File": "shapes/circle/notes.txt", "Why": "not an image"}]


def test_a_hostile_zip_gives_one_message_and_the_app_keeps_working(at):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/1.png", _photos(1, 1)[0][1])
        archive.writestr("../evil.png", b"x")
    at.file_uploader(key="data_custom_zip").set_value(("evil.zip", buffer.getvalue(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert not at.exception
    assert "climbs out of its folder" in at.error[0].value and "evil" in at.error[0].value
    assert at.session_state["custom_datasets"] == {}
    at.file_uploader(key="data_custom_zip").set_value(("shapes.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert not at.error and "shapes" in at.session_state["custom_datasets"]


def test_an_unexpected_failure_is_one_line_not_a_traceback(at, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nTraceback (most recent call last): …")

    monkeypatch.setattr(custom_data, "import_zip", broken)
    at.file_uploader(key="data_custom_zip").set_value(("shapes.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert not at.exception
    assert at.error[0].value == "The import failed unexpectedly (RuntimeError). Nothing was changed; try another file."


def test_classes_built_from_uploads_and_the_webcam_keep_their_names_as_plain_text(at):
    at.text_area(key="data_custom_class_names").set_value("<b>bold</b>\nThumbs up").run()
    at.file_uploader(key="data_custom_files_0").set_value(_photos(1)).run()
    at.file_uploader(key="data_custom_files_1").set_value(_photos(2, count=3)).run()
    at.toggle(key="data_custom_webcam_on_1").set_value(True).run()
    shot = png(np.full((48, 64, 3), 120, np.uint8), "JPEG")
    at.camera_input(key="data_custom_camera_1").set_value(("camera.jpg", shot, "image/jpeg")).run()
    assert "1 webcam picture kept for this class." in [caption.value for caption in at.caption]
    at.button(key="data_custom_clear_shots_1").click().run().run()  # forgotten, and not taken back from the camera on a rerun
    assert not any("webcam picture" in caption.value for caption in at.caption)
    at.camera_input(key="data_custom_camera_1").set_value(("camera.jpg", shot, "image/jpeg")).run()  # a new picture
    assert "1 webcam picture kept for this class." in [caption.value for caption in at.caption]
    at.text_input(key="data_custom_name").set_value("Gestures").run()
    at.button(key="data_custom_import_build").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    dataset = at.session_state["custom_datasets"]["Gestures"]
    assert dataset.class_names == ("<b>bold</b>", "Thumbs up")
    assert sorted(np.bincount(np.concatenate([dataset.y_train, dataset.y_test])).tolist()) == [4, 4]
    counts = _figures(at)[0]
    assert counts["data"][0]["x"] == ["&lt;b&gt;bold&lt;/b&gt;", "Thumbs up"]  # Plotly shows the tags as typed


def test_a_class_short_of_images_is_refused_naming_it(at):
    at.text_area(key="data_custom_class_names").set_value("cats\ndogs").run()
    at.file_uploader(key="data_custom_files_0").set_value(_photos(1)).run()
    at.file_uploader(key="data_custom_files_1").set_value(_photos(2, count=1)).run()
    at.button(key="data_custom_import_build").click().run()
    assert not at.exception
    assert "The class 'dogs' has 1 usable image" in at.error[0].value.replace("\\", "")
    assert at.session_state["custom_datasets"] == {}


def test_remove_this_set_forgets_it(at):
    at.file_uploader(key="data_custom_zip").set_value(("shapes.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert "shapes" in at.session_state["custom_datasets"]
    at.button(key="data_custom_remove_0").click().run()
    assert not at.exception
    assert at.session_state["custom_datasets"] == {}
    assert not at.success and not at.get("plotly_chart")  # the report went with it


def test_the_server_folder_tab_is_offered_only_when_allowed(monkeypatch, tmp_path):
    for label, picture in enumerate(_photos(3, count=8)):
        folder = tmp_path / "pets" / ("cats" if label % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / picture[0]).write_bytes(picture[1])
    plain = AppTest.from_function(_section, default_timeout=TIMEOUT).run()
    assert [tab.label for tab in plain.tabs] == ["Zip of class folders", "Build classes"]
    monkeypatch.setenv("DCNN_ALLOW_SERVER_FOLDERS", "1")
    resources.settings.clear()
    local = AppTest.from_function(_section, default_timeout=TIMEOUT).run()
    assert [tab.label for tab in local.tabs] == ["Zip of class folders", "Build classes", "Server folder"]
    local.text_input(key="data_custom_folder").set_value(str(tmp_path / "pets")).run()
    local.button(key="data_custom_import_folder").click().run()
    assert not local.exception and "Imported **pets**: 8 images in 2 classes" in local.success[0].value


def test_image_sets_per_person_are_bounded_and_a_refusal_loses_nothing(monkeypatch):
    tighten_app_rules(monkeypatch, max_image_sets_per_owner=1)
    at = AppTest.from_function(_section, default_timeout=TIMEOUT).run()
    at.file_uploader(key="data_custom_zip").set_value(("shapes.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    at.file_uploader(key="data_custom_zip").set_value(("more.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert not at.exception
    assert list(at.session_state["custom_datasets"]) == ["shapes"]
    assert any("the most this server keeps per person" in error.value for error in at.error)
    at.button(key="data_custom_remove_0").click().run()
    at.button(key="data_custom_import_zip").click().run()
    assert list(at.session_state["custom_datasets"]) == ["more"]


def test_a_failed_import_after_a_good_one_shows_only_its_own_outcome(at):
    """The previous import's success banner must not sit under the new import's error, as if both were news."""
    at.file_uploader(key="data_custom_zip").set_value(("shapes.zip", _shapes_zip(), "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert len(at.success) == 1
    at.file_uploader(key="data_custom_zip").set_value(("junk.zip", b"not a zip at all", "application/zip")).run()
    at.button(key="data_custom_import_zip").click().run()
    assert not at.exception and at.error
    assert not at.success  # only the error about junk.zip
    assert "shapes" in at.session_state["custom_datasets"]  # the earlier set is still there
