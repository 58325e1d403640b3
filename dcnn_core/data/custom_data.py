"""A user's own images as a Dataset: a zip of class folders, uploads per class, or a server folder.

Every source goes through the same steps: check the container (sizes, counts,
paths) before reading, read each file with a cap, decode it safely, skip what is
not a usable image (saying why), and build uint8 arrays within a memory budget.
This module holds the entry points; the options, report and refusal are in
``custom_options``, the containers and class folders in ``custom_sources``, and the
decoding and split in ``custom_decode``. Nothing here imports Streamlit; the page
shows the returned ``ImportReport``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from dcnn_core.data import custom_decode, custom_sources, safe_zip
from dcnn_core.data.custom_options import ImportOptions, ImportRefused, ImportReport, Origin, Source

__all__ = ["build_from_uploads", "import_folder", "import_zip", "set_name"]

MAX_SET_NAME = 40


# --- public entry points ---------------------------------------------------------------------


def import_zip(data: bytes, name: str, options: ImportOptions | None = None) -> ImportReport:
    """A zip with one folder per class (optionally inside one wrapper folder), read in memory only."""
    options = options or ImportOptions()
    options.validate()
    with custom_sources.open_zip(data, name, options) as archive:
        try:
            members = safe_zip.check_zip(
                archive, len(data), name, max_members=options.max_members,
                max_total_bytes=options.max_total_uncompressed, max_ratio=options.max_ratio,
            )  # fmt: skip
        except safe_zip.ZipRefused as error:
            raise ImportRefused(str(error)) from error
        total = custom_sources.ReadBudget(options.max_total_uncompressed, f"'{name}'")
        sources = [
            (info.filename, Source(info.filename, lambda info=info: total.count(custom_sources.read_member(archive, info))))
            for info in members
        ]
        groups, skipped, notes = custom_sources.group_by_folder(sources)
        origin = Origin(set_name(PurePosixPath(name).stem), f"your zip '{name}'", "a zip of class folders")
        return custom_decode.build(groups, options, origin, skipped, notes)


def build_from_uploads(
    classes: dict[str, list[tuple[str, bytes]]], options: ImportOptions | None = None, name: str = "My images"
) -> ImportReport:
    """Classes created by name, each with images uploaded or taken with the webcam (file name, bytes)."""
    options = options or ImportOptions()
    options.validate()
    files = [(file_name, data) for uploads in classes.values() for file_name, data in uploads]
    custom_sources.check_totals(len(files), sum(len(data) for _, data in files), "your uploads", options)
    groups: dict[str, list[Source]] = {}
    for raw_name, uploads in classes.items():
        class_name = custom_sources.check_class_name(raw_name)
        if class_name in groups:
            raise ImportRefused(f"Two classes are both called '{class_name}'; give each class its own name.")
        groups[class_name] = [Source(f"{class_name}/{file_name}", lambda data=data: data) for file_name, data in uploads]
    return custom_decode.build(groups, options, Origin(set_name(name), "your uploads", "uploads and webcam pictures"), [], [])


def import_folder(path: str | os.PathLike, options: ImportOptions | None = None, name: str | None = None) -> ImportReport:
    """A folder on this server with one sub-folder per class; links that lead outside it are refused."""
    options = options or ImportOptions()
    options.validate()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ImportRefused(f"'{path}' is not a folder on this server.")
    root = root.resolve()
    sources, skipped = custom_sources.folder_sources(root, options)
    groups, more_skipped, notes = custom_sources.group_by_folder(sources)
    origin = Origin(set_name(name or root.name), f"the folder '{root}'", "a folder on the server")
    return custom_decode.build(groups, options, origin, skipped + more_skipped, notes)


def set_name(raw: str) -> str:
    """A short, plain name for a set: letters, digits, spaces and - _ . ( ) only."""
    kept = "".join(c if c.isalnum() or c in " -_.()" else " " for c in str(raw))
    return " ".join(kept.split())[:MAX_SET_NAME].strip() or "My images"
