"""Files fetched from the internet the way a shared server needs them: bounded in time, whole or not at all, checked.

``keras.utils.get_file`` (what keras.applications and keras.datasets use) reads without a timeout — a host that
accepts the connection and then says nothing blocks its caller forever — and writes straight to its final path,
so a download cut short leaves a half-written file that every later load trusts. ``fetch`` reads with a socket
timeout and an overall deadline into a temporary file next to the target, checks the file's hash (sha256 or md5,
as keras.applications publishes them, chosen by length as ``get_file``'s ``file_hash`` is), and only then renames
it into place: the final path holds a whole, checked file or nothing. A file already there is checked against the
same hash before it is used, and deleted when it is wrong. A failure is remembered for a minute, so a server
without internet does not make every page and every run wait for the same timeout again.

Every detail (URLs, paths, hashes) goes to the server log; callers tell users one sentence of their own.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass

logger = logging.getLogger(__name__)

STALL_TIMEOUT_S = 10.0  # no byte for this long (connecting included): the host has stalled
DEADLINE_S = 300.0  # a whole download takes at most this long
RETRY_AFTER_S = 60.0  # a failed URL is not tried again sooner
_CHUNK_BYTES = 1 << 16


def offline(environ=None) -> bool:
    """``DCNN_OFFLINE=1``: the server has no internet on purpose, so nothing is ever downloaded."""
    return (os.environ if environ is None else environ).get("DCNN_OFFLINE", "").strip() == "1"


class DownloadFailed(Exception):
    """A file could not be had; the message names the URL and the cause, for the server log (not for users)."""


@dataclass(frozen=True)
class Remote:
    """Where a file comes from and what it must hash to (None: any whole file will do)."""

    url: str
    file_hash: str | None = None  # sha256 (64 hex digits) or md5 (32), as keras.utils.get_file's file_hash


def _hasher(file_hash: str):
    return hashlib.sha256() if len(file_hash) == 64 else hashlib.md5()  # keras.utils.get_file's "auto"


def hash_of(path: str, file_hash: str) -> str:
    """The file's hash, computed with the algorithm ``file_hash`` is in."""
    hasher = _hasher(file_hash)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


_checked: dict[tuple, bool] = {}  # (path, size, mtime_ns, hash) → whether it matched: each file state is hashed once
_checked_lock = threading.Lock()


def matches(path: str, file_hash: str | None) -> bool:
    """Whether the file at ``path`` exists and has ``file_hash`` (any file matches None); logs a mismatch once."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    if file_hash is None:
        return True
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, file_hash.lower())
    with _checked_lock:
        known = _checked.get(key)
    if known is not None:
        return known
    try:
        actual = hash_of(path, file_hash)
    except OSError as error:
        logger.error("Could not read %s to check its hash: %s", path, error)
        return False
    ok = actual == file_hash.lower()
    if not ok:
        logger.error("%s is not the expected file: its hash is %s, expected %s.", path, actual, file_hash)
    with _checked_lock:
        _checked[key] = ok
    return ok


def discard_if_wrong(path: str, file_hash: str | None) -> bool:
    """True when a right file is at ``path``; a wrong one (half-written, damaged, another file) is deleted."""
    if not os.path.isfile(path):
        return False
    if matches(path, file_hash):
        return True
    try:
        os.remove(path)
        logger.warning("Deleted %s: it did not have the expected hash (it is fetched again when needed).", path)
    except OSError as error:
        logger.error("Could not delete the wrong file %s: %s", path, error)
    return False


_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()
_failures: dict[Remote, tuple[float, str]] = {}  # a remote file → (when, why) of its last failure


def _lock_for(target: str) -> threading.Lock:
    """One lock per target file: two callers wanting the same file wait for one download instead of making two."""
    with _locks_lock:
        return _locks.setdefault(os.path.abspath(target), threading.Lock())


def recently_failed(remote: Remote) -> str | None:
    """Why fetching ``remote`` failed less than ``RETRY_AFTER_S`` ago, or None."""
    with _locks_lock:
        when, why = _failures.get(remote, (0.0, ""))
    return why if time.monotonic() - when < RETRY_AFTER_S else None


def fetch(remote: Remote, target: str, stall_timeout_s: float | None = None, deadline_s: float | None = None) -> str:
    """``target``, holding the file at ``remote`` with its hash: the one already there, or downloaded now.

    Raises ``DownloadFailed`` (after at most about ``deadline_s`` + ``stall_timeout_s``, by default ``DEADLINE_S`` and
    ``STALL_TIMEOUT_S``); nothing is then at ``target`` that was not there and right before.
    """
    stall_timeout_s = STALL_TIMEOUT_S if stall_timeout_s is None else stall_timeout_s
    deadline_s = DEADLINE_S if deadline_s is None else deadline_s
    with _lock_for(target):
        if discard_if_wrong(target, remote.file_hash):
            return target
        why = recently_failed(remote)
        if why is not None:
            raise DownloadFailed(f"{why} (failed less than {RETRY_AFTER_S:g} s ago; not tried again yet)")
        try:
            _download(remote, target, stall_timeout_s, deadline_s)
        except DownloadFailed as error:
            with _locks_lock:
                _failures[remote] = (time.monotonic(), str(error))
            logger.warning("Download failed: %s", error)
            raise
        with _locks_lock:
            _failures.pop(remote, None)
        logger.info("Downloaded %s into %s.", remote.url, target)
        return target


def _download(remote: Remote, target: str, stall_timeout_s: float, deadline_s: float) -> None:
    """Into a temporary file in the target's folder, checked, then renamed into place (atomic on one file system)."""
    folder = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part", dir=folder)
    except OSError as error:
        raise DownloadFailed(f"{remote.url}: cannot write into {folder} ({error})") from error
    try:
        with os.fdopen(handle, "wb") as out:
            _copy(remote.url, out, stall_timeout_s, deadline_s)
        if remote.file_hash is not None:
            actual = hash_of(temporary, remote.file_hash)
            if actual != remote.file_hash.lower():
                raise DownloadFailed(f"{remote.url}: the downloaded file's hash is {actual}, expected {remote.file_hash}")
        os.replace(temporary, target)
    except OSError as error:
        raise DownloadFailed(f"{remote.url}: cannot write {target} ({error})") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _copy(url: str, out, stall_timeout_s: float, deadline_s: float) -> None:
    """Stream ``url`` into ``out``: each read waits at most ``stall_timeout_s``, the whole at most ``deadline_s``."""
    ends, received = time.monotonic() + deadline_s, 0
    try:
        with urllib.request.urlopen(url, timeout=stall_timeout_s) as response:  # noqa: S310 - the URLs are our own constants
            expected = response.headers.get("Content-Length")
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                if time.monotonic() > ends:
                    raise DownloadFailed(f"{url}: not finished within {deadline_s:g} s")
        if expected is not None and expected.isdigit() and received != int(expected):  # http.client's read(n) does not say
            raise DownloadFailed(f"{url}: cut short after {received} of {expected} bytes")
    except TimeoutError as error:
        raise DownloadFailed(f"{url}: no answer for {stall_timeout_s:g} s (stalled)") from error
    except (OSError, http.client.HTTPException, ValueError) as error:  # URLError, HTTPError, a connection cut short
        reason = getattr(error, "reason", None)
        if isinstance(reason, TimeoutError):
            raise DownloadFailed(f"{url}: no answer for {stall_timeout_s:g} s (stalled)") from error
        raise DownloadFailed(f"{url}: {error}") from error
