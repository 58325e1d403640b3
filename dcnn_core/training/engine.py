"""The one door into training: a run is data going in, plain data coming out.

Every page, the headless CLI, the benchmarks and the tests train through a ``TrainingEngine``:

- ``submit(description)`` → a run id, or ``Refused`` (the server's rules, ``dcnn_core.room.rules``);
- ``observe(run_id, since)`` → what changed since a cursor, and where the run stands (``Observation``);
- ``progress(run_id)`` → the whole picture for drawing (``Progress``);
- ``stop(run_id)``, ``continue_run(run_id, extra_epochs)``, ``delete(run_id)``;
- ``runs(owner)`` → that person's runs as ``RunInfo``.

What comes out holds numbers, strings and lists — never a Keras model, an array of images or a lock —
so the same door works whether runs train in a thread of this process (``dcnn_core.training.engines.local``)
or in worker processes of a Ray cluster (``dcnn_core.training.engines.ray_engine``). The trained model itself is
the results side's business: ``trained(run_id)`` loads it into this process for prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dcnn_core.design.spec import ModelSpec
from dcnn_core.room.rules import RoomPlan, ServerRules
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.description import RunDescription
from dcnn_core.training.progress import ACTIVE_STATES, Progress, Status


@dataclass(frozen=True)
class RunInfo:
    """One run as a list shows it: what it is and how far it got (plain data)."""

    run_id: str
    owner: str
    spec: ModelSpec
    config: TrainConfig
    dataset_ref: dict
    strategy: str
    created_at: float
    status: Status
    message: str
    epoch: int
    epochs: int
    history: dict[str, list[float]]
    test_accuracy: float | None
    elapsed_s: float
    parameters: int | None  # of the trained model; None while none exists (or when only a summary was kept)
    can_continue: bool  # ended with a model that can train on

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dataset_title(self) -> str:
        return str(self.dataset_ref.get("title") or self.dataset_ref.get("key", ""))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def ended(self) -> bool:
        return not self.active

    @property
    def best_val_accuracy(self) -> float | None:
        values = [v for v in self.history.get("val_accuracy", []) if v == v]
        return max(values) if values else None


@dataclass(frozen=True)
class Observation:
    """What changed in a run since a cursor, and where it stands: hand ``cursor`` back to get only what is new."""

    run_id: str
    status: Status
    message: str
    cursor: tuple
    change: dict  # ``ProgressLog.delta``: new batch points and epochs (the whole log when the cursor was stale)


@dataclass(frozen=True)
class RoomState:
    """The whole server's trainings, for the instructor's room view and the pages' refresh pace."""

    computing: int  # trainings holding a turn now
    waiting: int  # trainings waiting for a turn
    running: int  # trainings under way (computing, or between turns)
    slots: int  # trainings that may compute at once


class TrainingEngine(Protocol):
    """What every engine does; see the module's docstring."""

    rules: ServerRules

    def submit(self, description: RunDescription) -> str: ...

    def observe(self, run_id: str, since: tuple | None = None) -> Observation: ...

    def progress(self, run_id: str) -> Progress | None: ...

    def stop(self, run_id: str, reason: str = "") -> bool: ...

    def continue_run(self, run_id: str, extra_epochs: int) -> None: ...

    def delete(self, run_id: str) -> bool: ...

    def runs(self, owner: str | None = None) -> list[RunInfo]: ...

    def run(self, run_id: str) -> RunInfo | None: ...

    def wait(self, run_id: str, timeout: float | None = None) -> bool: ...

    def plan(self, epochs: int) -> RoomPlan: ...

    def room(self) -> RoomState: ...

    def visit(self, owner: str) -> None: ...

    def trained(self, run_id: str): ...

    def share_dataset(self, dataset, reference: dict) -> dict: ...


class UnknownRun(KeyError):
    """No run with this id (never made, deleted, or not this engine's)."""
