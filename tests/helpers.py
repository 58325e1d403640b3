"""Helpers shared by the test files: driving AppTest pages, reading what they drew, making images and zips."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest


def goto(at: AppTest, page: str) -> AppTest:
    """Switch an AppTest to ``pages/<page>.py`` and run it; fails on any exception shown."""
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_figures(at: AppTest) -> list[dict]:
    """The Plotly figures the page drew, as dicts."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def png(picture: np.ndarray | Image.Image, image_format: str = "PNG", **options) -> bytes:
    """An image file's bytes (PNG unless told), from pixels or a PIL image."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive holding ``entries`` (member name → bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def shapes_zip(count_per_class: int, size: int, colour: bool, *, seed: int = 4, prefix: str = "shapes/",
               class_names: tuple[str, ...] | None = None, extra: dict[str, bytes] | None = None):  # fmt: skip
    """A zip of one folder per shape (``prefix``/<class>/<n>.png), as a user would make from their pictures.

    Returns (zip bytes, the pictures, their labels).
    """
    from dcnn_core.data import shapes

    names = class_names or shapes.SHAPE_NAMES
    pictures, labels = shapes.generate_shapes(count_per_class, size, colour, seed=seed, class_names=names)
    entries = {
        f"{prefix}{names[label]}/{index:03d}.png": png(picture.squeeze())
        for index, (picture, label) in enumerate(zip(pictures, labels, strict=True))
    }
    return zip_of({**entries, **(extra or {})}), pictures, labels


# --- runs, through the one door ------------------------------------------------------------------------


def app_engine():
    """The app's training engine (the one every AppTest session of this process shares)."""
    from ui import resources

    return resources.engine()


def session_runs(at: AppTest):
    """The runs the AppTest session's pages listed, as the engine describes them now."""
    engine = app_engine()
    return [engine.run(run_id) for run_id in at.session_state["job_ids"]]


def wait_for_run(run_id: str, timeout: float = 60) -> bool:
    """Block until a run of the app's engine has ended."""
    return app_engine().wait(run_id, timeout)


def train_in_app(design, config, reference: dict, owner: str, timeout: float = 120):
    """Train a run through the app's engine, as a page would, and wait for it to end; returns its ``RunInfo``."""
    from dcnn_core.training.description import RunDescription

    engine = app_engine()
    run_id = engine.submit(RunDescription(design, config, dict(reference), owner=owner))
    assert engine.wait(run_id, timeout), "the training did not end"
    return engine.run(run_id)


def tighten_app_rules(monkeypatch, **limits) -> None:
    """For one test: the app's server rules with some limits changed (``RoomLimits`` fields), as a server set up so would have."""
    from dataclasses import replace

    from dcnn_core.room.rules import ServerRules

    engine = app_engine()
    rules = ServerRules(replace(engine.rules.server_limits, **limits), slots=engine.rules.max_slots)
    monkeypatch.setattr(engine, "rules", rules)


def start_ray_head(port: int, temp_dir: str, cpus: int = 1):
    """A Ray head node of the test's own (``--block``: SIGTERM ends it and only it; ``ray stop`` would end every
    cluster of this user on the machine). Returns the process once its port answers."""
    import shutil
    import subprocess
    import sys
    import time

    import pytest

    from dcnn_core.training.engines.ray_setup import probe

    ray_cli = shutil.which("ray")
    command = [ray_cli] if ray_cli else [sys.executable, "-m", "ray.scripts.scripts"]
    # A fresh machine has no token yet, and a head node in token mode will not start without one (idempotent).
    subprocess.run([*command, "get-auth-token", "--generate"], capture_output=True, timeout=120, check=True)
    process = subprocess.Popen([*command, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}",
                                "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            probe(f"127.0.0.1:{port}", timeout=1.0)
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail("the Ray test cluster did not start")


def trust_weights(monkeypatch, folder) -> None:
    """Make the backbone catalogue expect the md5 of the weight files in ``folder``: offline stand-ins for keras's files.

    The app checks every weights file against the md5 keras.applications publishes; a test's randomly initialised
    file has another one, so the test says which one to expect (for the rest of the test only).
    """
    from dataclasses import replace
    from pathlib import Path

    from dcnn_core import downloads
    from dcnn_core.design import backbones

    for name, entry in list(backbones.CATALOGUE.items()):
        path = Path(folder) / entry.weights_file
        if path.is_file():
            monkeypatch.setitem(backbones.CATALOGUE, name, replace(entry, weights_md5=downloads.hash_of(str(path), entry.weights_md5)))
