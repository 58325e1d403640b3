"""Who owns a run: an account of the server's sign-in provider, or (without sign-in) the token in the page's address.

With sign-in configured, the owner id is derived from the provider's issuer and subject — stable
across devices and reloads, never shown, and not guessable from a link. Without it, a random token
in the URL is the key (the app's behaviour when no provider is set up).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def account_owner(claims: Mapping[str, object]) -> str | None:
    """The owner id of a signed-in account (32 hex characters, like a URL token), or None without a subject."""
    subject = str(claims.get("sub") or claims.get("email") or "").strip()
    if not subject:
        return None
    issuer = str(claims.get("iss") or "").strip()
    return hashlib.sha256(f"dcnn-studio-account\n{issuer}\n{subject}".encode()).hexdigest()[:32]


def display_name(claims: Mapping[str, object]) -> str:
    """A short name to greet the person and to offer on the leaderboard: their name, else their e-mail's local part."""
    name = str(claims.get("name") or claims.get("given_name") or "").strip()
    if not name:
        name = str(claims.get("email") or "").split("@")[0].strip()
    return name[:40]


__all__ = ["account_owner", "display_name"]
