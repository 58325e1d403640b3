"""Process-wide settings read from the environment, with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int_from_env(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return max(minimum, value)


@dataclass(frozen=True)
class Settings:
    """Limits that protect a server shared by a whole workshop room."""

    max_concurrent_jobs: int = 2  # trainings running at once; more wait in a queue
    tf_threads: int = 1  # intra-op threads per TF op; leaves a core for the web server
    max_parameters: int = 5_000_000  # designs above this are refused before training
    max_upload_megapixels: int = 40  # larger decoded images are refused
    max_train_images: int = 70_000  # a data set is never bigger than this in memory
    idle_stop_s: int = 1800  # a training nobody has looked at for this long is stopped (its model kept)
    custom_data_budget_mb: int = 200  # a user's own image set (uint8 arrays) never takes more memory than this
    allow_server_folders: bool = False  # offer "import a folder on this server": only for a local, single-user app
    instructor_key: str = field(default="", repr=False)  # DCNN_INSTRUCTOR_KEY: unlocks the room view; empty = none


def load_settings() -> Settings:
    """Read settings from ``DCNN_*`` environment variables."""
    cores = os.cpu_count() or 2
    return Settings(
        max_concurrent_jobs=_int_from_env("DCNN_MAX_CONCURRENT_JOBS", 2),
        tf_threads=_int_from_env("DCNN_TF_THREADS", max(1, cores - 1)),
        max_parameters=_int_from_env("DCNN_MAX_PARAMETERS", 5_000_000),
        max_upload_megapixels=_int_from_env("DCNN_MAX_UPLOAD_MEGAPIXELS", 40),
        idle_stop_s=_int_from_env("DCNN_IDLE_STOP_S", 1800, minimum=60),
        custom_data_budget_mb=_int_from_env("DCNN_CUSTOM_DATA_BUDGET_MB", 200),
        allow_server_folders=os.environ.get("DCNN_ALLOW_SERVER_FOLDERS", "").strip() == "1",
        instructor_key=os.environ.get("DCNN_INSTRUCTOR_KEY", "").strip(),
    )
