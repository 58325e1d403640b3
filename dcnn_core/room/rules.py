"""Every rule of a shared server, decided in one place.

The pages, the headless client and every training engine ask ``ServerRules``; none decides a limit
itself. A rule that says no raises ``Refused``, whose message names the limit and what to do — the
UI only shows it. ``None`` is the one spelling of "no limit" (an environment variable set to 0 reads
as None).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

from dcnn_core.training.description import RunLimits

MB = 2**20


class Refused(ValueError):
    """Something the server will not do; ``limit`` names the rule, the message says why and what to do."""

    def __init__(self, message: str, limit: str = ""):
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class RoomLimits:
    """Bounds that keep one shared server usable for a whole room (None: no limit)."""

    max_queue: int | None = 60  # active trainings (computing or waiting) in the whole server
    max_runs_per_owner: int | None = 20  # runs one person keeps; delete one to start another
    max_disk_mb_per_owner: int | None = 500  # disk one person's saved runs may take
    max_image_sets_per_owner: int | None = 3  # own image sets one person keeps
    max_imported_models_per_owner: int | None = 3  # .keras models one person imports
    max_disk_mb_total: int | None = 5000  # disk all saved runs on the server may take, whoever owns them
    max_own_images_mb_total: int | None = 800  # memory all own image sets in the server may take (sessions and runs)
    max_parameters: int | None = 5_000_000  # the largest design a run may train
    max_mult_adds_per_batch: int | None = 10_000_000_000  # a training batch's forward multiply-adds (a step does ~3×)
    max_activation_mb_per_batch: int | None = 200  # activations a training batch keeps for its backward pass
    images_per_epoch: int | None = None  # shared server: training images per epoch of a run
    max_epochs: int | None = None  # shared server: epochs per run
    max_train_minutes: int | None = None  # shared server: training time per run

    # The limits an instructor may change while the server runs (always within the server's own).
    ROOM_FIELDS = ("images_per_epoch", "max_epochs", "max_train_minutes", "max_queue", "max_runs_per_owner")

    @classmethod
    def from_settings(cls, settings) -> RoomLimits:
        """The server's limits from its ``Settings``."""
        return cls(
            max_queue=settings.max_queue, max_runs_per_owner=settings.max_runs_per_user,
            max_disk_mb_per_owner=settings.max_disk_mb_per_user, max_image_sets_per_owner=settings.max_image_sets_per_user,
            max_imported_models_per_owner=settings.max_imported_models_per_user, max_parameters=settings.max_parameters,
            max_disk_mb_total=settings.max_disk_mb_total, max_own_images_mb_total=settings.max_own_images_mb_total,
            images_per_epoch=settings.room_images_per_epoch, max_epochs=settings.room_max_epochs,
            max_train_minutes=settings.room_max_train_minutes, max_activation_mb_per_batch=settings.max_activation_mb_per_batch,
            max_mult_adds_per_batch=round(settings.max_gmac_per_batch * 1e9) if settings.max_gmac_per_batch else None,
        )  # fmt: skip

    def within(self, server: RoomLimits) -> None:
        """Refuse any bound looser than the server's own (no limit is looser than every number)."""
        for field in fields(self):
            value, most = getattr(self, field.name), getattr(server, field.name)
            if value is not None and value < 1:
                raise Refused(f"{_label(field.name)} must be 1 or more, or no limit (got {value}).", field.name)
            if most is not None and (value is None or value > most):
                raise Refused(f"{_label(field.name)} must be from 1 to {most} on this server (got {_shown(value)}).", field.name)


@dataclass(frozen=True)
class Usage:
    """What one person holds on the server now, and how busy the server is: what the rules are checked against."""

    active_runs: int = 0  # this person's trainings computing or waiting
    runs_kept: int = 0  # this person's runs, ended ones included
    disk_bytes: int = 0  # this person's saved runs on disk
    server_active: int = 0  # trainings computing or waiting in the whole server
    server_disk_bytes: int = 0  # every saved run on the server's disk


@dataclass(frozen=True)
class RoomPlan:
    """What a run started now may do: its limits, its epochs, and one line for the attendee (empty for a lone user)."""

    limits: RunLimits
    epochs: int
    line: str


class ServerRules:
    """The server's rules: the limits from its settings, tightened by the instructor for a session."""

    def __init__(self, limits: RoomLimits | None = None, slots: int = 1):
        self.server_limits = limits or RoomLimits()
        self.max_slots = slots
        self._lock = threading.Lock()
        self._limits = self.server_limits
        self._slots = slots

    @property
    def limits(self) -> RoomLimits:
        with self._lock:
            return self._limits

    @property
    def slots(self) -> int:
        with self._lock:
            return self._slots

    def set_room(self, limits: RoomLimits, slots: int) -> None:
        """The instructor's limits for this session, within the server's (``Refused`` otherwise); new runs follow them."""
        limits.within(self.server_limits)
        if not 1 <= slots <= self.max_slots:
            raise Refused(f"Trainings computing at once must be from 1 to {self.max_slots} on this server (got {slots}).", "slots")
        with self._lock:
            self._limits, self._slots = limits, slots

    # --- trainings -------------------------------------------------------------------------------

    def check_train(self, usage: Usage, new_run: bool) -> None:
        """A Start (``new_run``) or a Continue: one training per person, the queue, runs kept, disk."""
        limits = self.limits
        if usage.active_runs:
            raise Refused("You already have a training running (perhaps in another tab): stop it first, or wait for it to end.",
                          "one training per person")  # fmt: skip
        if limits.max_queue is not None and usage.server_active >= limits.max_queue:
            raise Refused(f"The server is training {usage.server_active} models, its limit: try again in a minute.", "max_queue")
        if new_run and limits.max_runs_per_owner is not None and usage.runs_kept >= limits.max_runs_per_owner:
            raise Refused(f"You have {usage.runs_kept} runs, the most this server keeps per person: "
                          "delete one in Your runs to start another.", "max_runs_per_owner")  # fmt: skip
        most = limits.max_disk_mb_per_owner
        if most is not None and usage.disk_bytes > most * MB:
            raise Refused(f"Your saved runs take {usage.disk_bytes / MB:.0f} MB on this server, the most it keeps per person "
                          f"({most} MB): delete a run in Your runs to start another.", "max_disk_mb_per_owner")  # fmt: skip
        most = limits.max_disk_mb_total
        if most is not None and usage.server_disk_bytes > most * MB:
            raise Refused(f"The server's disk for saved runs is full ({most} MB for the whole room): delete a run you no longer "
                          "need in Your runs, or ask the organiser to make room.", "max_disk_mb_total")  # fmt: skip

    def plan_run(self, epochs: int, shared: bool) -> RoomPlan:
        """The limits of a run started now: none for a lone user; the room's when the server is shared."""
        if not shared:
            return RoomPlan(RunLimits(), epochs, "")
        room = self.limits
        minutes = room.max_train_minutes
        limits = RunLimits(images_per_epoch=room.images_per_epoch, max_compute_s=minutes * 60.0 if minutes else None,
                           max_epochs=room.max_epochs)  # fmt: skip
        if room.max_epochs is not None:
            epochs = min(epochs, room.max_epochs)
        line = f"This server is shared with the room: each run trains {limits.describe()}." if limits.describe() else ""
        return RoomPlan(limits, epochs, line)

    @property
    def max_parameters(self) -> int | None:
        return self.limits.max_parameters

    def check_design(self, spec, input_shape: tuple[int, int, int], num_classes: int, batch_size: int | None = None) -> None:
        """A design that cannot be built for the data, or is larger than the server allows, is refused before it trains;
        with ``batch_size``, one whose training step costs more than the server allows too (``check_cost``)."""
        from dcnn_core.design import plan

        analysis = plan.analyse(spec, input_shape, num_classes, self.max_parameters)
        if not analysis.ok:
            raise Refused(f"This design cannot be trained: {analysis.error} Change it on the Model page.", "design")
        if batch_size is not None:
            self.check_cost(analysis, batch_size)

    def check_cost(self, analysis, batch_size: int) -> None:
        """A training step over the server's multiply-adds or activation memory per batch is refused, naming the costliest layer.

        Nothing can interrupt a step: the limits keep one to a second or two on a 2-core server (BENCHMARKS.md,
        "Admission by cost"), so that Stop and every limit land within seconds, and its memory stays bounded.
        """
        from dcnn_core.design import plan

        cost, limits = plan.batch_cost(analysis, batch_size), self.limits
        advice = "use fewer filters, a stride of 2 or pooling earlier, smaller images, or a smaller batch."
        most = limits.max_mult_adds_per_batch
        if most is not None and cost.mult_adds > most:
            layer = cost.costliest
            raise Refused(f"Layer '{layer.name}' ({layer.block}) needs {_amount(layer.mult_adds * batch_size / 1e9)} GMAC per batch "
                          f"of {batch_size}; the whole design {_amount(cost.mult_adds / 1e9)} GMAC (billion multiply-adds), and a "
                          f"training step about {plan.TRAINING_PASSES}× that. This server allows {_amount(most / 1e9)} GMAC per "
                          f"batch: {advice}", "max_mult_adds_per_batch")  # fmt: skip
        most = limits.max_activation_mb_per_batch
        if most is not None and cost.activation_bytes > most * MB:
            layer = cost.largest
            raise Refused(f"Layer '{layer.name}' ({layer.block}) keeps {_amount(cost.largest_bytes / MB)} MB of activations per batch "
                          f"of {batch_size} for the backward pass; the whole design {_amount(cost.activation_bytes / MB)} MB. This "
                          f"server allows {most} MB per batch: {advice}", "max_activation_mb_per_batch")  # fmt: skip

    # --- what a person keeps in a session ----------------------------------------------------------

    def check_image_sets(self, kept: int) -> None:
        """Before importing another own image set."""
        most = self.limits.max_image_sets_per_owner
        if most is not None and kept >= most:
            raise Refused(f"You have the most this server keeps per person: {_count(most, 'image set')} in a session. "
                          "Remove one under Your image sets in this session to import another. Nothing was changed.",
                          "max_image_sets_per_owner")  # fmt: skip

    def check_own_images(self, held_bytes: int, new_bytes: int) -> None:
        """Before the server holds another own image set in memory (``held_bytes``: all such sets held now)."""
        most = self.limits.max_own_images_mb_total
        if most is not None and held_bytes + new_bytes > most * MB:
            raise Refused(f"The server's memory for the room's own images is full ({most} MB in all; yours needs "
                          f"{max(1, round(new_bytes / MB))} MB): try fewer or smaller images, or again when others have "
                          "finished. Nothing was changed.", "max_own_images_mb_total")  # fmt: skip

    def check_imported_models(self, kept: int) -> None:
        """Before importing another ``.keras`` model."""
        most = self.limits.max_imported_models_per_owner
        if most is not None and kept >= most:
            raise Refused(f"You have imported the most this server keeps per person: {_count(most, 'model')} in a session. "
                          "Imported models last as long as this browser tab: reload the page to forget them (your trained runs "
                          "stay).", "max_imported_models_per_owner")  # fmt: skip


def _label(name: str) -> str:
    return name.replace("_", " ").replace("mb", "MB").capitalize()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


def _shown(value: int | None) -> str:
    return "no limit" if value is None else str(value)


def _amount(value: float) -> str:
    """3 significant digits ("4.1", "0.0123", "12.8"), whole numbers from 100 ("1,234")."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
