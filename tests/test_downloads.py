"""Downloads that cannot hang and never leave a half-written file, against real HTTP servers on 127.0.0.1.

One server accepts connections and never answers (a stalled host); another serves files, or cuts one short. The
ImageNet weights and the downloading data sets are fetched through them: a timeout ends a stall, nothing lands at a
final path unless it is whole and has the expected hash, a wrong cached file is deleted and fetched again, and what
users read is one sentence without a path. A run fetches its weights before its first turn at the processor.
"""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dcnn_core import downloads
from dcnn_core.data import datasets, downloaded
from dcnn_core.design import backbones
from dcnn_core.training import job as training
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.scheduler import FairScheduler
from tests.helpers import trust_weights

STALL_S = 0.5  # the tests' stall timeout: a stalled download must end within about this


@pytest.fixture()
def stalled_host():
    """A host that accepts every connection and never sends a byte; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held, closing = [], threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not closing.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    closing.set()
    thread.join(2)
    for connection in held:
        connection.close()
    listener.close()


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        name = self.path.lstrip("/")
        if name.startswith("cut/"):  # says it sends the whole file, sends a tenth of it, hangs up
            body = self.files[name.removeprefix("cut/")]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 10])
            self.wfile.flush()
            self.close_connection = True
            return
        if name not in self.files:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.files[name])))
        self.end_headers()
        self.wfile.write(self.files[name])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def file_host():
    """A host serving ``files`` (name → bytes; set them in the test) and, under ``cut/``, the same files cut short."""
    handler = type("Files", (_Files,), {"files": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler.files
    server.shutdown()
    server.server_close()


@pytest.fixture()
def quick_timeouts(monkeypatch, tmp_path):
    monkeypatch.setattr(downloads, "STALL_TIMEOUT_S", STALL_S)
    monkeypatch.setattr(downloads, "DEADLINE_S", 10.0)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv("DCNN_OFFLINE", raising=False)
    monkeypatch.delenv(backbones.WEIGHTS_DIR_VARIABLE, raising=False)


def _nothing_but(folder, *names) -> bool:
    """True when ``folder`` holds exactly ``names`` (no temporary or half-written file beside them)."""
    present = sorted(path.name for path in folder.iterdir()) if folder.exists() else []
    return present == sorted(names)


# --- the downloader ----------------------------------------------------------------------------


def test_a_stalled_download_ends_with_a_timeout_and_leaves_no_file(stalled_host, tmp_path):
    target = tmp_path / "cache" / "weights.h5"
    began = time.monotonic()
    with pytest.raises(downloads.DownloadFailed, match="stalled"):
        downloads.fetch(downloads.Remote(stalled_host + "weights.h5"), str(target), stall_timeout_s=STALL_S, deadline_s=5)
    assert time.monotonic() - began < STALL_S + 1.5
    assert not target.exists() and _nothing_but(target.parent)
    began = time.monotonic()
    with pytest.raises(downloads.DownloadFailed, match="not tried again yet"):  # remembered: nobody waits for it again
        downloads.fetch(downloads.Remote(stalled_host + "weights.h5"), str(target), stall_timeout_s=STALL_S)
    assert time.monotonic() - began < 0.2


def test_a_download_cut_short_or_with_the_wrong_hash_leaves_no_file_and_a_right_one_lands_whole(file_host, tmp_path):
    url, files = file_host
    body = np.random.default_rng(0).bytes(300_000)
    files["data.bin"] = body
    target = tmp_path / "data.bin"
    with pytest.raises(downloads.DownloadFailed):
        downloads.fetch(downloads.Remote(url + "cut/data.bin"), str(target), stall_timeout_s=STALL_S)
    assert _nothing_but(tmp_path)
    with pytest.raises(downloads.DownloadFailed, match="hash"):
        downloads.fetch(downloads.Remote(url + "data.bin", "0" * 64), str(target), stall_timeout_s=STALL_S)
    assert _nothing_but(tmp_path)
    sha256 = downloads.hash_of(_write(tmp_path / "reference", body), "0" * 64)
    (tmp_path / "reference").unlink()
    assert downloads.fetch(downloads.Remote(url + "data.bin", sha256), str(target)) == str(target)
    assert target.read_bytes() == body and _nothing_but(tmp_path, "data.bin")


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# --- ImageNet weights --------------------------------------------------------------------------


def _point_weights_at(monkeypatch, base_url: str, name: str = "mobilenet_v3_small") -> backbones.BackboneInfo:
    entry = replace(backbones.CATALOGUE[name], weights_url=base_url)
    monkeypatch.setitem(backbones.CATALOGUE, name, entry)
    monkeypatch.setattr(backbones, "_host_answers", lambda url: True)  # the probe of the real host: "online"
    return entry


def test_a_stalled_weights_download_fails_the_run_with_one_sentence_without_ever_taking_a_turn(
    stalled_host, quick_timeouts, monkeypatch, tmp_path, tiny_shapes
):
    entry = _point_weights_at(monkeypatch, stalled_host)
    scheduler = FairScheduler(slots=1, slice_s=60)
    assert scheduler.acquire("someone-else", first=True)  # the only processor place is taken for the whole test
    job = training.TrainingJob(backbones.default_spec(), tiny_shapes, TrainConfig(epochs=1, batch_size=16))
    worker = threading.Thread(target=job.run, args=(scheduler,), daemon=True)
    began = time.monotonic()
    worker.start()
    messages = set()
    while not job.wait(0.01):
        messages.add(job.snapshot().message)
        assert time.monotonic() - began < 10, "the download did not end"
    progress = job.snapshot()
    assert progress.status == training.FAILED and progress.message == backbones.DOWNLOAD_FAILED
    assert "Downloading ImageNet weights…" in messages
    assert time.monotonic() - began < STALL_S + 3  # it never waited for the turn someone else holds
    assert scheduler.computing_count() == 1  # still someone else's: the download needed no turn
    cache = tmp_path / "keras-home" / "models"
    assert not (cache / entry.weights_file).exists() and _nothing_but(cache)
    for detail in (str(tmp_path), entry.weights_file, backbones.WEIGHTS_DIR_VARIABLE, "127.0.0.1"):
        assert detail not in progress.message + progress.details
    scheduler.release("someone-else")


def test_a_damaged_cached_file_is_deleted_and_fetched_again_before_the_first_turn(
    mobilenet_weights, file_host, quick_timeouts, monkeypatch, tmp_path, tiny_shapes
):
    folder, _ = mobilenet_weights
    url, files = file_host
    trust_weights(monkeypatch, folder)
    entry = _point_weights_at(monkeypatch, url)
    files[entry.weights_file] = (folder / entry.weights_file).read_bytes()
    cached = tmp_path / "keras-home" / "models" / entry.weights_file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(files[entry.weights_file][:1000])  # what an interrupted get_file leaves behind
    scheduler = FairScheduler(slots=1, slice_s=60)
    assert scheduler.acquire("someone-else", first=True)
    job = training.TrainingJob(backbones.default_spec(), tiny_shapes, TrainConfig(epochs=1, batch_size=16))
    worker = threading.Thread(target=job.run, args=(scheduler,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not (cached.exists() and cached.stat().st_size == len(files[entry.weights_file])):
        assert time.monotonic() < deadline, "the weights were not fetched while another run held the processor"
        time.sleep(0.01)
    assert job.snapshot().status == training.QUEUED and job.snapshot().message == "Downloading ImageNet weights…"
    assert cached.read_bytes() == files[entry.weights_file] and _nothing_but(cached.parent, entry.weights_file)
    job.request_stop()
    assert job.wait(10) and job.snapshot().message == "Cancelled before it started."
    scheduler.release("someone-else")
    assert backbones.weights_status(entry.name).source == "cache"


def test_a_damaged_cached_file_is_never_used_offline(quick_timeouts, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("DCNN_OFFLINE", "1")
    entry = backbones.CATALOGUE["efficientnet_b0"]
    cached = tmp_path / "keras-home" / "models" / entry.weights_file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"any bytes: not the weights")
    status = backbones.weights_status(entry.name)
    assert (status.available, status.source, status.message) == (False, "missing", backbones.NOT_AVAILABLE)
    assert not cached.exists() and str(cached) in caplog.text  # deleted; the server log says which file and why
    with pytest.raises(backbones.WeightsUnavailable) as refused:
        backbones.fetch_weights(entry.name)
    assert str(refused.value) == backbones.NOT_AVAILABLE


def test_a_wrong_file_in_the_weights_folder_is_refused_with_the_user_sentence(quick_timeouts, monkeypatch, tmp_path, tiny_shapes):
    entry = backbones.CATALOGUE["mobilenet_v3_small"]
    (tmp_path / entry.weights_file).write_bytes(b"\x89HDF\r\n not really")
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setattr(backbones, "_host_answers", lambda url: True)  # even online: the organiser's file wins, and is wrong
    job = training.TrainingJob(backbones.default_spec(), tiny_shapes, TrainConfig(epochs=1, batch_size=16))
    job.run()
    progress = job.snapshot()
    assert progress.status == training.FAILED
    assert progress.message == "The ImageNet weights on this server are damaged; the organiser has been told (server log)."
    assert str(tmp_path) not in progress.message + progress.details and entry.weights_file not in progress.message
    assert (tmp_path / entry.weights_file).exists()  # the organiser's file is refused, not deleted


# --- the data sets that download ---------------------------------------------------------------


def _fashion_files(count: int = 12) -> dict[str, bytes]:
    """Fashion-MNIST's four files in its own format (gzip'd idx), ``count`` training and 4 test images."""
    rng = np.random.default_rng(1)

    def idx(array: np.ndarray, header: int) -> bytes:
        return gzip.compress(bytes(header) + array.astype(np.uint8).tobytes())

    train, test = rng.integers(0, 256, (count, 28, 28)), rng.integers(0, 256, (4, 28, 28))
    names = downloaded.FASHION_FILES
    return {names[0]: idx(np.arange(count) % 10, 8), names[1]: idx(train, 16), names[2]: idx(np.arange(4) % 10, 8), names[3]: idx(test, 16)}


def _serve_fashion(monkeypatch, base_url: str) -> None:
    files = downloaded.SOURCES["fashion_mnist"]
    served = tuple(replace(file, remote=downloads.Remote(base_url + file.name.split("/")[-1])) for file in files)
    monkeypatch.setitem(downloaded.SOURCES, "fashion_mnist", served)


def test_fashion_mnist_downloads_once_and_a_half_written_file_is_replaced(file_host, quick_timeouts, monkeypatch, tmp_path):
    url, files = file_host
    files.update(_fashion_files())
    _serve_fashion(monkeypatch, url)
    data = datasets.load_dataset("fashion_mnist")
    assert data.input_shape == (28, 28, 1) and len(data.x_train) == 12 and data.y_test.tolist() == [0, 1, 2, 3]
    cache = tmp_path / "keras-home" / "datasets" / "fashion-mnist"
    assert _nothing_but(cache, *downloaded.FASHION_FILES)
    files.clear()  # the host is gone: the cached files serve
    assert np.array_equal(datasets.load_dataset("fashion_mnist").x_train, data.x_train)
    images = cache / downloaded.FASHION_FILES[1]
    images.write_bytes(images.read_bytes()[:500])  # half-written, as keras.utils.get_file leaves one when cut short
    with pytest.raises(datasets.DatasetUnavailable, match="^Fashion-MNIST could not be downloaded"):
        datasets.load_dataset("fashion_mnist")
    assert not images.exists()  # never read again: the next load fetches it
    files.update(_fashion_files())
    assert np.array_equal(datasets.load_dataset("fashion_mnist").x_train, data.x_train)


def test_a_stalled_data_set_download_ends_within_the_timeout_and_leaves_no_file(stalled_host, quick_timeouts, monkeypatch, tmp_path):
    _serve_fashion(monkeypatch, stalled_host)
    began = time.monotonic()
    with pytest.raises(datasets.DatasetUnavailable, match="^Fashion-MNIST could not be downloaded — this server seems to be offline"):
        datasets.load_dataset("fashion_mnist")
    assert time.monotonic() - began < STALL_S + 1.5
    cache = tmp_path / "keras-home" / "datasets" / "fashion-mnist"
    assert _nothing_but(cache)


def test_real_sets_brought_in_from_npm_are_read_as_the_app_reads_them(quick_timeouts, tmp_path):
    """bench/real_sets.py writes Keras's cache layout: the app loads the Fashion-MNIST files it wrote, the bench the MNIST file."""
    spec = importlib.util.spec_from_file_location("real_sets", Path(__file__).resolve().parents[1] / "bench" / "real_sets.py")
    real_sets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_sets)
    rng = np.random.default_rng(0)

    def arrays(train: int, test: int):
        return ((rng.integers(0, 256, (train, 28, 28), np.uint8), rng.integers(0, 10, train, np.uint8)),
                (rng.integers(0, 256, (test, 28, 28), np.uint8), rng.integers(0, 10, test, np.uint8)))  # fmt: skip

    mnist, fashion = arrays(7, 3), arrays(12, 4)
    real_sets.write(tmp_path / "keras-home", mnist, fashion)
    for name, expected in (("mnist", mnist), ("fashion_mnist", fashion)):
        read = downloaded.read_folder(name, str(tmp_path / "keras-home" / "datasets"))
        (x_train, y_train), (x_test, y_test) = read
        assert np.array_equal(x_train, expected[0][0]) and np.array_equal(y_train, expected[0][1])
        assert np.array_equal(x_test, expected[1][0]) and np.array_equal(y_test, expected[1][1])
    data = datasets.load_dataset("fashion_mnist")  # nothing to fetch: the files are in the cache, as Keras would have left them
    assert np.array_equal(data.x_train[..., 0], fashion[0][0]) and data.y_test.tolist() == fashion[1][1].tolist()
