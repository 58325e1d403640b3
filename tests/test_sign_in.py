"""Optional sign-in (Streamlit's OIDC, ``[auth]`` in secrets): the account owns the runs, not the URL token."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.design import spec
from dcnn_core.room import identity
from dcnn_core.training.config import TrainConfig
from tests.helpers import train_in_app

APP = str(Path(__file__).resolve().parent.parent / "app.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "dcnn",
        "client_secret": "secret", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}  # fmt: skip
ADA = {"is_logged_in": True, "iss": "https://id.example.org", "sub": "ada-1815", "name": "Ada L", "email": "ada@example.org"}
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 30, "image_size": 16, "seed": 1}}


@pytest.fixture
def server(monkeypatch, tmp_path):
    from ui import resources

    monkeypatch.setenv("DCNN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DCNN_OFFLINE", "1")
    for cached in (resources.settings, resources.run_store, resources.engine):
        cached.clear()
    yield
    for cached in (resources.settings, resources.run_store, resources.engine):
        cached.clear()


def _browser(user: dict, token: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = dict(AUTH)
    at.user = dict(user)
    if token:
        at.query_params["user"] = token
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_account_id_is_stable_per_account_and_different_between_accounts():
    assert identity.account_owner(ADA) == identity.account_owner(dict(ADA, name="Ada Lovelace"))
    assert identity.account_owner(ADA) != identity.account_owner(dict(ADA, sub="grace-1906"))
    assert identity.account_owner(ADA) != identity.account_owner(dict(ADA, iss="https://other.example.org"))
    assert identity.account_owner({"is_logged_in": True}) is None
    assert len(identity.account_owner(ADA)) == 32 and "ada" not in identity.account_owner(ADA)


def test_with_sign_in_configured_a_visitor_signs_in_before_any_page(server):
    at = _browser({"is_logged_in": False})
    assert [button.label for button in at.button] == ["Sign in"]
    assert "owner_id" not in at.session_state  # nothing of the app ran: no runs, no token
    assert "user" not in at.query_params


def test_a_signed_in_persons_runs_follow_the_account_not_the_address(server):
    owner = identity.account_owner(ADA)
    run = train_in_app(spec.preset("Simple CNN"), TrainConfig(epochs=1, batch_size=16), TINY_SHAPES, owner)
    stranger_token = "0123456789abcdef0123456789abcdef"
    other = train_in_app(spec.preset("Simple CNN"), TrainConfig(epochs=1, batch_size=16), TINY_SHAPES, stranger_token)

    laptop = _browser(ADA)
    assert laptop.session_state["owner_id"] == owner and "user" not in laptop.query_params
    assert "Ada L" in " ".join(caption.value for caption in laptop.sidebar.caption)
    assert laptop.session_state["job_ids"] == [run.run_id]

    phone = _browser(ADA, token=stranger_token)  # an address with somebody's token is no key once signed in
    assert phone.session_state["owner_id"] == owner
    assert phone.session_state["job_ids"] == [run.run_id] and other.run_id not in phone.session_state["job_ids"]

    grace = _browser(dict(ADA, sub="grace-1906", name="Grace H"))
    assert grace.session_state["job_ids"] == []


def test_without_sign_in_configured_the_url_token_stays_the_key(server):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.query_params["user"] == at.session_state["owner_id"]
