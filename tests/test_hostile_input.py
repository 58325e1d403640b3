"""Hostile uploads: model files that ask for huge layers, image bombs, zip64 tricks, odd pixel formats, markup in names."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
from markdown_it import MarkdownIt
from PIL import Image, ImageDraw

from dcnn_core.data import custom_data, images, safe_zip
from dcnn_core.data.custom_options import ImportOptions, ImportRefused, ImportReport
from dcnn_core.design import backbones, build, spec
from dcnn_core.results import export, keras_check, keras_layers
from dcnn_core.runtime import import_keras
from tests.helpers import png
from ui.text import plain, plain_text

MB = 1024 * 1024
HOSTILE = "**bold** <b>x</b> [link](javascript:alert(1))"


def _peak_rss_growth(action) -> tuple[float, object]:
    """Run ``action`` while sampling this process's memory; the largest growth in MB, and what it returned or raised."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak, done = [start], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome = action()
    except Exception as error:  # the refusal is the outcome the tests look at
        outcome = error
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return (peak[0] - start) / MB, outcome


# --- .keras files ------------------------------------------------------------------------------------


def _saved(model) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _tiny_model():
    keras = import_keras()
    inputs = keras.Input((16, 16, 1))
    return keras.Model(inputs, keras.layers.Dense(6, activation="softmax")(keras.layers.Flatten()(inputs)))


@pytest.fixture(scope="module")
def tiny_keras() -> bytes:
    return _saved(_tiny_model())


def _replace_members(data: bytes, change_config=None, members: dict[str, bytes] | None = None) -> bytes:
    """A copy of a .keras zip with config.json changed by ``change_config(config)`` and some members replaced."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = (members or {}).get(item.filename, source.read(item.filename))
            if item.filename == "config.json" and change_config:
                config = json.loads(content)
                change_config(config)
                content = json.dumps(config).encode()
            target.writestr(item.filename, content)
    return buffer.getvalue()


def _huge_dense(config: dict) -> None:
    """Put a Dense(150000) between Flatten and the output layer: about 39 million parameters, 150 MB+ once built."""
    layers = config["config"]["layers"]
    flatten = next(layer for layer in layers if layer["class_name"] == "Flatten")
    output = layers[-1]
    huge = json.loads(json.dumps(output))
    huge["name"] = huge["config"]["name"] = "huge"
    huge["config"].update(units=150_000, activation="relu")
    huge["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = [flatten["name"], 0, 0]
    output["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["huge", 0, 0]
    layers.insert(layers.index(output), huge)


def test_a_small_file_asking_for_dense_150000_is_refused_before_any_memory_is_taken(tiny_keras):
    crafted = _replace_members(tiny_keras, _huge_dense)
    assert len(crafted) < 50_000
    growth, outcome = _peak_rss_growth(lambda: export.import_keras_model(crafted, "huge.keras", (16, 16, 1), 6, max_parameters=5_000_000))
    assert isinstance(outcome, export.ImportRefused), outcome
    assert "39,450,006 parameters" in str(outcome) and "5,000,000" in str(outcome) and "before loading" in str(outcome)
    assert growth < 50, f"the refusal took {growth:.0f} MB"


def test_the_parameter_limit_applies_without_a_caller_limit(tiny_keras):
    with pytest.raises(export.ImportRefused, match=f"limit of {export.MAX_IMPORT_PARAMETERS:,}"):
        export.import_keras_model(_replace_members(tiny_keras, _huge_dense), "huge.keras", (16, 16, 1), 6)


@pytest.mark.parametrize("name", list(spec.PRESETS))
def test_counting_config_json_gives_keras_own_parameter_count(name):
    model = build.build_model(spec.preset(name), (32, 32, 3), 10)
    config = json.loads(zipfile.ZipFile(io.BytesIO(_saved(model))).read("config.json"))
    summary = keras_check.summarise(config)
    assert (summary.parameters, summary.input_shape, summary.output_shape) == (model.count_params(), (32, 32, 3), (10,))


def test_counting_matches_keras_for_layers_the_app_does_not_build():
    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input((20, 18, 3))
    x = layers.ZeroPadding2D(((1, 2), (3, 0)))(inputs)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2)(x)
    a = layers.Conv2D(8, (3, 1), dilation_rate=(2, 1), padding="same", groups=2, use_bias=False)(x)
    b = layers.SeparableConv2D(5, 3, padding="same")(x)
    x = layers.Concatenate()([a, b])
    x = layers.BatchNormalization(center=False)(x)
    x = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    x = layers.LayerNormalization()(layers.PReLU()(x))
    x = layers.GlobalMaxPooling2D(keepdims=True)(x)
    x = layers.Reshape((13,))(x)
    outputs = layers.Dense(4, activation="softmax")(layers.Dropout(0.2)(x))
    model = keras.Model(inputs, outputs)
    sequential = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3), layers.MaxPooling2D(), layers.Flatten(), layers.Dense(3)])
    for built in (model, sequential):
        summary = keras_check.summarise(json.loads(zipfile.ZipFile(io.BytesIO(_saved(built))).read("config.json")))
        assert summary.parameters == built.count_params()
        assert summary.output_shape == tuple(built.output_shape[1:])


def test_a_layer_type_outside_the_allow_list_is_refused(tiny_keras):
    def conv3d(config):
        config["config"]["layers"][1]["class_name"] = "Conv3D"

    with pytest.raises(export.ImportRefused, match="layer type 'Conv3D'"):
        export.import_keras_model(_replace_members(tiny_keras, conv3d), "odd.keras", (16, 16, 1), 6)


@pytest.fixture(scope="module")
def mobilenet_keras() -> tuple[bytes, int]:
    """MobileNetV3-Small (random weights, input 32) on 20×20 grey images, exported as the Predict page does; and its parameters."""
    design = backbones.default_spec("mobilenet_v3_small", weights="random")
    design = dataclasses.replace(design, backbone=dataclasses.replace(design.backbone, input_size=32))
    model = build.build_model(design, (20, 20, 1), 3)
    return export.export_keras(model), model.count_params()


@pytest.mark.parametrize("name", list(backbones.CATALOGUE))
def test_an_exported_backbone_model_imports_and_counts_as_keras_does(name, mobilenet_keras):
    if name == "mobilenet_v3_small":
        data, parameters = mobilenet_keras
    else:
        design = backbones.default_spec(name, weights="random")
        design = dataclasses.replace(design, backbone=dataclasses.replace(design.backbone, input_size=32))
        model = build.build_model(design, (20, 20, 1), 3)
        data, parameters = export.export_keras(model), model.count_params()
    summary = keras_check.summarise(json.loads(zipfile.ZipFile(io.BytesIO(data)).read("config.json")))
    assert (summary.parameters, summary.input_shape, summary.output_shape) == (parameters, (20, 20, 1), (3,))
    imported = export.import_keras_model(data, f"{name}.keras", (20, 20, 1), 3)
    assert imported.count_params() == parameters
    probabilities = imported.predict(np.full((2, 20, 20, 1), 128, "uint8"), verbose=0)
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def _first(config: dict, module: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer.get("module") == module)


def _to_lambda(config: dict) -> None:
    layer = _first(config, keras_check.OPS_MODULE)  # an arithmetic node (x + 3.0) turned into a Lambda layer
    layer.update(module="keras.layers", class_name="Lambda", registered_name=None)
    layer["config"]["function"] = {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}


def _custom_op(config: dict) -> None:
    _first(config, keras_check.OPS_MODULE)["class_name"] = "Einsum"


def _registered_layer(config: dict) -> None:
    _first(config, "keras.layers")["registered_name"] = "my_package>Rescaling"


def _string_constant(config: dict) -> None:
    _first(config, keras_check.OPS_MODULE)["inbound_nodes"][0]["args"][1] = {"class_name": "function", "config": "os.system"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_to_lambda, "Lambda layer"),
        (_custom_op, "operation 'Einsum'"),
        (_registered_layer, "outside Keras's own layers"),
        (_string_constant, "something other than tensors and numbers"),
    ],
)
def test_a_backbone_model_opens_no_door_to_code(mobilenet_keras, change, message):
    crafted = _replace_members(mobilenet_keras[0], change)
    with pytest.raises(export.ImportRefused, match=message):
        export.import_keras_model(crafted, "backbone.keras", (20, 20, 1), 3)


def test_a_padding_layer_that_would_make_a_giant_image_is_refused():
    keras = import_keras()
    inputs = keras.Input((16, 16, 3))
    padded = keras.layers.ZeroPadding2D(1)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(6, activation="softmax")(keras.layers.GlobalAveragePooling2D()(padded)))
    config = json.loads(zipfile.ZipFile(io.BytesIO(_saved(model))).read("config.json"))
    assert keras_check.summarise(config).parameters == model.count_params()
    config["config"]["layers"][1]["config"]["padding"] = [[1000, 1000], [1000, 1000]]  # 2016 × 2016 × 3 values per image
    with pytest.raises(keras_layers.ConfigRefused, match=r"output of shape \(2016, 2016, 3\).*far too large"):
        keras_check.summarise(config)


def test_the_input_shape_is_checked_from_the_config_before_loading(tiny_keras, monkeypatch):
    monkeypatch.setattr(export, "_load", lambda data, name: pytest.fail("the model was built"))
    with pytest.raises(export.ImportRefused, match=r"takes inputs of shape \(16, 16, 1\).*28×28×1"):
        export.import_keras_model(tiny_keras, "mine.keras", (28, 28, 1), 6)
    with pytest.raises(export.ImportRefused, match="has 10 classes"):
        export.import_keras_model(tiny_keras, "mine.keras", (16, 16, 1), 10)


@pytest.mark.parametrize("size", [100, 400_000])
def test_a_weights_file_that_does_not_match_the_parameter_count_is_refused(tiny_keras, size):
    weights = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()  # random: does not compress
    crafted = _replace_members(tiny_keras, members={export.WEIGHTS_FILE: weights})
    with pytest.raises(export.ImportRefused, match=f"weights file \\({size:,} bytes\\) does not match the 1,542 parameters"):
        export.import_keras_model(crafted, "odd.keras", (16, 16, 1), 6)


def test_a_keras_file_gets_the_same_archive_checks_as_a_data_set_zip(tiny_keras):
    source = zipfile.ZipFile(io.BytesIO(tiny_keras))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item.filename))
        target.writestr("../escape.txt", b"x")
    with pytest.raises(export.ImportRefused, match="climbs out"):
        export.import_keras_model(buffer.getvalue(), "escape.keras", (16, 16, 1), 6)
    with pytest.raises(export.ImportRefused, match="holds 70,000 files"):
        export.import_keras_model(_zip64_claiming(tiny_keras, 70_000), "zip64.keras", (16, 16, 1), 6)


# --- zip64 placeholders ---------------------------------------------------------------------------------


def _zip64_claiming(data: bytes, entries: int, directory_bytes: int | None = None) -> bytes:
    """The zip with its end record's counts replaced by 0xFFFF / 0xFFFFFFFF and a zip64 record holding ``entries``."""
    assert data[-22:-18] == b"PK\x05\x06"  # an end record without a comment
    _, _, _, _, _, directory_size, directory_offset, _ = struct.unpack("<4s4H2LH", data[-22:])
    body = data[:-22]
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, directory_bytes or directory_size, directory_offset
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + end


def _placeholders_only(data: bytes) -> bytes:
    return data[:-12] + struct.pack("<2H2LH", 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)


def _drawn_shapes_zip(count: int = 5) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for class_name in ("circle", "square"):
            for index in range(count):
                image = Image.new("L", (16, 16), 255)
                draw = ImageDraw.Draw(image)
                box = (3 + index % 3, 3, 12, 12 - index % 2)
                (draw.ellipse if class_name == "circle" else draw.rectangle)(box, fill=0)
                archive.writestr(f"{class_name}/{index}.png", _optimized_png(image))
    return buffer.getvalue()


def test_zip64_placeholders_are_not_trusted():
    honest = _drawn_shapes_zip()
    with pytest.raises(ImportRefused, match="holds 10,000,000 files"):
        custom_data.import_zip(_zip64_claiming(honest, 10_000_000), "bomb.zip")
    with pytest.raises(ImportRefused, match="lists more files than the limit"):
        custom_data.import_zip(_zip64_claiming(honest, 10, directory_bytes=40 * MB), "bomb.zip")
    with pytest.raises(ImportRefused, match="holds 65,535 files"):
        custom_data.import_zip(_placeholders_only(honest), "bomb.zip")  # no zip64 record: zipfile believes the placeholders


def test_an_honest_zip64_record_is_read():
    honest = _drawn_shapes_zip()
    upgraded = _zip64_claiming(honest, 10)
    safe_zip.check_directory_size(upgraded, "ok.zip", 5000)
    assert len(zipfile.ZipFile(io.BytesIO(upgraded)).infolist()) == 10
    report = custom_data.import_zip(upgraded, "ok.zip", ImportOptions(image_size=16, grayscale=True))
    assert report.counts == {"circle": 5, "square": 5}


# --- decoding cost --------------------------------------------------------------------------------------


def _optimized_png(image) -> bytes:
    return png(image, optimize=True)


def _one_bit_png(width: int, height: int, mark: int = 0) -> bytes:
    """A few kilobytes of 1-bit PNG that decodes to width × height pixels (a mark makes each file different)."""
    image = Image.new("1", (width, height), 0)
    ImageDraw.Draw(image).rectangle((mark * 10, 0, mark * 10 + 5, 5), fill=1)
    return _optimized_png(image)


def test_a_tiny_png_that_decodes_to_40_megapixels_is_skipped_quickly_with_little_memory():
    bomb = _one_bit_png(8000, 5000)
    assert len(bomb) < 20_000
    entries = {f"{c}/{i}.png": _optimized_png(Image.new("L", (12, 12), 40 * i + (c == "b") * 7)) for c in "ab" for i in range(4)}
    entries["a/bomb.png"] = bomb
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in entries.items():
            archive.writestr(path, content)
    started = time.perf_counter()
    growth, report = _peak_rss_growth(lambda: custom_data.import_zip(buffer.getvalue(), "photos.zip", ImportOptions(image_size=16)))
    assert isinstance(report, ImportReport), report
    assert ("a/bomb.png", "too many pixels") in report.skipped
    assert report.counts == {"a": 4, "b": 4}
    assert time.perf_counter() - started < 2
    assert growth < 50, f"{growth:.0f} MB"


def test_a_single_prediction_allows_more_pixels_than_a_data_set_image():
    data = _one_bit_png(5000, 4000)  # 20 megapixels
    assert images.open_image(data, "photo.png", max_megapixels=40).size == (5000, 4000)
    with pytest.raises(images.ImageRejected, match="20 megapixels.*limit is 16"):
        images.open_image(data, "photo.png", max_megapixels=ImportOptions().max_megapixels)


def test_a_zip_of_many_large_images_is_stopped_by_the_pixel_budget():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(40):
            archive.writestr(f"{'ab'[index % 2]}/{index}.png", _one_bit_png(4000, 3000, mark=index))  # 12 megapixels each
    assert len(buffer.getvalue()) < 1 * MB
    started = time.perf_counter()
    with pytest.raises(ImportRefused, match="more than 100 megapixels in all") as refused:
        custom_data.import_zip(buffer.getvalue(), "many.zip", ImportOptions(image_size=16, max_total_megapixels=100))
    assert "Shrink the images" in str(refused.value)
    assert time.perf_counter() - started < 10


def _jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 100, width // 100, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_a_big_jpeg_decodes_small_for_a_data_set():
    photo = _jpeg(6000, 4000)  # 24 megapixels: over the data-set limit at full size
    drafted = images.open_image(photo, "photo.jpg", max_megapixels=16, draft_side=32)
    assert drafted.size == (750, 500)  # decoded at 1/8 scale, still larger than the 32-pixel target
    with pytest.raises(images.ImageRejected, match="24 megapixels"):
        images.open_image(photo, "photo.jpg", max_megapixels=16)


# --- pixel formats --------------------------------------------------------------------------------------


def test_a_16_bit_png_is_scaled_to_8_bits_not_saturated():
    values = np.full((16, 16), 32896, np.uint16)  # 128 × 257: the 16-bit form of grey 128
    values[:, 8:] = 65535
    values[0, 0] = 0
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    image = images.open_image(buffer.getvalue(), "scan.png")
    assert image.mode.startswith("I")
    pixels = images.model_pixels(image, (16, 16, 1))[..., 0]
    assert pixels[0, 0] == 0 and pixels[5, 3] == 128 and pixels[5, 12] == 255
    colour = images.prepare_image(image, (16, 16, 3), light_on_dark=False).model_input
    assert tuple(colour[5, 3]) == (128, 128, 128)


def _transparent(ink: tuple[int, int, int]) -> Image.Image:
    """A square of opaque ``ink`` on a fully transparent canvas whose hidden colour is black, as many apps save it."""
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[4:12, 4:12] = (*ink, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    return images.open_image(buffer.getvalue(), "icon.png")


def test_transparency_is_filled_with_white_for_ordinary_data_sets():
    pixels = images.model_pixels(_transparent((200, 30, 30)), (16, 16, 3))
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[8, 8]) == (200, 30, 30)
    black_ink = images.model_pixels(_transparent((0, 0, 0)), (16, 16, 1))[..., 0]
    assert black_ink[0, 0] == 255 and black_ink[8, 8] == 0


def test_transparency_for_light_on_dark_sets_keeps_the_shape_whatever_the_ink():
    white_ink = images.prepare_image(_transparent((255, 255, 255)), (16, 16, 1), light_on_dark=True)
    assert white_ink.model_input[0, 0, 0] == 0 and white_ink.model_input[8, 8, 0] == 255 and not white_ink.inverted
    black_ink = images.prepare_image(_transparent((0, 0, 0)), (16, 16, 1), light_on_dark=True)  # black on dark: lost
    assert black_ink.model_input[0, 0, 0] == 0 and black_ink.model_input[8, 8, 0] == 255 and black_ink.inverted


def test_a_palette_image_with_a_transparent_colour_is_composited():
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
    ImageDraw.Draw(image).rectangle((4, 4, 11, 11), fill=1)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    pixels = images.model_pixels(images.open_image(buffer.getvalue()), (16, 16, 1))[..., 0]
    assert pixels[0, 0] == 255 and pixels[8, 8] == 10


# --- names in Markdown and Plotly --------------------------------------------------------------------------


def test_plain_shows_markdown_and_html_literally():
    rendered = MarkdownIt("commonmark").render(plain(HOSTILE))
    assert "<strong>" not in rendered and "<b>" not in rendered and "<a " not in rendered
    assert "**bold** &lt;b&gt;x&lt;/b&gt; [link](javascript:alert(1))" in rendered


def test_plain_text_escapes_what_plotly_reads_as_markup():
    assert plain_text(HOSTILE) == "**bold** &lt;b&gt;x&lt;/b&gt; [link](javascript:alert(1))"
    assert plain_text("cats & dogs") == "cats &amp; dogs"


# --- a hostile run name on the Train page ---------------------------------------------------------------


def test_a_hostile_run_name_is_shown_literally_in_the_legend_and_the_toast(tiny_shapes):
    from streamlit.testing.v1 import AppTest

    from dcnn_core.training import job as training
    from ui import resources

    owner = "0badc0de0badc0de0badc0de0badc0de"
    design = spec.ModelSpec.from_dict({**spec.preset("Article baseline").to_dict(), "name": HOSTILE})
    job = training.TrainingJob(design, tiny_shapes, training.TrainConfig(epochs=1, seed=1), owner=owner)
    resources.engine().registry.submit(job)
    assert job.wait(120) and job.status == training.FINISHED, job.snapshot().message
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=90)
    at.session_state["owner_id"] = owner
    at.session_state["dataset_choice"] = {"key": "shapes", "options": {"count_per_class": 30, "image_size": 16, "seed": 1}}
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("train_compare_accuracy")]
    assert charts and charts[0]["data"][0]["name"] == f"1 · {plain_text(HOSTILE)} · {tiny_shapes.title}"
    at.button(key="train_delete_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    toasts = [t.value for t in at.toast]
    assert toasts and all("<strong>bold" not in MarkdownIt("commonmark").render(t) and "<a " not in MarkdownIt().render(t) for t in toasts)
    assert any(HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in MarkdownIt("commonmark").render(t) for t in toasts)


def test_an_uncaught_error_shows_no_path_type_or_traceback_to_the_attendee(tmp_path):
    """``client.showErrorDetails`` is "none": the browser gets one generic sentence, the server log the rest."""
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "broken_page.py"
    script.write_text('open("/srv/organiser/secret-folder/leaderboard.sqlite3")\n')
    at = AppTest.from_file(str(script))
    at.run()
    shown = at.exception[0]
    assert "secret-folder" not in shown.value and "FileNotFoundError" not in shown.value
    assert not shown.stack_trace and not shown.proto.type
    assert "encountered an error" in shown.value
