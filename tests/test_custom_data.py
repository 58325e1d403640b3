"""A user's own images: hostile archives are refused or skipped with a reason, good ones become a Dataset."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from dcnn_core.data import custom_data, images, shapes
from dcnn_core.data.custom_options import ImportOptions, ImportRefused
from dcnn_core.design import spec
from dcnn_core.results import plots
from dcnn_core.training import job as training
from tests.helpers import png, shapes_zip, zip_of
from tests.test_images_and_evaluation import _huge_png

MB = 1024 * 1024
SMALL = ImportOptions(image_size=16)


def _noise_png(seed: int, side: int = 12, colour: bool = True) -> bytes:
    shape = (side, side, 3) if colour else (side, side)
    return png(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _classes(*names: str, count: int = 5, prefix: str = "") -> dict[str, bytes]:
    """``count`` distinct noise PNGs in a folder per class name."""
    return {f"{prefix}{name}/{i}.png": _noise_png(seed=100 * k + i) for k, name in enumerate(names) for i in range(count)}


def _with_member(entries: dict[str, bytes], info: zipfile.ZipInfo, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        archive.writestr(info, data)
    return buffer.getvalue()


def _refused(data: bytes, match: str, options: ImportOptions = SMALL, name: str = "photos.zip") -> str:
    with pytest.raises(ImportRefused, match=match) as caught:
        custom_data.import_zip(data, name, options)
    return str(caught.value)


# --- the archive as a whole ----------------------------------------------------------------------


def test_zip_slip_entry_is_refused_naming_it():
    message = _refused(zip_of({**_classes("cats", "dogs"), "../evil.png": _noise_png(1)}), "climbs out")
    assert "'../evil.png' in 'photos.zip'" in message


def test_absolute_path_is_refused():
    data = zip_of({**_classes("cats", "dogs"), "/etc/x.png": _noise_png(1)})
    assert "/etc/x.png" in zipfile.ZipFile(io.BytesIO(data)).namelist()  # the hostile name really is in the zip
    assert "'/etc/x.png'" in _refused(data, "absolute path")


@pytest.mark.parametrize("path", ["..\\evil.png", "cats\\..\\..\\evil.png", "C:/Windows/evil.png"])
def test_backslash_and_drive_letter_tricks_are_refused(path):
    _refused(zip_of({**_classes("cats", "dogs"), path: _noise_png(1)}), "backslash|absolute path")


def test_symlink_member_is_refused():
    link = zipfile.ZipInfo("cats/passwords.png")
    link.external_attr = 0o120777 << 16  # a Unix symbolic link
    data = _with_member(_classes("cats", "dogs"), link, b"/etc/passwd")
    assert "'cats/passwords.png' in 'photos.zip' is a symbolic link" in _refused(data, "symbolic link")


def test_encrypted_member_is_refused():
    data = bytearray(zip_of({**_classes("cats", "dogs"), "cats/secret.png": _noise_png(3)}))
    entry = data.rfind(b"cats/secret.png") - 46  # its central-directory entry: 46 bytes, then the name
    assert data[entry : entry + 4] == b"PK\x01\x02"
    data[entry + 8] |= 0x1  # the "encrypted" flag; zipfile cannot write real encryption
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("cats/secret.png").flag_bits & 0x1
    _refused(bytes(data), "'cats/secret.png' in 'photos.zip' is encrypted")


def test_zip_bomb_member_is_refused_before_decompressing():
    data = zip_of({**_classes("cats", "dogs"), "cats/bomb.png": bytes(50 * MB)})
    assert len(data) < 1 * MB  # 50 MB of zeros squeezed very small
    message = _refused(data, "zip bomb")
    assert "'cats/bomb.png'" in message and "50 MB" in message


def test_many_highly_compressed_small_members_are_refused_as_a_whole():
    zeros = {f"cats/pad{i}.png": bytes(900 * 1024) for i in range(120)}  # each under the per-member floor
    message = _refused(zip_of({**_classes("cats", "dogs"), **zeros}), "zip bombs")
    assert "unpacks to" in message


def test_thousands_of_tiny_members_are_refused():
    entries = {f"cats/{i}.txt": b"x" for i in range(5001)}
    message = _refused(zip_of(entries, zipfile.ZIP_STORED), "limit is 5,000", ImportOptions())
    assert "5,001 files" in message


def test_unpacked_size_over_the_limit_is_refused():
    noise = np.random.default_rng(0).integers(0, 256, 2 * MB, dtype=np.uint8).tobytes()  # does not compress
    options = ImportOptions(image_size=16, max_total_uncompressed=1 * MB)
    assert "unpacks to 2 MB; the limit is 1 MB" in _refused(zip_of({**_classes("cats", "dogs"), "cats/big.png": noise}), "limit", options)


def test_archive_over_the_size_limit_is_refused():
    options = ImportOptions(image_size=16, max_archive_bytes=1000)
    _refused(zip_of(_classes("cats", "dogs")), r"'photos.zip' is 0\.\d MB; the limit is 0 MB", options)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "'photos.zip' is empty"),
        (zip_of({}), "'photos.zip' is empty"),
        (zip_of({"cats/": b"", "dogs/": b""}), "'photos.zip' is empty"),
        (b"PK\x03\x04 definitely not a zip", "not a zip file"),
    ],
    ids=["no-bytes", "no-members", "only-folders", "junk"],
)
def test_empty_or_broken_zip_is_refused(data, match):
    _refused(data, match)


def test_one_class_only_is_refused():
    _refused(zip_of(_classes("cats")), r"Only one class \('cats'\).*at least two classes")


def test_a_class_with_one_image_is_refused_naming_it():
    entries = {**_classes("cats"), "dogs/only.png": _noise_png(77)}
    message = _refused(zip_of(entries), "The class 'dogs' has 1 usable image;")
    assert "at least 4" in message


def test_a_class_left_short_by_skipped_files_says_which_files():
    entries = {**_classes("cats"), "dogs/a.png": _noise_png(70), "dogs/b.txt": b"notes", "dogs/c.png": b"\x89PNG broken"}
    with pytest.raises(ImportRefused, match="The class 'dogs' has 1 usable image") as caught:
        custom_data.import_zip(zip_of(entries), "photos.zip", SMALL)
    assert ("dogs/b.txt", "not an image") in caught.value.skipped


# --- files inside a good archive -------------------------------------------------------------------


def test_bad_files_are_skipped_with_the_reason_a_user_needs():
    good = _classes("cats", "dogs")
    png = good["cats/0.png"]
    entries = {
        **good,
        "cats/notes.txt": b"these are my cats",
        "cats/cut.png": _noise_png(5)[:60],
        "dogs/huge.png": _huge_png(20_000, 20_000),
        "dogs/again.png": png,
        "dogs/tiny.png": _noise_png(6, side=5),
        "readme.md": b"# photos",
        "__MACOSX/cats/._0.png": b"resource fork",
        "cats/.DS_Store": b"\x00\x00",
    }
    report = custom_data.import_zip(zip_of(entries), "photos.zip", SMALL)
    assert dict(report.skipped) == {
        "cats/notes.txt": "not an image",
        "cats/cut.png": "unreadable or truncated",
        "dogs/huge.png": "too many pixels",
        "dogs/again.png": "duplicate of cats/0.png",
        "dogs/tiny.png": "too small (5×5)",
        "readme.md": "not inside a class folder",
    }
    assert report.counts == {"cats": 5, "dogs": 5}
    assert any("Ignored 2 hidden or system files" in note for note in report.notes)


def test_a_header_that_understates_a_member_never_yields_more_bytes():
    data = bytearray(zip_of(_classes("cats", "dogs"), zipfile.ZIP_STORED))
    entry = data.find(b"PK\x01\x02")  # the first central-directory entry: cats/0.png
    (real_size,) = struct.unpack_from("<I", data, entry + 24)
    struct.pack_into("<II", data, entry + 20, 100, 100)  # claims 100 bytes, compressed and not
    report = custom_data.import_zip(bytes(data), "photos.zip", SMALL)
    assert real_size > 100
    assert ("cats/0.png", "damaged inside the zip") in report.skipped
    assert report.counts == {"cats": 4, "dogs": 5}


def test_members_are_read_in_memory_never_extracted(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("extracted to disk")

    monkeypatch.setattr(zipfile.ZipFile, "extract", refuse)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", refuse)
    monkeypatch.chdir(tmp_path)
    report = custom_data.import_zip(zip_of(_classes("cats", "dogs")), "photos.zip", SMALL)
    assert report.counts == {"cats": 5, "dogs": 5}
    assert list(tmp_path.iterdir()) == []


def test_html_in_class_folder_names_stays_plain_text():
    names = ("<script>alert(1)<", "<img src=x onerror=alert(2)>")
    report = custom_data.import_zip(zip_of(_classes(*names)), "photos.zip", SMALL)
    assert set(report.dataset.class_names) == set(names)
    figure = plots.class_counts_bar(np.array([5, 5]), report.dataset.class_names)
    assert set(figure.data[0].x) == {"&lt;script&gt;alert(1)&lt;", "&lt;img src=x onerror=alert(2)&gt;"}  # Plotly shows these as typed


def test_a_zip_name_with_markup_becomes_a_plain_set_name():
    report = custom_data.import_zip(zip_of(_classes("cats", "dogs")), "[click](javascript:x)<b>.zip", SMALL)
    assert report.dataset.title == "click (javascript x) b"
    assert "javascript" not in report.dataset.source


# --- a good archive becomes a Dataset ----------------------------------------------------------------


def test_a_zip_of_generated_shapes_round_trips_pixel_for_pixel():
    data, pictures, labels = shapes_zip(10, 20, colour=True)
    report = custom_data.import_zip(data, "shapes.zip", ImportOptions(image_size=20))
    dataset = report.dataset
    assert dataset.class_names == tuple(sorted(shapes.SHAPE_NAMES))  # folder names, sorted as Keras does
    assert report.counts == dict.fromkeys(sorted(shapes.SHAPE_NAMES), 10) and report.skipped == []
    assert dataset.x_train.shape == (48, 20, 20, 3) and dataset.x_test.shape == (12, 20, 20, 3)
    assert np.bincount(dataset.y_test).tolist() == [2] * 6  # a stratified 20 % of each class
    originals = {(shapes.SHAPE_NAMES[label], picture.tobytes()) for picture, label in zip(pictures, labels, strict=True)}
    imported = {(dataset.class_names[label], picture.tobytes()) for picture, label in zip(dataset.x_train, dataset.y_train, strict=True)}
    assert imported <= originals  # every training image is an original, under its own class
    assert not dataset.x_train.flags.writeable and dataset.light_on_dark is False


def test_one_wrapper_folder_around_the_classes_is_looked_through():
    entries = {**_classes("cats", "dogs", prefix="pets/"), "pets/README.txt": b"my pets"}
    report = custom_data.import_zip(zip_of(entries), "pets.zip", SMALL)
    assert report.dataset.class_names == ("cats", "dogs")
    assert report.skipped == [("pets/README.txt", "not inside a class folder")]


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "MPO", "BMP", "GIF", "WEBP"])
def test_common_image_formats_are_read_including_phone_camera_jpegs(image_format):
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format)
    report = custom_data.import_zip(
        zip_of({**_classes("cats", "dogs"), f"cats/photo.{image_format.lower()}": buffer.getvalue()}), "a.zip", SMALL
    )
    assert report.counts["cats"] == 6 and report.skipped == []


def test_a_tiff_is_skipped_as_not_an_image_this_app_reads():
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(buffer, format="TIFF")
    report = custom_data.import_zip(zip_of({**_classes("cats", "dogs"), "cats/scan.tif": buffer.getvalue()}), "a.zip", SMALL)
    assert report.skipped == [("cats/scan.tif", "not an image")]


def test_grayscale_and_resize_options_shape_the_arrays():
    data, _, _ = shapes_zip(5, 40, colour=True, prefix="")
    dataset = custom_data.import_zip(data, "shapes.zip", ImportOptions(image_size=16, grayscale=True, test_fraction=0.4)).dataset
    assert dataset.input_shape == (16, 16, 1)
    assert (len(dataset.x_train), len(dataset.x_test)) == (18, 12)


@pytest.mark.parametrize("grayscale", [False, True], ids=["colour", "grayscale"])
def test_an_imported_photo_is_prepared_exactly_as_the_predict_page_prepares_one(grayscale):
    wide = np.full((20, 60, 3), 200, np.uint8)
    wide[5:15, 25:35] = (255, 0, 0)
    entries = {**_classes("cats", "dogs"), "cats/wide.png": png(wide)}
    report = custom_data.import_zip(zip_of(entries), "photos.zip", ImportOptions(image_size=30, grayscale=grayscale))
    imported = np.concatenate([report.dataset.x_train, report.dataset.x_test])
    shape = (30, 30, 1 if grayscale else 3)
    expected = images.prepare_image(images.open_image(png(wide)), shape, light_on_dark=False).model_input
    assert expected[15, 15, 0] > 60 and expected[15, 0, 0] > 60  # the red square, and grey (not black) beside it…
    assert (expected[0, 0, 0] == 0) != grayscale  # …padded with black in colour, with the paper's grey in grayscale
    assert sum(np.array_equal(image, expected) for image in imported) == 1


def test_a_cnn_trains_one_epoch_on_an_imported_zip():
    data, _, _ = shapes_zip(8, 24, colour=False)
    dataset = custom_data.import_zip(data, "shapes.zip", ImportOptions(image_size=16, grayscale=True)).dataset
    job = training.TrainingJob(spec.preset("Simple CNN"), dataset, training.TrainConfig(epochs=1, batch_size=8))
    job.run()
    assert job.status == training.FINISHED, job.snapshot().message
    assert len(job.snapshot().history["loss"]) == 1


# --- the memory budget ---------------------------------------------------------------------------


def test_over_the_memory_budget_classes_are_downsampled_evenly():
    options = ImportOptions(image_size=8, grayscale=True, memory_budget_bytes=64 * 15)  # room for 15 images
    entries = {name: data for name, data in _classes("a", "b", "c", count=10).items() if name[0] != "b" or name < "b/4"}
    report = custom_data.import_zip(zip_of(entries), "photos.zip", options)
    assert report.counts == {"a": 6, "b": 4, "c": 5}  # one of each in turn; "b" runs out at 4
    data = report.dataset
    assert data.x_train.nbytes + data.x_test.nbytes <= options.memory_budget_bytes
    note = " ".join(report.notes)
    assert "memory budget" in note and "9 images were left out" in note and "(a: 4, c: 5)" in note


def test_a_budget_too_small_for_the_minimum_is_refused():
    options = ImportOptions(image_size=8, grayscale=True, memory_budget_bytes=64 * 7)
    _refused(zip_of(_classes("a", "b")), "do not fit in the memory budget", options)


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DCNN_CUSTOM_DATA_BUDGET_MB", "3")
    assert ImportOptions().memory_budget_bytes == 3 * MB


@pytest.mark.parametrize(
    "changes, message",
    [({"image_size": 4}, "image size"), ({"test_fraction": 0.9}, "test fraction"), ({"min_images_per_class": 1}, "at least 2")],
)
def test_options_out_of_range_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        custom_data.import_zip(zip_of(_classes("a", "b")), "photos.zip", ImportOptions(**changes))


# --- classes built from uploads and webcam pictures ---------------------------------------------------


def _uploads(seed: int, count: int = 4) -> list[tuple[str, bytes]]:
    return [(f"photo{i}.png", _noise_png(seed * 10 + i, side=20)) for i in range(count)]


def test_build_from_uploads_keeps_the_users_order_and_plain_names():
    webcam = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(webcam, format="JPEG")
    classes = {"  <b>bold</b> ": _uploads(1), "Thumbs up": [*_uploads(2), ("camera.jpg", webcam.getvalue())]}
    report = custom_data.build_from_uploads(classes, ImportOptions(image_size=24), name="Gestures")
    assert report.dataset.class_names == ("<b>bold</b>", "Thumbs up")
    assert report.counts == {"<b>bold</b>": 4, "Thumbs up": 5}
    assert report.dataset.title == "Gestures" and report.dataset.input_shape == (24, 24, 3)


@pytest.mark.parametrize(
    "classes, message",
    [
        ({"cats": _uploads(1), " ": _uploads(2)}, "A class has no name"),
        ({"cats": _uploads(1), " cats": _uploads(2)}, "Two classes are both called 'cats'"),
        ({"cats": _uploads(1), "x" * 41: _uploads(2)}, "41 characters; the limit is 40"),
        ({"cats": _uploads(1)}, r"Only one class \('cats'\)"),
        ({"cats": _uploads(1), "dogs": []}, "The class 'dogs' has 0 usable images"),
        ({"cats": _uploads(1), "dogs": [("notes.txt", b"hello")] * 5}, "The class 'dogs' has 0 usable images"),
    ],
    ids=["empty-name", "duplicate-name", "long-name", "one-class", "empty-class", "no-images"],
)
def test_build_from_uploads_refuses_with_a_message(classes, message):
    with pytest.raises(ImportRefused, match=message):
        custom_data.build_from_uploads(classes, SMALL)


def test_build_from_uploads_counts_files_against_the_limit():
    options = ImportOptions(image_size=16, max_members=7)
    with pytest.raises(ImportRefused, match="There are 8 files in your uploads; the limit is 7"):
        custom_data.build_from_uploads({"cats": _uploads(1), "dogs": _uploads(2)}, options)


# --- a folder on the server ---------------------------------------------------------------------------


def _folder(root, *names: str, count: int = 5) -> None:
    for path, data in _classes(*names, count=count).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def test_import_folder_reads_class_subfolders(tmp_path):
    _folder(tmp_path / "pets", "cats", "dogs")
    (tmp_path / "pets" / "dogs" / "list.csv").write_text("a,b")
    report = custom_data.import_folder(tmp_path / "pets", SMALL)
    assert report.counts == {"cats": 5, "dogs": 5} and report.dataset.title == "pets"
    assert report.skipped == [("dogs/list.csv", "not an image")]


def test_import_folder_refuses_a_link_that_leads_outside(tmp_path):
    _folder(tmp_path / "pets", "cats", "dogs")
    (tmp_path / "secret.png").write_bytes(_noise_png(9))
    os.symlink(tmp_path / "secret.png", tmp_path / "pets" / "cats" / "innocent.png")
    with pytest.raises(ImportRefused, match="'cats/innocent.png' is a link to somewhere outside"):
        custom_data.import_folder(tmp_path / "pets", SMALL)


def test_import_folder_skips_links_to_folders_and_special_files(tmp_path):
    _folder(tmp_path / "pets", "cats", "dogs")
    os.symlink(tmp_path / "pets" / "cats", tmp_path / "pets" / "dogs" / "more")
    os.mkfifo(tmp_path / "pets" / "dogs" / "pipe.png")  # reading it would block for ever
    report = custom_data.import_folder(tmp_path / "pets", SMALL)
    assert dict(report.skipped) == {"dogs/more": "link to a folder (not followed)", "dogs/pipe.png": "not a regular file"}


def test_import_folder_refuses_a_path_that_is_not_a_folder(tmp_path):
    with pytest.raises(ImportRefused, match="is not a folder on this server"):
        custom_data.import_folder(tmp_path / "missing", SMALL)
