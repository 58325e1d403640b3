"""Objects shared by every session of this server process, cached by Streamlit."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time

import streamlit as st

from dcnn_core import datasets, runs
from dcnn_core.settings import Settings, load_settings
from dcnn_core.training import ACTIVE_STATES, JobRegistry, TrainingJob
from ui import state

RETRY_FAILED_DOWNLOAD_S = 120
CUSTOM_KEY = "custom"  # DATASET_CHOICE key for a user's own images: {"key": "custom", "options": {"name": ...}}


@st.cache_resource
def settings() -> Settings:
    """Settings from ``DCNN_*`` environment variables, or the same names in Streamlit secrets."""
    try:
        secrets = {key: str(value) for key, value in st.secrets.items() if key.startswith("DCNN_")}
    except Exception:  # no secrets.toml: the environment alone decides
        secrets = {}
    for key, value in secrets.items():
        os.environ.setdefault(key, value)
    return load_settings()


@st.cache_resource
def run_store() -> runs.RunStore:
    return runs.RunStore(runs.default_runs_dir())


@st.cache_resource
def job_registry() -> JobRegistry:
    """One registry per process: its semaphore caps trainings for the whole room."""
    config = settings()
    registry = JobRegistry(config.max_concurrent_jobs, idle_stop_s=config.idle_stop_s)
    registry.on_evict = _back_to_disk
    return registry


def _back_to_disk(job: TrainingJob) -> bool:
    """Let an idle ended run leave memory if it is saved: its owner gets it back from disk."""
    if job.dataset_ref.get("key") not in datasets.REGISTRY:
        return False  # its data (the user's own images) lives only in their session: keep the run in memory
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
        dataset = _dataset_for(record.dataset_ref)
        if dataset is None:  # its data cannot be loaded now (offline?): try again on a later visit
            with saved["lock"]:
                saved["by_owner"].setdefault(owner, []).append(record)
            continue
        try:
            job = runs.restore_job(record, dataset)
        except Exception:  # a damaged model file: skip this run, keep the others
            continue
        job.on_end = run_store().save
        registry.add_ended(job)


def _dataset_for(reference: dict) -> datasets.Dataset | None:
    """The data set a saved run was trained on, if it can still be loaded."""
    if reference.get("key") not in datasets.REGISTRY:
        return None
    try:
        return load_dataset({"key": reference["key"], "options": reference.get("options", {})})
    except Exception:  # unavailable offline, or options this version no longer takes
        return None


@st.cache_resource(max_entries=6, show_spinner=False)
def _load_dataset(key: str, options_json: str) -> datasets.Dataset:
    return datasets.load_dataset(key, **json.loads(options_json))


@st.cache_resource
def _failed_loads() -> dict:
    """key → (time, message) of recent failed downloads, so a rerun does not retry at once."""
    return {"lock": threading.Lock(), "failures": {}}


def load_dataset(choice: dict) -> datasets.Dataset:
    """The chosen data set, shared read-only by every session; raises DatasetUnavailable."""
    options_json = json.dumps(choice.get("options", {}), sort_keys=True)
    memo = _failed_loads()
    cache_key = (choice["key"], options_json)
    with memo["lock"]:
        failure = memo["failures"].get(cache_key)
    if failure and time.time() - failure[0] < RETRY_FAILED_DOWNLOAD_S:
        raise datasets.DatasetUnavailable(failure[1])
    try:
        return _load_dataset(choice["key"], options_json)
    except datasets.DatasetUnavailable as error:
        with memo["lock"]:
            memo["failures"][cache_key] = (time.time(), str(error))
        raise


def current_dataset() -> datasets.Dataset:
    """The session's data set; if it cannot be fetched, switch to Shapes and leave a notice."""
    choice = state.dataset_choice()
    if choice["key"] == CUSTOM_KEY:
        custom = st.session_state[state.CUSTOM_DATASETS].get(choice["options"].get("name"))
        if custom is not None:
            return custom
        st.session_state[state.DATASET_NOTICE] = "Your image set is no longer here (removed). Showing Shapes for now."
        st.session_state[state.DATASET_CHOICE] = dict(state.FALLBACK_DATASET)
        return load_dataset(state.FALLBACK_DATASET)
    try:
        return load_dataset(choice)
    except datasets.DatasetUnavailable as error:
        st.session_state[state.DATASET_NOTICE] = f"{error} Showing Shapes for now."
        st.session_state[state.DATASET_CHOICE] = dict(state.FALLBACK_DATASET)
        return load_dataset(state.FALLBACK_DATASET)


def session_jobs() -> list[TrainingJob]:
    """This user's runs (also those from before a reload or a restart), oldest first.

    Looking at them counts as the user being present: active jobs are not stopped as idle.
    """
    owner = st.session_state[state.OWNER]
    _restore_saved_runs(owner)
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
    """Whether this user already has a training running or queued (one at a time per user)."""
    return any(job.status in ACTIVE_STATES for job in session_jobs())


def start_job(spec, dataset: datasets.Dataset, config) -> TrainingJob:
    """Create, save-on-end and submit a training job for this user."""
    job = TrainingJob(spec, dataset, config, owner=st.session_state[state.OWNER], max_parameters=settings().max_parameters)
    job.dataset_ref = {**state.dataset_choice(), "title": dataset.title}
    job.on_end = run_store().save
    job_registry().submit(job)
    state.select_job(job.job_id)
    return job


def delete_run(job: TrainingJob) -> bool:
    """Forget an ended run and remove its folder; False when it is still training."""
    if not job_registry().remove(job.job_id):
        return False
    run_store().delete(job.job_id)
    st.session_state[state.EVALUATIONS].pop(job.job_id, None)
    if st.session_state[state.SELECTED_JOB] == job.job_id:
        state.select_job(None)
    return True


def keep_keras_session() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit 1.67 (``script_runner._clean_problem_modules``) clears Keras's session after each run
    and fragment run once Keras is imported. That resets Keras's global state for every thread — a
    training worker building a model included — and empties TensorFlow's kernel cache: a prediction
    right after a rerun took 21 ms instead of 8, and training ran ~13 % slower while a Train page was
    open (bench/predict_latency.py, bench/training_overhead.py --page server). Its other clean-up,
    closing matplotlib figures, is kept. If Streamlit renames the function, this does nothing.
    """
    from streamlit.runtime.scriptrunner import script_runner

    current = getattr(script_runner, "_clean_problem_modules", None)
    if current is None or getattr(current, "keeps_keras_session", False):
        return

    def clean_problem_modules_but_keras() -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")

    clean_problem_modules_but_keras.keeps_keras_session = True
    script_runner._clean_problem_modules = clean_problem_modules_but_keras


_modules_when_frozen = 0  # len(sys.modules) at the last gc.freeze()


def freeze_imported_objects() -> None:
    """Keep imported modules' objects out of the full garbage collection that follows every script run.

    After each run (and each fragment run) Streamlit calls ``gc.collect(2)``. TensorFlow and Keras
    bring some 430,000 objects, so that collection took about 0.3 s of CPU holding the GIL (twice that
    while Streamlit also cleared Keras's session, which collects again): on every page switch, and every
    second while the Train page's live fragment runs — stalling training threads too. After a run that
    imported new modules, ``gc.freeze()`` moves the objects alive then to a generation collections skip
    (a collection then takes ~2 ms). Frozen objects are never collected, so this is skipped while a run
    holds or builds a model: modules live as long as the process anyway, but a model frozen and later
    dropped would leak.
    """
    global _modules_when_frozen
    loaded = len(sys.modules)
    if loaded <= _modules_when_frozen:
        return
    if any(job.model is not None or not job.ended for job in job_registry().jobs()):
        return
    gc.freeze()
    _modules_when_frozen = loaded


def dataset_title(choice: dict) -> str:
    if choice["key"] == CUSTOM_KEY:
        return f"Your images: {choice['options'].get('name', '')}"
    option = datasets.REGISTRY.get(choice["key"])
    return option.title if option else choice["key"]
