"""Input pipelines: batches gathered from shared arrays, every image once per epoch, seeded, lean in threads."""

import numpy as np
import pytest

from dcnn_core.training import pipeline
from dcnn_core.training.config import TrainConfig


@pytest.fixture(scope="module")
def arrays():
    x = np.arange(50 * 4 * 4, dtype=np.uint8).reshape(50, 4, 4, 1) % 251
    x[:, 0, 0, 0] = np.arange(50)  # each image carries its own index in its first pixel
    y = (np.arange(50) % 5).astype(np.uint8)
    x.setflags(write=False)
    return x, y


def _epoch(data) -> list[int]:
    return [int(v) for images, _labels in data for v in images.numpy()[:, 0, 0, 0]]


def test_an_epoch_gathers_each_chosen_image_once_with_its_label(arrays):
    x, y = arrays
    indices = np.array([3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37])
    data = pipeline.training_dataset(x, y, indices, TrainConfig(batch_size=4, seed=1))
    seen = _epoch(data)
    assert sorted(seen) == indices.tolist()
    labels = [int(v) for _images, labels in data for v in labels.numpy()]
    assert len(labels) == len(indices)


def test_same_seed_same_order_and_a_fresh_order_each_epoch(arrays):
    x, y = arrays
    indices = np.arange(40)
    first = pipeline.training_dataset(x, y, indices, TrainConfig(batch_size=8, seed=3))
    again = pipeline.training_dataset(x, y, indices, TrainConfig(batch_size=8, seed=3))
    epoch_one = _epoch(first)
    assert epoch_one == _epoch(again)
    assert _epoch(first) != epoch_one  # reshuffled for the next epoch


def test_images_per_epoch_takes_a_fresh_subset_of_that_size(arrays):
    x, y = arrays
    data = pipeline.training_dataset(x, y, np.arange(50), TrainConfig(batch_size=8, seed=0), images_per_epoch=12)
    one, two = _epoch(data), _epoch(data)
    assert len(one) == len(two) == 12 and len(set(one)) == 12
    assert set(one) != set(two)


def test_evaluation_batches_come_in_order(arrays):
    x, y = arrays
    assert _epoch(pipeline.evaluation_dataset(x, y, 8, np.array([9, 2, 4]))) == [9, 2, 4]
    assert _epoch(pipeline.evaluation_dataset(x, y, 16)) == list(range(50))


def test_pipelines_start_no_autotuning_or_parallel_map_threads(arrays):
    """A room keeps dozens of paused pipelines; autotuning threads in them left the turn holder idle (BENCHMARKS §9)."""
    x, y = arrays
    for data in (
        pipeline.training_dataset(x, y, np.arange(50), TrainConfig(batch_size=8)),
        pipeline.evaluation_dataset(x, y, 8, np.arange(10)),
        pipeline.evaluation_dataset(x, y, 8),
    ):
        options = data.options()
        assert options.autotune.enabled is False
        assert options.experimental_optimization.map_parallelization is False
