"""How much work one call into TensorFlow may do, so that Stop, turns and every limit are seen within about a second.

Nothing is checked inside a call: Stop, the end of a turn and the room's time limit are seen between calls.
Four batches of a small design take milliseconds; of a design near the server's cost limit, seconds each. So
the batches per call and the images per evaluation batch come from the design's estimated step time: plain
arithmetic on its cost (``plan.batch_cost``), with seconds per unit measured on a 2-core server with one
TensorFlow thread (BENCHMARKS.md, "Admission by cost": ``python bench/step_cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dcnn_core.design import plan

# A training step's seconds ≈ its batch's forward GMAC × SECONDS_PER_GMAC + the GiB of activations it keeps ×
# SECONDS_PER_GIB. Measured: ~0.09 s per GMAC and ~3 s per GiB for plain convolutions, ~5.6 s per GiB for
# depthwise ones (memory-bound); rounded up, so that a busy machine is covered too.
SECONDS_PER_GMAC = 0.12
SECONDS_PER_GIB = 6.0
# Batches Keras runs per call into TensorFlow (``steps_per_execution``) at most: less Python per batch, which matters in
# a room, where every training's loop shares the interpreter with the web server.
MOST_BATCHES_PER_CALL = 4
# The estimated work of one call: about a turn (the scheduler's slice). Estimates run high (small designs' tensors stay in
# the cache: 2-5× for the 28-px presets), so a call takes about this or less, and 3-4× as long on a busy machine at worst.
CALL_S = 1.0
# An image's forward pass, called eagerly as the evaluation does, costs this share of its part of a training step
# (a third in theory; measured 0.26-0.63 for designs near the cost limit, on a busy machine): evaluation batches are sized with it.
FORWARD_SHARE = 0.67
MOST_EVALUATION_BATCH = 256  # images per evaluation call for a small design (fewer calls, less Python per image)


@dataclass(frozen=True)
class Pace:
    """How a run's work is cut into calls."""

    step_s: float | None  # estimated seconds of one training step (None: the design has no cost)
    batches_per_call: int  # training batches per call (Keras's ``steps_per_execution``)
    evaluation_batch: int  # images per evaluation batch (forward passes only), about CALL_S of work


def step_seconds(cost: plan.BatchCost) -> float:
    """Estimated seconds of one training step of this batch on the measured server (one TensorFlow thread)."""
    return cost.mult_adds / 1e9 * SECONDS_PER_GMAC + cost.activation_bytes / 2**30 * SECONDS_PER_GIB


def of(job) -> Pace:
    """A run's pace, from its design, its data's shape and its batch size.

    One batch per call for a pretrained backbone (slow, and its cost is its own) and for distributed training
    (its collectives go per step).
    """
    one = job.distribution is not None or getattr(job.spec, "backbone", None) is not None
    return pace(job.spec, job.dataset, job.config.batch_size, 1 if one else MOST_BATCHES_PER_CALL)


def pace(spec, dataset, batch_size: int, most_per_call: int) -> Pace:
    """Batches per call (up to ``most_per_call``) and evaluation images per call, each about ``CALL_S`` of work."""
    analysis = plan.analyse(spec, dataset.input_shape, dataset.num_classes)
    most_images = max(MOST_EVALUATION_BATCH, batch_size)
    if not analysis.ok:
        return Pace(None, most_per_call, most_images)
    step_s = step_seconds(plan.batch_cost(analysis, batch_size))
    if step_s <= 0:
        return Pace(step_s, most_per_call, most_images)
    per_call = max(1, min(most_per_call, int(CALL_S / step_s)))
    # Validation runs ``per_call`` of these per call: more than one only for a design whose steps are short anyway.
    images = max(1, min(most_images, int(CALL_S * batch_size / (FORWARD_SHARE * step_s))))
    return Pace(step_s, per_call, images)
