"""A user's own images as a Dataset: a zip of class folders, uploads per class, or a server folder.

Every source goes through the same steps: check the container (sizes, counts,
paths) before reading, read each file with a cap, decode it safely, skip what is
not a usable image (saying why), and build uint8 arrays within a memory budget.
Nothing here imports Streamlit; the page shows the returned ``ImportReport``.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from dcnn_core.data import datasets, images, safe_zip
from dcnn_core.settings import load_settings

__all__ = ["ImportOptions", "ImportRefused", "ImportReport", "build_from_uploads", "import_folder", "import_zip", "set_name"]

MB = 1024 * 1024
MIN_SIDE = 8  # pixels; smaller images carry too little to learn from
MAX_CLASS_NAME = 40  # characters
MAX_SET_NAME = 40
_SYSTEM_FILES = {"__MACOSX", "Thumbs.db", "desktop.ini"}  # written by file managers, never images


def _budget_default() -> int:
    return load_settings().custom_data_budget_mb * MB


@dataclass
class ImportOptions:
    """How to turn a user's files into a data set, and the limits that protect the server."""

    image_size: int = 32  # every image is padded to a square, then resized to image_size × image_size
    grayscale: bool = False  # one channel instead of three
    test_fraction: float = 0.2  # per class, held out for the test split (validation is split off later by training)
    seed: int = 0  # the train/test split, and which images are left out when over the memory budget
    min_images_per_class: int = 4  # after skipping: at least 3 to train on and 1 to test with
    max_classes: int = 100
    max_archive_bytes: int = 50 * MB  # the zip file itself
    max_members: int = 5000  # files (entries) in a zip, folder or upload
    max_total_uncompressed: int = 300 * MB  # bytes of all files together, after decompression
    max_ratio: int = 100  # uncompressed ÷ compressed, per large member and for the whole zip
    max_megapixels: float = 16  # per decoded image, before resizing (a single prediction allows more)
    max_total_megapixels: float = 1000  # all decoded images of one import together: caps the decoding time
    memory_budget_bytes: int = field(default_factory=_budget_default)  # the resulting uint8 arrays (DCNN_CUSTOM_DATA_BUDGET_MB)

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def bytes_per_image(self) -> int:
        return self.image_size * self.image_size * self.channels

    def validate(self) -> None:
        if not 8 <= self.image_size <= 128:
            raise ValueError("The image size must be from 8 to 128 pixels.")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise ValueError("The test fraction must be from 0.05 to 0.5.")
        if self.min_images_per_class < 2:
            raise ValueError("Each class needs at least 2 images: one to train on and one to test with.")
        if self.max_megapixels <= 0 or self.max_total_megapixels <= 0:
            raise ValueError("The pixel limits must be above zero.")
        if self.memory_budget_bytes < self.bytes_per_image:
            raise ValueError("The memory budget is smaller than one image.")


@dataclass
class ImportReport:
    """What an import made, and what it left out and why — shown before any training."""

    dataset: datasets.Dataset
    counts: dict[str, int]  # usable images per class, training and test together
    skipped: list[tuple[str, str]]  # (file, reason), e.g. ("cats/notes.txt", "not an image")
    notes: list[str]  # things done to the data the user should know, e.g. images left out for memory


@dataclass(frozen=True)
class _Source:
    """One candidate image: the name shown to the user and how to read its bytes (with a cap)."""

    label: str
    read: Callable[[], bytes]


class ImportRefused(ValueError):
    """The whole import is refused; the message tells the user what to change, naming the file or class."""

    def __init__(self, message: str, skipped: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.skipped = skipped or []  # files left out before the refusal, so the user can see why a class ran short


@dataclass(frozen=True)
class _Origin:
    name: str  # the set's plain name, shown as its title
    where: str  # for messages: "your zip 'pets.zip'"
    kind: str  # for the data-set card, free of user text: "a zip of class folders"


class _Skip(Exception):
    """A file that is left out; the message is the reason shown in the table."""


# --- public entry points ---------------------------------------------------------------------


def import_zip(data: bytes, name: str, options: ImportOptions | None = None) -> ImportReport:
    """A zip with one folder per class (optionally inside one wrapper folder), read in memory only."""
    options = options or ImportOptions()
    options.validate()
    with _open_zip(data, name, options) as archive:
        try:
            members = safe_zip.check_zip(
                archive, len(data), name, max_members=options.max_members,
                max_total_bytes=options.max_total_uncompressed, max_ratio=options.max_ratio,
            )  # fmt: skip
        except safe_zip.ZipRefused as error:
            raise ImportRefused(str(error)) from error
        total = _ReadBudget(options.max_total_uncompressed, f"'{name}'")
        sources = [(info.filename, _Source(info.filename, lambda info=info: total.count(_read_member(archive, info)))) for info in members]
        groups, skipped, notes = _group_by_folder(sources)
        origin = _Origin(set_name(PurePosixPath(name).stem), f"your zip '{name}'", "a zip of class folders")
        return _build(groups, options, origin, skipped, notes)


def build_from_uploads(
    classes: dict[str, list[tuple[str, bytes]]], options: ImportOptions | None = None, name: str = "My images"
) -> ImportReport:
    """Classes created by name, each with images uploaded or taken with the webcam (file name, bytes)."""
    options = options or ImportOptions()
    options.validate()
    files = [(file_name, data) for uploads in classes.values() for file_name, data in uploads]
    _check_totals(len(files), sum(len(data) for _, data in files), "your uploads", options)
    groups: dict[str, list[_Source]] = {}
    for raw_name, uploads in classes.items():
        class_name = _check_class_name(raw_name)
        if class_name in groups:
            raise ImportRefused(f"Two classes are both called '{class_name}'; give each class its own name.")
        groups[class_name] = [_Source(f"{class_name}/{file_name}", lambda data=data: data) for file_name, data in uploads]
    return _build(groups, options, _Origin(set_name(name), "your uploads", "uploads and webcam pictures"), [], [])


def import_folder(path: str | os.PathLike, options: ImportOptions | None = None, name: str | None = None) -> ImportReport:
    """A folder on this server with one sub-folder per class; links that lead outside it are refused."""
    options = options or ImportOptions()
    options.validate()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ImportRefused(f"'{path}' is not a folder on this server.")
    root = root.resolve()
    sources, skipped = _folder_sources(root, options)
    groups, more_skipped, notes = _group_by_folder(sources)
    origin = _Origin(set_name(name or root.name), f"the folder '{root}'", "a folder on the server")
    return _build(groups, options, origin, skipped + more_skipped, notes)


def set_name(raw: str) -> str:
    """A short, plain name for a set: letters, digits, spaces and - _ . ( ) only."""
    kept = "".join(c if c.isalnum() or c in " -_.()" else " " for c in str(raw))
    return " ".join(kept.split())[:MAX_SET_NAME].strip() or "My images"


# --- containers ---------------------------------------------------------------------------------


def _open_zip(data: bytes, name: str, options: ImportOptions) -> zipfile.ZipFile:
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


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return safe_zip.read_member(archive, info, images.MAX_UPLOAD_BYTES)
    except safe_zip.MemberUnreadable as error:
        raise _Skip(str(error)) from error


class _ReadBudget:
    """Counts the bytes actually read, whatever the headers claimed."""

    def __init__(self, limit: int, where: str):
        self.limit, self.where, self.used = limit, where, 0

    def count(self, data: bytes) -> bytes:
        self.used += len(data)
        if self.used > self.limit:
            raise ImportRefused(f"There is more than {self.limit / MB:.0f} MB of data in {self.where} once unpacked; that is the limit.")
        return data


def _check_totals(count: int, total_bytes: int, where: str, options: ImportOptions) -> None:
    if count > options.max_members:
        raise ImportRefused(f"There are {count:,} files in {where}; the limit is {options.max_members:,}.")
    if total_bytes > options.max_total_uncompressed:
        raise ImportRefused(
            f"There are {total_bytes / MB:.0f} MB of files in {where}; the limit is {options.max_total_uncompressed / MB:.0f} MB."
        )


def _folder_sources(root: Path, options: ImportOptions) -> tuple[list[tuple[str, _Source]], list[tuple[str, str]]]:
    """Every regular file under ``root``, counted and sized before any is read."""
    sources: list[tuple[str, _Source]] = []
    skipped: list[tuple[str, str]] = []
    declared = 0
    total = _ReadBudget(options.max_total_uncompressed, f"the folder '{root}'")
    for directory, folder_names, file_names in os.walk(root):  # never follows links to folders
        for entry in sorted(folder_names) + sorted(file_names):
            path = Path(directory, entry)
            relative = path.relative_to(root).as_posix()
            size = _usable_file_size(path, relative, root, is_folder=entry in folder_names, skipped=skipped)
            if size is None:
                continue
            declared += size
            sources.append((relative, _Source(relative, lambda path=path: total.count(_read_file(path)))))
            _check_totals(len(sources), declared, f"the folder '{root}'", options)  # stops a walk of a huge tree early
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
        raise _Skip("could not be read") from error
    if len(data) > images.MAX_UPLOAD_BYTES:
        raise _Skip(f"file too large (over {images.MAX_UPLOAD_BYTES / MB:.0f} MB)")
    return data


# --- classes ------------------------------------------------------------------------------------


def _check_class_name(raw: str) -> str:
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


def _group_by_folder(
    sources: list[tuple[str, _Source]],
) -> tuple[dict[str, list[_Source]], list[tuple[str, str]], list[str]]:
    """Class folders → their files (keras' image_dataset_from_directory layout, sorted by name)."""
    paths = [([part for part in path.split("/") if part not in ("", ".")], source) for path, source in sources]
    system = [parts for parts, _ in paths if _is_system_file(parts)]
    paths = [(parts, source) for parts, source in paths if not _is_system_file(parts)]
    if len({parts[0] for parts, _ in paths}) == 1 and any(len(parts) >= 3 for parts, _ in paths):
        paths = [(parts[1:], source) for parts, source in paths]  # one wrapper folder around the classes
    groups: dict[str, list[_Source]] = {}
    skipped: list[tuple[str, str]] = []
    for parts, source in paths:
        if len(parts) < 2:
            skipped.append((source.label, "not inside a class folder"))
        else:
            groups.setdefault(parts[0], []).append(source)
    checked = {_check_class_name(folder): groups[folder] for folder in sorted(groups)}
    if len(checked) < len(groups):
        raise ImportRefused("Two class folders differ only by spaces at the ends of their names; rename one.")
    notes = [f"Ignored {len(system)} hidden or system files (e.g. __MACOSX, .DS_Store)."] if system else []
    return checked, skipped, notes


# --- images -------------------------------------------------------------------------------------


def _build(
    groups: dict[str, list[_Source]], options: ImportOptions, origin: _Origin, skipped: list[tuple[str, str]], notes: list[str]
) -> ImportReport:
    """Decode within the memory budget, check every class has enough images, split, and make the Dataset."""
    class_names = _check_class_count(groups, origin.where, options)
    capacity = _capacity(len(class_names), options)
    over_budget = sum(len(files) for files in groups.values()) > capacity
    queues = [deque(_order(groups[class_name], over_budget, options.seed)) for class_name in class_names]
    decoder = _Decoder(options, origin.where)
    pixels, labels = _decode_round_robin(queues, capacity, decoder, skipped)
    left_out = {class_name: len(queue) for class_name, queue in zip(class_names, queues, strict=True) if queue}
    counts = {class_name: int(np.sum(labels == label)) for label, class_name in enumerate(class_names)}
    _check_enough(counts, options, skipped)
    if left_out:
        notes.append(_budget_note(left_out, capacity, options))
    train, test = datasets.stratified_split(labels, options.test_fraction, options.seed)
    dataset = datasets.make_dataset(
        f"custom:{origin.name}", origin.name,
        f"Your own images ({origin.kind}): {len(labels):,} images in {len(class_names)} classes",
        pixels[train], labels[train], pixels[test], labels[test], class_names, light_on_dark=False,
    )  # fmt: skip
    return ImportReport(dataset, counts, skipped, notes)


def _check_class_count(groups: dict[str, list[_Source]], where: str, options: ImportOptions) -> list[str]:
    if not any(groups.values()):
        raise ImportRefused(f"No images were found in {where}. Each class needs its own folder (or list of uploads) with images in it.")
    if len(groups) < 2:
        only = next(iter(groups))
        raise ImportRefused(f"Only one class ('{only}') was found in {where}; a classifier needs at least two classes.")
    if len(groups) > options.max_classes:
        raise ImportRefused(f"There are {len(groups)} classes in {where}; the limit is {options.max_classes}.")
    return list(groups)


def _capacity(class_count: int, options: ImportOptions) -> int:
    capacity = options.memory_budget_bytes // options.bytes_per_image
    if capacity < class_count * options.min_images_per_class:
        raise ImportRefused(
            f"{class_count} classes of {options.min_images_per_class} images at {_shape(options)} pixels do not fit in "
            f"the memory budget ({options.memory_budget_bytes / MB:.1f} MB); choose a smaller image size or grayscale."
        )
    return capacity


def _order(sources: list[_Source], shuffle: bool, seed: int) -> list[_Source]:
    """Name order; a seeded random order when only some will fit, so no folder position is favoured."""
    ordered = sorted(sources, key=lambda source: source.label)
    if shuffle:
        ordered = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    return ordered


def _decode_round_robin(
    queues: list[deque[_Source]], capacity: int, decoder: _Decoder, skipped: list[tuple[str, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """One usable image per class in turn until the budget is full: classes stay as even as they can."""
    options = decoder.options
    limit = min(capacity, sum(len(queue) for queue in queues))
    pixels = np.empty((limit, options.image_size, options.image_size, options.channels), np.uint8)
    labels = np.empty(limit, np.int64)
    count = 0
    while count < limit and any(queues):
        for label, queue in enumerate(queues):
            image = _next_usable(queue, decoder, skipped) if count < limit else None
            if image is not None:
                pixels[count], labels[count] = image, label
                count += 1
    return pixels[:count], labels[:count]


def _next_usable(queue: deque[_Source], decoder: _Decoder, skipped: list[tuple[str, str]]):
    while queue:
        source = queue.popleft()
        try:
            return decoder.load(source)
        except _Skip as reason:
            skipped.append((source.label, str(reason)))
    return None


class _Decoder:
    """Decodes one import's images: duplicates skipped, every decoded pixel counted against the import's budget."""

    def __init__(self, options: ImportOptions, where: str):
        self.options, self.where = options, where
        self.seen: dict[str, str] = {}  # sha-256 of a file's bytes → the first file with them
        self.pixels_left = options.max_total_megapixels * 1_000_000

    def load(self, source: _Source) -> np.ndarray:
        options = self.options
        data = source.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.seen:
            raise _Skip(f"duplicate of {self.seen[digest]}")
        try:
            image = images.open_image(data, source.label, options.max_megapixels, draft_side=options.image_size)
        except images.ImageRejected as error:
            raise _Skip(error.reason) from error
        width, height = image.size
        if min(width, height) < MIN_SIDE:
            raise _Skip(f"too small ({width}×{height})")
        self._count(width * height, source.label)
        self.seen[digest] = source.label
        return images.model_pixels(image, (options.image_size, options.image_size, options.channels))

    def _count(self, pixels: int, label: str) -> None:
        self.pixels_left -= pixels
        if self.pixels_left < 0:
            raise ImportRefused(
                f"The images in {self.where} decode to more than {self.options.max_total_megapixels:,.0f} megapixels in all "
                f"(reached at '{label}'), this server's limit for one import. Shrink the images (about 1,000 pixels "
                "on the longest side is plenty) or import fewer."
            )


def _check_enough(counts: dict[str, int], options: ImportOptions, skipped: list[tuple[str, str]]) -> None:
    for class_name, count in counts.items():
        if count < options.min_images_per_class:
            raise ImportRefused(
                f"The class '{class_name}' has {count} usable image{'s' if count != 1 else ''}; each class needs at least "
                f"{options.min_images_per_class} (some to train on, one or more to test with). Add images or remove the class.",
                skipped,
            )


def _shape(options: ImportOptions) -> str:
    return f"{options.image_size}×{options.image_size}×{options.channels}"


def _budget_note(left_out: dict[str, int], capacity: int, options: ImportOptions) -> str:
    detail = ", ".join(f"{class_name}: {count:,}" for class_name, count in left_out.items())
    return (
        f"To stay within the memory budget ({options.memory_budget_bytes / MB:.1f} MB, room for {capacity:,} images of "
        f"{_shape(options)}), {sum(left_out.values()):,} images were left out, evenly across classes ({detail})."
    )
