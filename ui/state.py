"""Session-state keys, each created once here, and typed accessors."""

from __future__ import annotations

import re
import uuid

import streamlit as st

from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.design import spec as model_spec
from dcnn_core.training import runs
from dcnn_core.training.job import TrainConfig
from ui import sign_in

OWNER = "owner_id"  # a random id per browser session: whose jobs are whose
DATASET_CHOICE = "dataset_choice"  # {"key": registry key, "options": loader options}
DATASET_NOTICE = "dataset_notice"  # one-sentence message after a failed load, or None
MODEL_SPEC = "model_spec"  # the ModelSpec the Model page edits
TRAIN_CONFIG = "train_config"  # the TrainConfig the Train page edits
JOB_IDS = "job_ids"  # this session's training jobs, oldest first
SELECTED_JOB = "selected_job"  # the job the Train and Predict pages show
CUSTOM_DATASETS = "custom_datasets"  # name → Dataset built from this user's own images
DRAFTS_TO_RESTORE = "drafts_to_restore"  # a new session's default drafts, to be replaced by its selected run's

DEFAULT_DATASET = DatasetChoice("fashion_mnist", {})
FALLBACK_DATASET = DatasetChoice("shapes", {"count_per_class": 600, "image_size": 28, "colour": False, "seed": 0, "clutter": False})


OWNER_PARAM, RUN_PARAM = "user", "run"  # URL query parameters that bring a reload back to its runs
VIEW_PARAM = "view"  # ?view=<run id>: one run's curves and summary, read-only, for anyone with the link
_OWNER_TOKEN = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: the key to a user's runs, so never a short guessable one


def _owner_from_url() -> str:
    """The owner token in the URL (a reload or a new tab of the same user), or a new one."""
    token = st.query_params.get(OWNER_PARAM, "")
    return token if _OWNER_TOKEN.fullmatch(token) else uuid.uuid4().hex


def _run_from_url() -> str | None:
    run_id = st.query_params.get(RUN_PARAM, "")
    return run_id if runs.is_run_id(run_id) else None


def shared_run_from_url() -> str | None:
    """The run a read-only share link asks for (as typed, checked by whoever looks it up), or None."""
    return st.query_params.get(VIEW_PARAM) if VIEW_PARAM in st.query_params else None


def init_state() -> None:
    """Create every key this app uses, once per session, and keep the owner token in the URL."""
    defaults = {
        OWNER: _owner_from_url,
        DATASET_CHOICE: lambda: DEFAULT_DATASET,
        DATASET_NOTICE: lambda: None,
        MODEL_SPEC: lambda: model_spec.preset("Simple CNN"),
        TRAIN_CONFIG: TrainConfig,
        JOB_IDS: list,
        SELECTED_JOB: _run_from_url,
        CUSTOM_DATASETS: dict,
    }
    account = sign_in.signed_in_owner()
    if account is not None:  # signed in: the account owns the runs, whatever the address says
        defaults[OWNER] = lambda: account
    fresh = [key for key in defaults if key not in st.session_state]
    for key in fresh:
        st.session_state[key] = defaults[key]()
    if OWNER in fresh:  # a new session (a reload, a new tab): drafts made here may be restored from the user's runs
        st.session_state[DRAFTS_TO_RESTORE] = [key for key in (DATASET_CHOICE, MODEL_SPEC, TRAIN_CONFIG) if key in fresh]
    if account is not None:
        st.session_state[OWNER] = account
        st.query_params.pop(OWNER_PARAM, None)  # the address is no key any more
    elif st.query_params.get(OWNER_PARAM) != st.session_state[OWNER]:
        # A page switch drops the query string: put the token back so a reload finds this user's runs.
        st.query_params[OWNER_PARAM] = st.session_state[OWNER]
    selected = st.session_state[SELECTED_JOB]
    if selected and st.query_params.get(RUN_PARAM) != selected:
        st.query_params[RUN_PARAM] = selected


def select_job(job_id: str | None) -> None:
    """Show ``job_id`` on the Train and Predict pages, and put it in the URL for reloads."""
    st.session_state[SELECTED_JOB] = job_id
    if job_id:
        st.query_params[RUN_PARAM] = job_id
    else:
        st.query_params.pop(RUN_PARAM, None)


def dataset_choice() -> DatasetChoice:
    """The data set this session works on (a plain dict put there by a test or an old session is read as one)."""
    choice = st.session_state[DATASET_CHOICE]
    if isinstance(choice, dict):
        choice = st.session_state[DATASET_CHOICE] = DatasetChoice.from_dict(choice)
    return choice


def use_dataset(choice: DatasetChoice, notice: str | None = None) -> None:
    """Make ``choice`` the session's data set; ``notice`` says why when it stands in for another."""
    st.session_state[DATASET_CHOICE] = DatasetChoice(choice.key, dict(choice.options))
    st.session_state[DATASET_NOTICE] = notice


def model_spec_state() -> model_spec.ModelSpec:
    return st.session_state[MODEL_SPEC]


def train_config() -> TrainConfig:
    return st.session_state[TRAIN_CONFIG]


def ensure_started_from_app() -> None:
    """Rerun through app.py when Streamlit ran a page file on its own.

    Until ``st.navigation`` has run once in a server process, Streamlit treats the
    ``pages/`` folder the legacy way: the first visitor who lands straight on e.g.
    ``/train`` gets ``pages/train.py`` without app.py (no state, no frame). app.py
    always creates the session state first, so a page that finds none turns the
    legacy mode off and reruns.
    """
    if OWNER in st.session_state:
        return
    from ui import streamlit_private

    streamlit_private.leave_legacy_pages_mode()
