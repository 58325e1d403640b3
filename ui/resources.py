"""Objects shared by every session of this server process, cached by Streamlit."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass

import streamlit as st

from dcnn_core import datasets, runs, runtime
from dcnn_core.analysis import Analyses
from dcnn_core.jobs import JobRegistry, Refused, RoomLimits
from dcnn_core.settings import Settings, load_settings
from dcnn_core.training import RunDescription, RunLimits, TrainingJob
from ui import state

RETRY_FAILED_DOWNLOAD_S = 120
ROOM_WINDOW_S = 600  # people seen in the last ten minutes make a room
MAX_LIVE_FIGURES = 200


@st.cache_resource
def settings() -> Settings:
    """The server's settings, built once: ``DCNN_*`` environment variables, overridden by the same names in Streamlit secrets."""
    try:
        secrets = {key: str(value) for key, value in st.secrets.items() if key.startswith("DCNN_")}
    except Exception:  # no secrets.toml: the environment alone decides
        secrets = {}
    result = load_settings({**os.environ, **secrets})
    runtime.configure(result.tf_threads)
    return result


@st.cache_resource
def run_store() -> runs.RunStore:
    return runs.RunStore(runs.default_runs_dir())


@st.cache_resource
def job_registry() -> JobRegistry:
    """One registry per process: its scheduler shares the processor between the whole room's trainings."""
    config = settings()
    limits = RoomLimits(max_queue=config.max_queue, max_runs_per_owner=config.max_runs_per_user,
                        images_per_epoch=config.room_images_per_epoch, max_epochs=config.room_max_epochs,
                        max_train_minutes=config.room_max_train_minutes)  # fmt: skip
    registry = JobRegistry(config.max_concurrent_jobs, idle_stop_s=config.idle_stop_s, limits=limits)
    registry.on_evict = _back_to_disk
    return registry


def _back_to_disk(job: TrainingJob) -> bool:
    """Let an idle ended run leave memory if it is saved: its owner gets it back from disk.

    A run on the user's own images comes back with the images saved beside it, or, when they were too
    large to keep, as a summary (listed and deletable).
    """
    folder = run_store().root / job.job_id
    try:
        record = run_store().load(folder)
    except Exception:
        return False
    saved = _saved_runs()
    with saved["lock"]:
        saved["by_owner"].setdefault(record.owner, []).append(record)
    return True


@st.cache_resource
def _saved_runs() -> dict:
    """Runs found on disk at start-up, by owner; restored into the registry when their owner visits."""
    by_owner: dict[str, list[runs.RunRecord]] = {}
    for record in run_store().load_all():
        by_owner.setdefault(record.owner, []).append(record)
    return {"lock": threading.Lock(), "by_owner": by_owner}


def _restore_saved_runs(owner: str) -> None:
    saved = _saved_runs()
    with saved["lock"]:
        records = saved["by_owner"].pop(owner, [])
    registry = job_registry()
    for record in records:
        if registry.get(record.run_id) is not None:
            continue
        dataset = _dataset_for(record)
        if dataset is None and not record.own_images:  # its data cannot be loaded now (offline?): try again on a later visit
            with saved["lock"]:
                saved["by_owner"].setdefault(owner, []).append(record)
            continue
        try:
            job = runs.restore_job(record, dataset) if dataset is not None else runs.restore_summary(record)
            job.on_end = run_store().save
        except Exception:  # a damaged model or image file: still listed, so it can be deleted
            try:
                job = runs.restore_summary(record, "Its saved model or images could not be read, so it is shown as a summary only.")
            except Exception:  # not even a summary can be made of it
                continue
        registry.add_ended(job)


def _dataset_for(record: runs.RunRecord) -> datasets.Dataset | None:
    """The data set a saved run was trained on, if it can still be loaded (a user's own images: from the run folder)."""
    reference = record.dataset_ref
    if record.own_images:
        try:
            return run_store().load_images(record) if record.has_saved_images else None
        except Exception:  # damaged or too large: the run comes back as a summary
            return None
    try:
        return load_dataset(datasets.DatasetChoice.from_dict(reference))
    except Exception:  # unavailable offline, or options this version no longer takes
        return None


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
    memo = _failed_loads()
    cache_key = (choice.key, options_json)
    with memo["lock"]:
        failure = memo["failures"].get(cache_key)
    if failure and time.time() - failure[0] < RETRY_FAILED_DOWNLOAD_S:
        raise datasets.DatasetUnavailable(failure[1])
    try:
        return _load_dataset(choice.key, options_json)
    except datasets.DatasetUnavailable as error:
        with memo["lock"]:
            memo["failures"][cache_key] = (time.time(), str(error))
        raise


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


def session_jobs() -> list[TrainingJob]:
    """This user's runs (also those from before a reload or a restart), oldest first.

    Looking at them counts as the user being present: active jobs are not stopped as idle.
    """
    owner = st.session_state[state.OWNER]
    _restore_saved_runs(owner)
    job_registry().note_visitor(owner)
    jobs = job_registry().jobs(owner=owner)
    for job in jobs:
        job.touch()
    st.session_state[state.JOB_IDS] = [job.job_id for job in jobs]
    return jobs


def selected_job() -> TrainingJob | None:
    """The run shown on the Train and Predict pages — only ever one of this user's.

    With none chosen (a new tab opened with only the user token), it is the user's latest run.
    """
    job_id = st.session_state[state.SELECTED_JOB]
    job = job_registry().get(job_id) if job_id else None
    if job is not None and job.owner == st.session_state[state.OWNER]:
        return job
    jobs = session_jobs()
    return jobs[-1] if jobs else None


def has_active_job() -> bool:
    """Whether this user already has a training running or waiting (one at a time per user)."""
    return job_registry().has_active(st.session_state[state.OWNER])


def room_is_shared() -> bool:
    """Whether other people have used this server in the last few minutes: then the room's limits apply to new runs."""
    return len(job_registry().recent_owners(ROOM_WINDOW_S)) > 1


def run_limits(config) -> tuple[RunLimits, int, str]:
    """(limits, epochs, one line for the attendee) for a run started now; no limits for a lone user."""
    if not room_is_shared():
        return RunLimits(), config.epochs, ""
    room = job_registry().limits  # the server's, or the instructor's for this session
    limits = RunLimits(images_per_epoch=room.images_per_epoch or None, max_compute_s=room.max_train_minutes * 60.0 or None)
    epochs = min(config.epochs, room.max_epochs) if room.max_epochs else config.epochs
    parts = [limits.describe()] if limits.describe() else []
    if room.max_epochs:
        parts.append(f"at most {room.max_epochs} epochs")
    line = f"This server is shared with the room: each run trains {'; '.join(parts)}." if parts else ""
    return limits, epochs, line


def start_job(spec, dataset: datasets.Dataset, config) -> TrainingJob:
    """Create, save-on-end and submit a training job for this user; raises ``jobs.Refused`` with a message."""
    owner = st.session_state[state.OWNER]
    most = settings().max_disk_mb_per_user
    if most and (used := run_store().bytes_used(job.job_id for job in job_registry().jobs(owner=owner))) > most * 2**20:
        raise Refused(f"Your saved runs take {used / 2**20:.0f} MB on this server, the most it keeps per person ({most} MB): "
                           "delete a run in Your runs to start another.")  # fmt: skip
    limits, epochs, _line = run_limits(config)
    if epochs != config.epochs:
        config = dataclasses.replace(config, epochs=epochs)
    run = RunDescription(spec, config, state.dataset_choice().titled(dataset.title).to_dict(), owner=owner,
                         max_parameters=settings().max_parameters, limits=limits)  # fmt: skip
    job = TrainingJob(run, dataset)
    job.on_end = run_store().save
    job_registry().start_for_owner(job)
    state.select_job(job.job_id)
    return job


def delete_run(job: TrainingJob) -> bool:
    """Forget an ended run and remove its folder; False when it is still training."""
    if not job_registry().remove(job.job_id):
        return False
    run_store().delete(job.job_id)
    analyses().forget(job.job_id)
    if st.session_state[state.SELECTED_JOB] == job.job_id:
        state.select_job(None)
    return True


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
    active = job_registry().running_count()
    return 1.0 if active <= 4 else 2.0 if active <= 15 else 3.0


def dataset_title(choice: datasets.DatasetChoice) -> str:
    if choice.is_custom:
        return f"Your images: {choice.options.get('name', '')}"
    option = datasets.REGISTRY.get(choice.key)
    return option.title if option else choice.key
