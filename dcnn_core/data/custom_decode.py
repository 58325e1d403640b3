"""Turn the grouped files of an import into a Dataset: decoded, within budget, split.

Classes are decoded in turn, one usable image each, until the memory budget is full, so
they stay as even as they can (a seeded random order when only some will fit). Each file
is decoded safely through ``images``: duplicates, images too small and files that are not
images are skipped with the reason; the pixels decoded by the whole import are capped.
Then every class is checked to have enough images, and the stratified split is made.
"""

from __future__ import annotations

import hashlib
from collections import deque

import numpy as np

from dcnn_core.data import datasets, images
from dcnn_core.data.custom_options import MB, ImportOptions, ImportRefused, ImportReport, Origin, Skip, Source

MIN_SIDE = 8  # pixels; smaller images carry too little to learn from


def build(
    groups: dict[str, list[Source]], options: ImportOptions, origin: Origin, skipped: list[tuple[str, str]], notes: list[str]
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


def _check_class_count(groups: dict[str, list[Source]], where: str, options: ImportOptions) -> list[str]:
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


def _order(sources: list[Source], shuffle: bool, seed: int) -> list[Source]:
    """Name order; a seeded random order when only some will fit, so no folder position is favoured."""
    ordered = sorted(sources, key=lambda source: source.label)
    if shuffle:
        ordered = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    return ordered


def _decode_round_robin(
    queues: list[deque[Source]], capacity: int, decoder: _Decoder, skipped: list[tuple[str, str]]
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


def _next_usable(queue: deque[Source], decoder: _Decoder, skipped: list[tuple[str, str]]):
    while queue:
        source = queue.popleft()
        try:
            return decoder.load(source)
        except Skip as reason:
            skipped.append((source.label, str(reason)))
    return None


class _Decoder:
    """Decodes one import's images: duplicates skipped, every decoded pixel counted against the import's budget."""

    def __init__(self, options: ImportOptions, where: str):
        self.options, self.where = options, where
        self.seen: dict[str, str] = {}  # sha-256 of a file's bytes → the first file with them
        self.pixels_left = options.max_total_megapixels * 1_000_000

    def load(self, source: Source) -> np.ndarray:
        options = self.options
        data = source.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.seen:
            raise Skip(f"duplicate of {self.seen[digest]}")
        try:
            image = images.open_image(data, source.label, options.max_megapixels, draft_side=options.image_size)
        except images.ImageRejected as error:
            raise Skip(error.reason) from error
        width, height = image.size
        if min(width, height) < MIN_SIDE:
            raise Skip(f"too small ({width}×{height})")
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
