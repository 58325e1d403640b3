"""Training planned to a time budget: how many epochs fit, and a learning rate that reaches zero when time is up.

A fixed epoch count is a guess made before anyone knows how fast this machine trains this design: too
few epochs waste the minutes the learner was willing to wait, too many cut the run off before its
schedule has settled (a cosine schedule cut halfway still trains at half its rate). A budget turns
the question around: time the first batches, count the epochs that fit in what is left, and decay
the rate per batch so that it reaches zero at the end of the last of them. The plan is made again
at every epoch's end from that epoch's measured time (validation included), so a machine that gets
busier or faster moves the end, not the budget.

Nothing here imports TensorFlow: the worker feeds the plan batch counts and seconds of computing
(``lifecycle``), and a test can feed it a fake clock.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

BUDGET_MINUTES = (1, 2, 5)  # what the Train page offers; any positive number of seconds is valid
MOST_EPOCHS = 200  # a budget run's epoch cap before its plan (the room's epoch limit cuts it further)
WARMUP_EPOCHS = 0.5  # the rate rises linearly over the first half epoch (at most a tenth of the plan)
MEASURE_BATCHES = 8  # time at least this many batches after the first report (which includes tracing)
MEASURE_S = 1.0  # ... and at least this many seconds
FORWARD_SHARE = 1 / 3  # an image's forward pass costs about a third of its training step (backward ≈ 2× forward)
TEST_OVERHEAD_S = 0.5  # building the prediction function for the test evaluation
CONTINUE_SCALE = 0.1  # a continued budget run trains its extra epochs from a tenth of the peak rate down to zero


@dataclass
class BudgetPlan:
    """One training session's plan: epochs that fit into ``budget_s`` seconds of computing, and the rate per batch.

    ``fixed_epochs`` (a continued session) skips the timing: its epochs are known, only the rate is planned.
    """

    budget_s: float | None  # seconds of computing for this session (build, fit, test evaluation); None: no time limit
    batches_per_epoch: int
    batch_size: int
    validation_images: int
    test_images: int
    most_epochs: int  # the cap: the config's epochs, already cut by the room's epoch limit
    start_epoch: int = 0  # epochs done when this session began
    fixed_epochs: int | None = None
    epochs: int | None = None  # planned (epochs in all, counting from 0), None until the first batches are timed
    seconds_per_image: float | None = None  # training, measured
    _first: tuple[int, float] | None = None  # (step, compute seconds) at the first report: tracing is behind us
    _epoch_times: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.fixed_epochs is not None:
            self.epochs = min(self.most_epochs, self.start_epoch + self.fixed_epochs)

    @property
    def planned(self) -> bool:
        return self.epochs is not None

    @property
    def continued(self) -> bool:
        return self.start_epoch > 0 and self.fixed_epochs is not None

    # --- timing --------------------------------------------------------------------------------

    def on_batches(self, step: int, compute_s: float) -> bool:
        """A batch report at global ``step`` (batches done since epoch 0) after ``compute_s`` seconds; True when it planned."""
        if self.planned or self.budget_s is None:
            return False
        if self._first is None or (step - 1) // self.batches_per_epoch != (self._first[0] - 1) // self.batches_per_epoch:
            self._first = (step, compute_s)  # the first report (tracing behind it), or a new epoch (validation behind it)
            return False
        batches, seconds = step - self._first[0], compute_s - self._first[1]
        if batches < MEASURE_BATCHES or seconds < MEASURE_S:
            return False
        self.seconds_per_image = seconds / (batches * self.batch_size)
        self._plan(step, compute_s, self.epoch_s_estimate())
        return True

    def on_epoch(self, epochs_done: int, epoch_s: float, compute_s: float) -> bool:
        """An epoch ended after ``epoch_s`` seconds of computing (its validation included): plan again; True to stop now."""
        if self.budget_s is not None and self.fixed_epochs is None:
            untimed = self.seconds_per_image is None  # the first epoch was too short to time its batches
            self._epoch_times.append(epoch_s)
            timed = untimed or len(self._epoch_times) > 1  # the first epoch also traced validation: its batches tell better
            self._plan(epochs_done * self.batches_per_epoch, compute_s,
                       typical_epoch_s(self._epoch_times) if timed else self.epoch_s_estimate())  # fmt: skip
            if untimed and len(self._epoch_times) == 1 and not self.over(compute_s):
                self.epochs = max(self.epochs, min(self.most_epochs, epochs_done + 1))  # time a second epoch, free of tracing
        return self.epochs is not None and epochs_done >= self.epochs

    def epoch_s_estimate(self) -> float:
        """Seconds per epoch from the timed batches: training, plus the validation pass at a third of the cost per image."""
        per_image = self.seconds_per_image or 0.0
        return per_image * (self.batches_per_epoch * self.batch_size + FORWARD_SHARE * self.validation_images)

    def reserve_s(self) -> float:
        """Seconds kept for the test evaluation after the last epoch."""
        return TEST_OVERHEAD_S + FORWARD_SHARE * self.test_images * (self.seconds_per_image or 0.0)

    def _plan(self, step: int, compute_s: float, epoch_s: float) -> None:
        current, into = divmod(step, self.batches_per_epoch)
        images = self.batches_per_epoch * self.batch_size + FORWARD_SHARE * self.validation_images
        if self.seconds_per_image is None and into == 0 and epoch_s > 0:
            self.seconds_per_image = epoch_s / images  # too few batches to time before the first epoch ended
        left = self.budget_s - compute_s - self.reserve_s()
        finishing = current + (1 if into else 0)  # epochs done once the one in progress ends
        finish_current = (1 - into / self.batches_per_epoch) * epoch_s if into else 0.0
        more = math.floor((left - finish_current) / epoch_s) if epoch_s > 0 else 0
        self.epochs = max(self.start_epoch + 1, finishing, min(self.most_epochs, finishing + max(0, more)))

    def over(self, compute_s: float) -> bool:
        """Whether the budget is spent (the test evaluation's share included): stop after the batches in progress."""
        return self.budget_s is not None and compute_s >= self.budget_s - self.reserve_s()

    def left_s(self, compute_s: float) -> float | None:
        return None if self.budget_s is None else max(0.0, self.budget_s - compute_s)

    # --- the rate ------------------------------------------------------------------------------

    def rate(self, peak: float, step: int) -> float:
        """The rate for global ``step``: a linear warm-up, then a cosine to zero at the plan's last batch.

        Before the plan exists, the warm-up runs and the peak is held. A continued session starts at a
        tenth of the peak, without warm-up, and decays to zero over its extra epochs.
        """
        start = self.start_epoch * self.batches_per_epoch
        done = max(0, step - start)
        total = None if self.epochs is None else max(1, (self.epochs - self.start_epoch) * self.batches_per_epoch)
        if self.continued:
            return peak * CONTINUE_SCALE * _cosine(done / total)
        warmup = max(1.0, WARMUP_EPOCHS * self.batches_per_epoch)
        if total is not None:
            warmup = max(1.0, min(warmup, 0.1 * total))
        if done < warmup:
            return peak * (done + 1) / warmup
        if total is None:
            return peak
        return peak * _cosine((done - warmup) / max(1.0, total - warmup))


def typical_epoch_s(times: list[float]) -> float:
    """An epoch's seconds for planning: the median of the last three, the first left out once there are others.

    The first epoch also traces the training and validation functions; one slow epoch on a shared machine
    should not cut the plan by half.
    """
    usable = times[1:] if len(times) > 1 else times
    return statistics.median(usable[-3:])


def _cosine(fraction: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, fraction))))


def effective_budget_s(budget_s: float | None, room_limit_s: float | None) -> float | None:
    """The budget a run gets: the user's, capped by the room's training time per run (either may be absent)."""
    limits = [value for value in (budget_s, room_limit_s) if value]
    return min(limits) if limits else None


def describe_budget(seconds: float) -> str:
    """'1 min', '2 min', '90 s' — the budget in words for the Train page and the run's messages."""
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


BACKBONE_SHARE = 0.5  # a pretrained backbone's first phase plans to half the budget; fine-tuning has its fixed epochs


def session_plan(config, *, epochs_done: int, end: int, batches_per_epoch: int, validation_images: int, test_images: int,
                 room_limit_s: float | None, backbone: bool = False) -> BudgetPlan | None:  # fmt: skip
    """The plan of a budgeted run's training session (``config``: its ``TrainConfig``), or None without a budget.

    The first session plans its epochs to the budget (capped by the room's training time per run); a continued
    session trains the extra epochs it was given, its rate decaying from a tenth of the peak to zero.
    """
    if config.budget_s is None:
        return None
    shape = dict(batches_per_epoch=max(1, batches_per_epoch), batch_size=config.batch_size, validation_images=validation_images,
                 test_images=test_images, most_epochs=end, start_epoch=epochs_done)  # fmt: skip
    if epochs_done > 0:
        return BudgetPlan(None, fixed_epochs=end - epochs_done, **shape)
    seconds = effective_budget_s(config.budget_s, room_limit_s)
    return BudgetPlan(seconds * BACKBONE_SHARE if backbone else seconds, **shape)
