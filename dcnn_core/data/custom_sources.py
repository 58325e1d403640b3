"""Where a user's files come from: a zip, a folder on the server, and the class folders inside.

Each container is checked before any file in it is read: the zip's size, directory and
members (through ``safe_zip``), the folder's files counted and sized as it is walked, with
links that lead outside it refused. Every file becomes a ``Source`` that reads its bytes
with a cap, counted by a ``ReadBudget`` against what the whole import may unpack. The
paths are then grouped by their first folder into classes (one wrapper folder allowed),
leaving out system files and checking each class name.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

from dcnn_core.data import images, safe_zip
from dcnn_core.data.custom_options import MB, ImportOptions, ImportRefused, Skip, Source

MAX_CLASS_NAME = 40  # characters
_SYSTEM_FILES = {"__MACOSX", "Thumbs.db", "desktop.ini"}  # written by file managers, never images


# --- containers ---------------------------------------------------------------------------------


def open_zip(data: bytes, name: str, options: ImportOptions) -> zipfile.ZipFile:
    if not data:
        raise ImportRefused(f"'{name}' is empty: put one folder per class inside a zip, with images in each.")
    if len(data) > options.max_archive_bytes:
        raise ImportRefused(f"'{name}' is {len(data) / MB:.1f} MB; the limit is {options.max_archive_bytes / MB:.0f} MB.")
    try:
        safe_zip.check_directory_size(data, name, options.max_members)
        return zipfile.ZipFile(io.BytesIO(data))
    except safe_zip.ZipRefused as error:
        raise ImportRefused(str(error)) from error
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise ImportRefused(f"'{name}' is not a zip file (or it is damaged); make one with your system's 'Compress' command.") from error


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return safe_zip.read_member(archive, info, images.MAX_UPLOAD_BYTES)
    except safe_zip.MemberUnreadable as error:
        raise Skip(str(error)) from error


class ReadBudget:
    """Counts the bytes actually read, whatever the headers claimed."""

    def __init__(self, limit: int, where: str):
        self.limit, self.where, self.used = limit, where, 0

    def count(self, data: bytes) -> bytes:
        self.used += len(data)
        if self.used > self.limit:
            raise ImportRefused(f"There is more than {self.limit / MB:.0f} MB of data in {self.where} once unpacked; that is the limit.")
        return data


def check_totals(count: int, total_bytes: int, where: str, options: ImportOptions) -> None:
    if count > options.max_members:
        raise ImportRefused(f"There are {count:,} files in {where}; the limit is {options.max_members:,}.")
    if total_bytes > options.max_total_uncompressed:
        raise ImportRefused(
            f"There are {total_bytes / MB:.0f} MB of files in {where}; the limit is {options.max_total_uncompressed / MB:.0f} MB."
        )


def folder_sources(root: Path, options: ImportOptions) -> tuple[list[tuple[str, Source]], list[tuple[str, str]]]:
    """Every regular file under ``root``, counted and sized before any is read."""
    sources: list[tuple[str, Source]] = []
    skipped: list[tuple[str, str]] = []
    declared = 0
    total = ReadBudget(options.max_total_uncompressed, f"the folder '{root}'")
    for directory, folder_names, file_names in os.walk(root):  # never follows links to folders
        for entry in sorted(folder_names) + sorted(file_names):
            path = Path(directory, entry)
            relative = path.relative_to(root).as_posix()
            size = _usable_file_size(path, relative, root, is_folder=entry in folder_names, skipped=skipped)
            if size is None:
                continue
            declared += size
            sources.append((relative, Source(relative, lambda path=path: total.count(_read_file(path)))))
            check_totals(len(sources), declared, f"the folder '{root}'", options)  # stops a walk of a huge tree early
    return sources, skipped


def _usable_file_size(path: Path, relative: str, root: Path, is_folder: bool, skipped: list[tuple[str, str]]) -> int | None:
    """The size of a regular file to read; None (noting why, where useful) for anything else."""
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        raise ImportRefused(f"'{relative}' is a link to somewhere outside '{root}'; remove it or copy the files in.")
    if is_folder:
        if path.is_symlink():
            skipped.append((relative, "link to a folder (not followed)"))
        return None
    try:
        info = path.stat()
    except OSError:
        skipped.append((relative, "could not be read"))
        return None
    if not stat.S_ISREG(info.st_mode):
        skipped.append((relative, "not a regular file"))
        return None
    return info.st_size


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(images.MAX_UPLOAD_BYTES + 1)
    except OSError as error:
        raise Skip("could not be read") from error
    if len(data) > images.MAX_UPLOAD_BYTES:
        raise Skip(f"file too large (over {images.MAX_UPLOAD_BYTES / MB:.0f} MB)")
    return data


# --- classes ------------------------------------------------------------------------------------


def check_class_name(raw: str) -> str:
    name = str(raw).strip()
    if not name:
        raise ImportRefused("A class has no name; give every class a name.")
    if len(name) > MAX_CLASS_NAME:
        raise ImportRefused(f"The class name '{name[:MAX_CLASS_NAME]}…' is {len(name)} characters; the limit is {MAX_CLASS_NAME}.")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ImportRefused(f"The class name {name!r} holds control characters; use letters, digits and spaces.")
    return name


def _is_system_file(parts: list[str]) -> bool:
    return any(part in _SYSTEM_FILES or part.startswith(".") for part in parts)


def group_by_folder(
    sources: list[tuple[str, Source]],
) -> tuple[dict[str, list[Source]], list[tuple[str, str]], list[str]]:
    """Class folders → their files (keras' image_dataset_from_directory layout, sorted by name)."""
    paths = [([part for part in path.split("/") if part not in ("", ".")], source) for path, source in sources]
    system = [parts for parts, _ in paths if _is_system_file(parts)]
    paths = [(parts, source) for parts, source in paths if not _is_system_file(parts)]
    if len({parts[0] for parts, _ in paths}) == 1 and any(len(parts) >= 3 for parts, _ in paths):
        paths = [(parts[1:], source) for parts, source in paths]  # one wrapper folder around the classes
    groups: dict[str, list[Source]] = {}
    skipped: list[tuple[str, str]] = []
    for parts, source in paths:
        if len(parts) < 2:
            skipped.append((source.label, "not inside a class folder"))
        else:
            groups.setdefault(parts[0], []).append(source)
    checked = {check_class_name(folder): groups[folder] for folder in sorted(groups)}
    if len(checked) < len(groups):
        raise ImportRefused("Two class folders differ only by spaces at the ends of their names; rename one.")
    notes = [f"Ignored {len(system)} hidden or system files (e.g. __MACOSX, .DS_Store)."] if system else []
    return checked, skipped, notes
