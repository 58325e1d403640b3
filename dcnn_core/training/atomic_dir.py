"""Folders replaced whole, safe against a crash at any step.

A folder ``<root>/<name>`` is written to a staging folder (``.stage-<name>-*``), fsynced, the old
folder renamed aside (``.old-<name>-*``), the new one renamed in, then the old one deleted. A crash
between those steps leaves the old folder or the new one, never neither; ``recover`` puts an orphaned
old folder back and sweeps the other leftovers.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Move = Callable[[Path, Path], None]


def rename(source: Path, target: Path) -> None:
    """One rename: a step of replacing a folder."""
    source.rename(target)


class AtomicFolders:
    """Folders under ``root`` named by ``name_pattern``, each replaced or removed whole.

    ``move`` arguments let a caller (and its tests) supply the rename step, e.g. to simulate a crash.
    """

    def __init__(self, root: Path, name_pattern: str, marker: str):
        self.root = root
        self.marker = marker  # a file every whole folder holds: an aside folder without it is never put back
        self._leftover = re.compile(rf"\.(stage|old)-({name_pattern})-[0-9a-z_]+")
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # staging and aside folders a write in this process is using

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A fresh staging folder for ``name``; removed on the way out unless it was renamed in."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".stage-{name}-", dir=self.root))
        with self._held(folder):
            try:
                yield folder
            finally:
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)

    def replace(self, staging: Path, name: str, move: Move = rename) -> Path:
        """fsync ``staging``, rename the old ``name`` aside, rename ``staging`` in, then delete the old one."""
        sync_tree(staging)
        final = self.root / name
        aside = self._aside(name)
        with self._held(aside):
            if final.exists():
                move(final, aside)
            try:
                move(staging, final)
            except BaseException:
                if aside.exists() and not final.exists():
                    move(aside, final)  # put the previous folder back
                raise
            sync_dir(self.root)
            if aside.exists():
                shutil.rmtree(aside, ignore_errors=True)  # a leftover is swept by the next recover()
        return final

    def remove(self, name: str, move: Move = rename) -> None:
        """Delete ``<root>/<name>`` (renamed aside first, so a crash never leaves half a folder that looks whole)."""
        folder = self.root / name
        if not folder.is_dir():
            return
        aside = self._aside(name)
        move(folder, aside)
        sync_dir(self.root)
        shutil.rmtree(aside, ignore_errors=True)

    def recover(self, move: Move = rename) -> None:
        """Finish what a crash interrupted: an old folder renamed aside with no new one in place goes back;
        other leftovers (staging folders, old folders already replaced) are deleted."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            match = self._leftover.fullmatch(folder.name)
            if match is None or self._is_busy(folder) or not folder.is_dir() or folder.is_symlink():
                continue
            kind, name = match.groups()
            final = self.root / name
            if kind == "old" and not final.exists() and (folder / self.marker).is_file():
                move(folder, final)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        sync_dir(self.root)

    def _aside(self, name: str) -> Path:
        return self.root / f".old-{name}-{secrets.token_hex(4)}"

    @contextmanager
    def _held(self, folder: Path) -> Iterator[None]:
        with self._lock:
            self._busy.add(folder.name)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(folder.name)

    def _is_busy(self, folder: Path) -> bool:
        with self._lock:
            return folder.name in self._busy


def sync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then the folders: the data is on disk before a rename makes it count."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    for path in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        sync_dir(path)


def sync_dir(folder: Path) -> None:
    """fsync a folder, so the renames in it are on disk."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder: its renames are durable enough there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


__all__ = ["AtomicFolders", "Move", "rename", "sync_dir", "sync_tree"]
