import struct
import zlib

import numpy as np
import pytest

from dcnn_core.data import images
from dcnn_core.results import evaluation
from tests.helpers import png


def _huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width×height, with a tiny compressed body (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_dark_ink_on_white_paper_is_inverted_for_a_light_on_dark_set():
    paper = np.full((100, 80), 240, np.uint8)
    paper[30:70, 35:45] = 10  # a dark stroke
    image = images.open_image(png(paper), "drawing.png")
    prepared = images.prepare_image(image, (28, 28, 1), light_on_dark=True)
    assert prepared.inverted
    assert prepared.model_input.shape == (28, 28, 1) and prepared.model_input.dtype == np.uint8
    assert prepared.model_input[14, 14, 0] > 200 and prepared.model_input[0, 0, 0] < 50
    assert [caption for caption, _ in prepared.steps] == ["Grayscale", "Resized to 28×28", "Inverted (the data set is light-on-dark)"]


def test_colour_photo_for_a_colour_set_keeps_three_channels():
    photo = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    prepared = images.prepare_image(images.open_image(png(photo)), (32, 32, 3), light_on_dark=False)
    assert prepared.model_input.shape == (32, 32, 3) and not prepared.inverted


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "is empty"),
        (b"this is a text file, not a picture", "is not an image"),
        (png(np.zeros((50, 50), np.uint8))[:60], "damaged or truncated"),
        (_huge_png(8_000, 8_000), "64 megapixels"),
        (_huge_png(20_000, 20_000), "too many pixels"),
    ],
    ids=["empty", "text", "truncated", "over-limit", "bomb"],
)
def test_bad_uploads_are_refused_with_a_message(data, message):
    with pytest.raises(images.ImageRejected, match=message):
        images.open_image(data, "upload.png")


def test_evaluation_uses_scikit_learn_report_and_confusion(trained_job, tiny_shapes):
    result = evaluation.evaluate(trained_job.model, tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names)
    assert result.confusion.shape == (6, 6)
    assert result.confusion.sum() == len(tiny_shapes.y_test)
    assert result.accuracy == pytest.approx(np.trace(result.confusion) / len(tiny_shapes.y_test))
    assert set(tiny_shapes.class_names) <= set(result.report)
    assert 0 < result.loss < 10
    top = evaluation.top_k(result.probabilities[0], tiny_shapes.class_names, k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


def test_evaluation_loss_matches_keras(trained_job, tiny_shapes):
    keras_loss, keras_accuracy = trained_job.model.evaluate(tiny_shapes.x_test, tiny_shapes.y_test, verbose=0)
    result = evaluation.evaluate(trained_job.model, tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names)
    assert result.loss == pytest.approx(keras_loss, rel=1e-3, abs=1e-4)
    assert result.accuracy == pytest.approx(keras_accuracy, abs=1e-6)
