"""Process-wide settings read from the environment, with safe defaults."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field


def _int_from(source: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = str(source.get(name, "")).strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return max(minimum, value)


def _limit_from(source: Mapping[str, str], name: str, default: int | None) -> int | None:
    """A limit: a positive number, or None (no limit) when set to 0."""
    value = _int_from(source, name, -1, minimum=0)
    return default if value < 0 else value or None


def _amount_from(source: Mapping[str, str], name: str, default: float | None) -> float | None:
    """A limit that may have decimals ("2.5"): a positive number, None (no limit) when 0 or less, the default when unreadable."""
    try:
        value = float(str(source.get(name, "")).strip())
    except ValueError:
        return default
    return default if not math.isfinite(value) else value if value > 0 else None


@dataclass(frozen=True)
class Settings:
    """Limits that protect a server shared by a whole workshop room (None: no limit; set as 0)."""

    max_concurrent_jobs: int = 1  # trainings computing at the same moment; the others take turns (fair share)
    tf_threads: int = 1  # TensorFlow's thread pool, shared by the trainings computing at once: by default every usable core
    training_nice: int = 10  # TensorFlow's compute threads run this much below the web server (Linux nice); 0 = the same
    max_parameters: int | None = 5_000_000  # designs above this are refused before training
    # One training step's cost, refused above these before a run starts or continues (BENCHMARKS.md, "Admission by cost"):
    max_gmac_per_batch: float | None = 10.0  # forward multiply-adds per batch, in billions (a step does about 3×: ~1 s here)
    max_activation_mb_per_batch: int | None = 200  # activations a batch keeps for the backward pass (peak memory ≈ 2–3×)
    max_upload_megapixels: int = 40  # larger decoded images are refused
    room_images_per_epoch: int | None = 3000  # shared server: each epoch trains on a fresh random subset of at most this many images
    room_max_epochs: int | None = 20  # shared server: epochs per run (more are cut, with a note)
    room_max_train_minutes: int | None = 5  # shared server: training time per run; then it stops, its model kept
    max_queue: int | None = 60  # trainings active (computing or waiting) in the whole server; more are refused with a message
    max_runs_per_user: int | None = 20  # runs one user keeps; delete one to start another
    max_disk_mb_per_user: int | None = 500  # saved runs (models, own images) one user keeps on disk; then Start asks to delete one
    max_image_sets_per_user: int | None = 3  # own image sets one session keeps in memory (each within custom_data_budget_mb)
    max_imported_models_per_user: int | None = 3  # .keras models one session imports on the Predict page
    max_disk_mb_total: int | None = 5000  # saved runs of everyone together; then Start asks to delete a run
    max_own_images_mb_total: int | None = 800  # own image sets held in memory by everyone together (sessions and runs)
    standin_images_per_class: int = 600  # the offline stand-in Shapes set (when a download fails): images per class
    idle_stop_s: int = 1800  # a training nobody has looked at for this long is stopped (its model kept)
    custom_data_budget_mb: int = 200  # a user's own image set (uint8 arrays) never takes more memory than this
    allow_server_folders: bool = False  # offer "import a folder on this server": only for a local, single-user app
    log_page_times: bool = False  # DCNN_LOG_PAGE_TIMES=1: the server log gets each page run's seconds (bench/room.py reads them)
    ray_address: str = ""  # DCNN_RAY_ADDRESS: train on a Ray cluster ("local", "auto" or host:port); empty = in this process
    instructor_key: str = field(default="", repr=False)  # DCNN_INSTRUCTOR_KEY: unlocks the room view; empty = none


def load_settings(source: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``DCNN_*`` names in ``source`` (the environment when None; the app merges Streamlit secrets in)."""
    env = os.environ if source is None else source
    cores = os.cpu_count() or 2
    return Settings(
        max_concurrent_jobs=_int_from(env, "DCNN_MAX_CONCURRENT_JOBS", 1 if cores <= 2 else cores - 1),
        tf_threads=_int_from(env, "DCNN_TF_THREADS", len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores),
        training_nice=min(19, _int_from(env, "DCNN_TRAINING_NICE", 10, minimum=0)),
        max_parameters=_limit_from(env, "DCNN_MAX_PARAMETERS", 5_000_000),
        max_gmac_per_batch=_amount_from(env, "DCNN_MAX_GMAC_PER_BATCH", 10.0),
        max_activation_mb_per_batch=_limit_from(env, "DCNN_MAX_ACTIVATION_MB_PER_BATCH", 200),
        max_upload_megapixels=_int_from(env, "DCNN_MAX_UPLOAD_MEGAPIXELS", 40),
        idle_stop_s=_int_from(env, "DCNN_IDLE_STOP_S", 1800, minimum=60),
        custom_data_budget_mb=_int_from(env, "DCNN_CUSTOM_DATA_BUDGET_MB", 200),
        allow_server_folders=str(env.get("DCNN_ALLOW_SERVER_FOLDERS", "")).strip() == "1",
        room_images_per_epoch=_limit_from(env, "DCNN_ROOM_IMAGES_PER_EPOCH", 3000),
        room_max_epochs=_limit_from(env, "DCNN_ROOM_MAX_EPOCHS", 20),
        room_max_train_minutes=_limit_from(env, "DCNN_ROOM_MAX_TRAIN_MINUTES", 5),
        max_queue=_limit_from(env, "DCNN_MAX_QUEUE", 60),
        max_runs_per_user=_limit_from(env, "DCNN_MAX_RUNS_PER_USER", 20),
        max_disk_mb_per_user=_limit_from(env, "DCNN_MAX_DISK_MB_PER_USER", 500),
        max_image_sets_per_user=_limit_from(env, "DCNN_MAX_IMAGE_SETS_PER_USER", 3),
        max_imported_models_per_user=_limit_from(env, "DCNN_MAX_IMPORTED_MODELS_PER_USER", 3),
        max_disk_mb_total=_limit_from(env, "DCNN_MAX_DISK_MB_TOTAL", 5000),
        max_own_images_mb_total=_limit_from(env, "DCNN_MAX_OWN_IMAGES_MB_TOTAL", 800),
        standin_images_per_class=min(20_000, _int_from(env, "DCNN_STANDIN_IMAGES_PER_CLASS", 600, minimum=10)),
        log_page_times=str(env.get("DCNN_LOG_PAGE_TIMES", "")).strip() == "1",
        ray_address=str(env.get("DCNN_RAY_ADDRESS", "")).strip(),
        instructor_key=_instructor_key(env),
    )


def _instructor_key(env: Mapping[str, str]) -> str:
    """DCNN_INSTRUCTOR_KEY, or "" (the room view off) when it is too short to resist guessing; the log says why."""
    from dcnn_core.room.instructor import key_problem

    key = str(env.get("DCNN_INSTRUCTOR_KEY", "")).strip()
    problem = key_problem(key)
    if problem:
        logging.getLogger(__name__).warning(problem)
        return ""
    return key
