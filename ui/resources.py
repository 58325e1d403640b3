"""Objects shared by every session of this server process, cached by Streamlit."""

from __future__ import annotations

import json
import threading
import time

import streamlit as st

from dcnn_core import datasets
from dcnn_core.settings import Settings, load_settings
from dcnn_core.training import JobRegistry, TrainingJob
from ui import state

RETRY_FAILED_DOWNLOAD_S = 120
CUSTOM_KEY = "custom"  # DATASET_CHOICE key for a user's own images: {"key": "custom", "options": {"name": ...}}


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def job_registry() -> JobRegistry:
    """One registry per process: its semaphore caps trainings for the whole room."""
    return JobRegistry(settings().max_concurrent_jobs)


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
    """This session's jobs that the registry still holds, oldest first."""
    registry = job_registry()
    jobs = [registry.get(job_id) for job_id in st.session_state[state.JOB_IDS]]
    return [job for job in jobs if job is not None]


def selected_job() -> TrainingJob | None:
    job_id = st.session_state[state.SELECTED_JOB]
    return job_registry().get(job_id) if job_id else None


def dataset_title(choice: dict) -> str:
    if choice["key"] == CUSTOM_KEY:
        return f"Your images: {choice['options'].get('name', '')}"
    option = datasets.REGISTRY.get(choice["key"])
    return option.title if option else choice["key"]
