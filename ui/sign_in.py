"""Optional sign-in with Streamlit's own OIDC support (``st.login``, ``st.user``, ``[auth]`` in secrets.toml).

Configured, every page asks the visitor to sign in first, and their runs, quotas and leaderboard
entries belong to their account (the URL token is no longer the key). Not configured, nothing
changes: the token in the page's address is the key.
"""

from __future__ import annotations

import streamlit as st

from dcnn_core.room import identity
from ui.text import plain


def configured() -> bool:
    """Whether the server has a sign-in provider (an ``[auth]`` section in its secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        return False


def _claims() -> dict:
    return {key: st.user.get(key) for key in ("iss", "sub", "email", "name", "given_name")}


def signed_in_owner() -> str | None:
    """The signed-in person's owner id, or None (sign-in not configured, or not signed in)."""
    if not configured() or not st.user.is_logged_in:
        return None
    return identity.account_owner(_claims())


def signed_in_name() -> str:
    return identity.display_name(_claims()) if signed_in_owner() else ""


def gate() -> bool:
    """True when the page may be drawn; otherwise the sign-in screen is drawn and the page must stop."""
    if not configured() or signed_in_owner() is not None:
        return True
    # Through st.navigation, though it is one page: until st.navigation has run once in the server process, Streamlit
    # lists the pages/ folder's scripts in the sidebar (legacy mode), so a fresh server's sign-in screen offered them all.
    st.navigation([st.Page(_sign_in_screen, title="Sign in", icon=":material/login:", default=True)], position="hidden").run()
    return False


def _sign_in_screen() -> None:
    st.title("DCNN Studio")
    st.markdown("Learn image classification with convolutional networks: explore data, design a CNN, train it, test it.")
    st.info("This server asks you to sign in, so that your runs stay yours on any device.", icon=":material/login:")
    for provider in _providers():
        label = "Sign in" if provider is None else f"Sign in with {provider.replace('_', ' ').title()}"
        if st.button(label, type="primary", icon=":material/login:", key=f"sign_in_{provider or 'default'}"):
            st.login() if provider is None else st.login(provider)


def _providers() -> list[str | None]:
    """The providers set up in ``[auth]``: None for one set up directly there, else each ``[auth.<name>]``."""
    auth = st.secrets["auth"]
    named = [name for name, value in auth.items() if hasattr(value, "keys")]
    return ([None] if "client_id" in auth else []) + named or [None]


def draw_account() -> None:
    """The sidebar's line for a signed-in person, with Sign out."""
    st.caption(f"Signed in as **{plain(signed_in_name() or 'you')}**. Your runs belong to your account.")
    if st.button("Sign out", key="sign_out", icon=":material/logout:"):
        st.logout()
