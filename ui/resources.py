"""Objects shared by every session of this server process, cached by Streamlit."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

import streamlit as st

from dcnn_core import runtime
from dcnn_core.data import datasets
from dcnn_core.results.analysis import Analyses
from dcnn_core.room.instructor import KeyGuard
from dcnn_core.room.rules import RoomLimits, ServerRules
from dcnn_core.settings import Settings, load_settings
from dcnn_core.training import runs
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engine import RunInfo, TrainingEngine
from dcnn_core.training.progress import Progress
from ui import state

RETRY_FAILED_DOWNLOAD_S = 120
MAX_LIVE_FIGURES = 200


@st.cache_resource
def settings() -> Settings:
    """The server's settings, built once: ``DCNN_*`` environment variables, overridden by the same names in Streamlit secrets."""
    try:
        secrets = {key: str(value) for key, value in st.secrets.items() if key.startswith("DCNN_")}
    except Exception:  # no secrets.toml: the environment alone decides
        secrets = {}
    result = load_settings({**os.environ, **secrets})
    runtime.configure(result.tf_threads, result.training_nice)
    return result


@st.cache_resource
def run_store() -> runs.RunStore:
    return runs.RunStore(runs.default_runs_dir())


@st.cache_resource
def engine() -> TrainingEngine:
    """The one door into training for this server process: its engine runs every training of the room."""
    config = settings()
    rules = ServerRules(RoomLimits.from_settings(config), slots=config.max_concurrent_jobs)
    if config.ray_address:  # a room that outgrew one box: trainings run in a Ray cluster (Ray imported only here)
        from dcnn_core.training.engines.ray_engine import RayEngine

        return RayEngine(run_store(), rules, _resolve_reference, address=config.ray_address, idle_stop_s=config.idle_stop_s)
    from dcnn_core.training.engines.local import LocalEngine

    return LocalEngine(run_store(), rules, _resolve_reference, idle_stop_s=config.idle_stop_s)


@st.cache_resource
def key_guard(key: str) -> KeyGuard:
    """The server-wide check of instructor-key guesses (one per key, so its wait grows for every browser)."""
    return KeyGuard(key)


def _resolve_reference(reference: dict) -> datasets.Dataset:
    """A built-in set by its reference, from the process-wide cache (raises DatasetUnavailable)."""
    return load_dataset(datasets.DatasetChoice.from_dict(reference))


@st.cache_resource(max_entries=6, show_spinner=False)
def _load_dataset(key: str, options_json: str) -> datasets.Dataset:
    return datasets.load_dataset(key, **json.loads(options_json))


@st.cache_resource
def _failed_loads() -> dict:
    """key → (time, message) of recent failed downloads, so a rerun does not retry at once."""
    return {"lock": threading.Lock(), "failures": {}}


def load_dataset(choice: datasets.DatasetChoice) -> datasets.Dataset:
    """The chosen data set, shared read-only by every session; raises DatasetUnavailable."""
    options_json = json.dumps(choice.options, sort_keys=True)
    failure = _recent_failure(choice)
    if failure is not None:
        raise datasets.DatasetUnavailable(failure)
    try:
        return _load_dataset(choice.key, options_json)
    except datasets.DatasetUnavailable as error:
        memo = _failed_loads()
        with memo["lock"]:
            memo["failures"][(choice.key, options_json)] = (time.time(), str(error))
        raise


def _recent_failure(choice: datasets.DatasetChoice) -> str | None:
    """Why the last load of ``choice`` failed, when that was less than RETRY_FAILED_DOWNLOAD_S ago."""
    memo = _failed_loads()
    with memo["lock"]:
        failure = memo["failures"].get((choice.key, json.dumps(choice.options, sort_keys=True)))
    return failure[1] if failure and time.time() - failure[0] < RETRY_FAILED_DOWNLOAD_S else None


def fallback_dataset() -> datasets.DatasetChoice:
    """The offline stand-in: Shapes, as many per class as the server's ``DCNN_STANDIN_IMAGES_PER_CLASS`` says."""
    return datasets.DatasetChoice("shapes", {**state.FALLBACK_DATASET.options, "count_per_class": settings().standin_images_per_class})


@dataclass(frozen=True)
class Resolved:
    """What a data-set lookup found: the set, the choice it answers (titled), and a notice when it stands in for another."""

    dataset: datasets.Dataset
    choice: datasets.DatasetChoice
    notice: str | None = None


def resolve_dataset(choice: datasets.DatasetChoice) -> Resolved:
    """Look ``choice`` up: the user's own images in this session, else the shared loaded set; Shapes stands in when it cannot be had."""
    if choice.is_custom:
        custom = st.session_state[state.CUSTOM_DATASETS].get(choice.options.get("name"))
        if custom is not None:
            return Resolved(custom, choice.titled(custom.title))
        notice = "Your image set is no longer here (removed). Showing Shapes for now."
    else:
        try:
            dataset = load_dataset(choice)
            return Resolved(dataset, choice.titled(dataset.title))
        except datasets.DatasetUnavailable as error:
            notice = f"{error} Showing Shapes for now."
    fallback = fallback_dataset()
    dataset = load_dataset(fallback)
    return Resolved(dataset, fallback.titled(dataset.title), notice)


def current_dataset() -> datasets.Dataset:
    """The session's data set. When it cannot be had, the page switches the session to the stand-in, with the notice."""
    resolved = resolve_dataset(state.dataset_choice())
    if resolved.notice:
        state.use_dataset(resolved.choice, resolved.notice)
    return resolved.dataset


def owner() -> str:
    return st.session_state[state.OWNER]


def session_runs() -> list[RunInfo]:
    """This user's runs (also those from before a reload or a restart), oldest first.

    Looking at them counts as the user being present: active trainings are not stopped as idle.
    """
    door = engine()
    door.visit(owner())
    found = door.runs(owner())
    st.session_state[state.JOB_IDS] = [run.run_id for run in found]
    return found


def restore_drafts() -> None:
    """A reload or a new tab of a returning user: the data set, design and settings of their selected run, not defaults.

    Only a session's own default drafts are replaced, once; a user's own images do not survive a reload (their set is
    named in the sidebar until imported again).
    """
    keys = st.session_state.pop(state.DRAFTS_TO_RESTORE, None)
    if not keys:
        return
    run = selected_run()
    if run is None:
        return
    if state.DATASET_CHOICE in keys and run.dataset_ref.get("key") in datasets.REGISTRY:
        state.use_dataset(datasets.DatasetChoice.from_dict(run.dataset_ref))
    if state.MODEL_SPEC in keys:
        st.session_state[state.MODEL_SPEC] = type(run.spec).from_dict(run.spec.to_dict())  # the session's own copy to edit
    if state.TRAIN_CONFIG in keys:
        st.session_state[state.TRAIN_CONFIG] = run.config


def selected_run() -> RunInfo | None:
    """The run shown on the Train and Predict pages — only ever one of this user's.

    With none chosen (a new tab opened with only the user token), it is the user's latest run.
    """
    run_id = st.session_state[state.SELECTED_JOB]
    run = engine().run(run_id) if run_id else None
    if run is not None and run.owner == owner():
        return run
    found = session_runs()
    return found[-1] if found else None


def has_active_run() -> bool:
    """Whether this user already has a training running or waiting (one at a time per user)."""
    return any(run.active for run in engine().runs(owner()))


def progress(run_id: str) -> Progress | None:
    """Everything the pages draw of one run (plain data)."""
    return engine().progress(run_id)


def room_line(epochs: int) -> str:
    """One line for the attendee when the room's limits apply to a run started now (empty for a lone user)."""
    return engine().plan(epochs).line


def start_run(spec, dataset: datasets.Dataset, config) -> str:
    """Submit a run of ``spec`` on ``dataset`` for this user; raises ``Refused`` with a message."""
    door = engine()
    reference = door.share_dataset(dataset, state.dataset_choice().titled(dataset.title).to_dict())
    run_id = door.submit(RunDescription(spec, config, reference, owner=owner()))
    state.select_job(run_id)
    return run_id


def continue_run(run_id: str, extra_epochs: int) -> None:
    """Train an ended run of this user more; raises ``Refused`` (or ValueError) with a message."""
    run = engine().run(run_id)
    if run is None or run.owner != owner():
        raise ValueError("This run is no longer here.")
    engine().continue_run(run_id, extra_epochs)


def stop_run(run_id: str, reason: str = "") -> None:
    engine().stop(run_id, reason)


def delete_run(run_id: str) -> bool:
    """Forget an ended run of this user and remove its folder; False when it is still training."""
    run = engine().run(run_id)
    if run is None or run.owner != owner() or not engine().delete(run_id):
        return False
    analyses().forget(run_id)
    if st.session_state[state.SELECTED_JOB] == run_id:
        state.select_job(None)
    return True


def trained(run_id: str):
    """The run's trained model and data in this process (``TrainedModel``), once it has ended; None otherwise."""
    return engine().trained(run_id)


@st.cache_resource
def analyses() -> Analyses:
    """Test evaluations, projections and exports of trained models, shared by every tab, keyed by run and version."""
    return Analyses(capacity=64)


@st.cache_resource
def _figures() -> dict:
    """(run id, kind) → (version, built at, figure): live figures shared by every viewer of a run."""
    return {"lock": threading.Lock(), "figures": {}}


def live_figure(job_id: str, kind: str, version: int, build):
    """The figure ``build()`` makes for this run's ``version``, built at most once a refresh period whoever looks."""
    cache, now = _figures(), time.monotonic()
    with cache["lock"]:
        hit = cache["figures"].get((job_id, kind))
    if hit is not None and (hit[0] == version or now - hit[1] < live_refresh_s()):
        return hit[2]
    figure = build()
    with cache["lock"]:
        figures = cache["figures"]
        figures[(job_id, kind)] = (version, now, figure)
        while len(figures) > MAX_LIVE_FIGURES:
            figures.pop(next(iter(figures)))
    return figure


def live_refresh_s() -> float:
    """How often live pages redraw: every second when few train, less often as the room fills (the server stays responsive)."""
    active = engine().room().running
    return 1.0 if active <= 4 else 2.0 if active <= 15 else 3.0


def dataset_title(choice: datasets.DatasetChoice) -> str:
    """The title of what a page would train on now: a set that cannot be had here names its stand-in (Shapes)."""
    if choice.is_custom:
        return f"Your images: {choice.options.get('name', '')}"
    option = datasets.REGISTRY.get(choice.key)
    if option is None:
        return choice.key
    if option.needs_download and _known_unavailable(choice):
        return datasets.REGISTRY[fallback_dataset().key].title
    return option.title


def _known_unavailable(choice: datasets.DatasetChoice) -> bool:
    """Offline on purpose, or its download failed a moment ago (no new attempt is made to find out)."""
    from dcnn_core import downloads

    return downloads.offline() or _recent_failure(choice) is not None
