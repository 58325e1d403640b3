import numpy as np
import pytest

from dcnn_core.data import datasets, shapes


def test_digits_load_offline_with_real_shapes(digits):
    assert digits.x_train.shape[1:] == (8, 8, 1)
    assert digits.x_train.dtype == np.uint8
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert digits.num_classes == 10
    # A stratified split: every digit is in the test images.
    assert set(np.unique(digits.y_test)) == set(range(10))
    assert digits.x_train.max() == 255


def test_shapes_are_deterministic_from_the_seed():
    first, labels = shapes.generate_shapes(5, 20, seed=7)
    again, _ = shapes.generate_shapes(5, 20, seed=7)
    other, _ = shapes.generate_shapes(5, 20, seed=8)
    assert first.shape == (5 * len(shapes.SHAPE_NAMES), 20, 20, 1)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.bincount(labels).tolist() == [5] * len(shapes.SHAPE_NAMES)


def test_shapes_colour_variant_has_three_channels_and_varies_position():
    images, labels = shapes.generate_shapes(40, 32, colour=True, seed=0)
    assert images.shape[1:] == (32, 32, 3)
    circles = images[labels == 0].astype(float).mean(axis=-1)
    # Jittered position: the brightest pixel of each circle is not always in the same place.
    peaks = {np.unravel_index(np.argmax(image), image.shape) for image in circles}
    assert len(peaks) > 10


def test_shapes_dataset_split_and_card():
    dataset = datasets.load_shapes(count_per_class=60, image_size=28)
    assert len(dataset.x_train) == 300 and len(dataset.x_test) == 60
    card = dataset.card()
    assert card["Image shape"] == "28 × 28 × 1 (grayscale)"
    assert "circle" in card["Classes"]


def test_arrays_are_read_only_so_users_cannot_corrupt_shared_data(tiny_shapes):
    with pytest.raises(ValueError):
        tiny_shapes.x_train[0, 0, 0, 0] = 1


def test_download_failure_is_a_clear_dataset_unavailable(monkeypatch, tmp_path):
    import dataclasses
    import socket

    from dcnn_core import downloads
    from dcnn_core.data import downloaded

    with socket.create_server(("127.0.0.1", 0)) as closed:  # a port nobody listens on once the block ends
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    files = tuple(dataclasses.replace(f, remote=downloads.Remote(url + f.name)) for f in downloaded.SOURCES["fashion_mnist"])
    monkeypatch.setitem(downloaded.SOURCES, "fashion_mnist", files)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("DCNN_OFFLINE", raising=False)
    with pytest.raises(datasets.DatasetUnavailable, match="Fashion-MNIST could not be downloaded"):
        datasets.load_dataset("fashion_mnist")


def test_unknown_dataset_key_is_refused():
    with pytest.raises(ValueError, match="Unknown data set"):
        datasets.load_dataset("imagenet")


def test_mean_images_and_samples(tiny_shapes):
    means = datasets.mean_images(tiny_shapes)
    assert means.shape == (6, 16, 16, 1)
    picked = datasets.sample_indices(tiny_shapes.y_train, 8, class_filter=2)
    assert len(picked) == 8 and set(tiny_shapes.y_train[picked]) == {2}


def test_cluttered_shapes_are_a_separate_harder_set_from_the_same_seed():
    plain, labels = shapes.generate_shapes(30, 28, seed=4)
    cluttered, cluttered_labels = shapes.generate_shapes(30, 28, seed=4, clutter=True)
    again, _ = shapes.generate_shapes(30, 28, seed=4, clutter=True)
    assert np.array_equal(cluttered, again) and np.array_equal(labels, cluttered_labels)
    # Distractor strokes light up background pixels the plain set leaves dark (noise aside).
    assert (cluttered > 60).mean() > 1.3 * (plain > 60).mean()
    data = datasets.load_shapes(count_per_class=20, image_size=28, clutter=True)
    assert data.key == "shapes-grayscale-cluttered" and data.title == "Shapes (grayscale, cluttered, generated)"
    assert datasets.load_shapes(count_per_class=20, image_size=28).key == "shapes-grayscale"
