"""Admission by cost: a training step over the server's multiply-adds or activation memory per batch is refused before it
runs (and again on Continue), and Stop lands within seconds whatever the design — in training and in the test evaluation."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.data.datasets import Dataset
from dcnn_core.design import plan, spec
from dcnn_core.room.rules import Refused, RoomLimits, ServerRules
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engines.local import LocalEngine
from dcnn_core.training.progress import Status
from dcnn_core.training.runs import RunStore
from tests.helpers import goto, tighten_app_rules

APP = "../app.py"
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 40, "image_size": 16, "colour": False, "seed": 0}}
STOP_S = 5.0  # what the issue promises: Stop and every limit land within this, whatever the design


def _engine(tmp_path, dataset: Dataset, **limits) -> LocalEngine:
    return LocalEngine(RunStore(tmp_path), ServerRules(RoomLimits(**limits)), resolve=lambda reference: dataset)


def _run(design: spec.ModelSpec, owner: str = "ann", batch_size: int = 16, **config) -> RunDescription:
    config = TrainConfig(**{"epochs": 1, "seed": 1, **config, "batch_size": batch_size})
    return RunDescription(design, config, {"key": "shapes"}, owner=owner)


def _cost(design: spec.ModelSpec, dataset: Dataset, batch_size: int) -> plan.BatchCost:
    return plan.batch_cost(plan.analyse(design, dataset.input_shape, dataset.num_classes), batch_size)


def _random_images(count_train: int, count_test: int, side: int, seed: int = 0) -> Dataset:
    """Random colour images: for timing, where what a model learns does not matter."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count_train + count_test, side, side, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, count_train + count_test)
    return Dataset("shapes", "Random", "generated", images[:count_train], labels[:count_train], images[count_train:],
                   labels[count_train:], ("a", "b", "c", "d"), False)  # fmt: skip


def _heavy(filters: int, second_block: int = 0) -> spec.ModelSpec:
    """Convolutions at full resolution before any pooling: the kind of design that makes a training step slow."""
    blocks = [spec.ConvBlock(filters=filters, conv_layers=2)]
    if second_block:
        blocks.append(spec.ConvBlock(filters=second_block))
    return spec.ModelSpec(name="Heavy", blocks=blocks, head=spec.Head(pooling="global_average"))


# --- refused before it runs --------------------------------------------------------------------------------------------


def test_a_design_over_the_multiply_adds_per_batch_is_refused_naming_its_costliest_layer(tmp_path, tiny_shapes):
    design = spec.preset("Simple CNN")
    cost = _cost(design, tiny_shapes, 16)
    engine = _engine(tmp_path, tiny_shapes, max_mult_adds_per_batch=cost.mult_adds - 1)
    with pytest.raises(Refused) as refusal:
        engine.submit(_run(design))
    message = str(refusal.value)
    assert refusal.value.limit == "max_mult_adds_per_batch"
    assert f"Layer '{cost.costliest.name}' ({cost.costliest.block})" in message and "per batch of 16" in message
    assert "smaller batch" in message and "fewer filters" in message
    assert engine.runs("ann") == []  # nothing started, nothing saved
    assert engine.wait(engine.submit(_run(design, batch_size=8)), 120)  # half the batch: within the limit, it trains


def test_a_design_over_the_activation_memory_per_batch_is_refused_naming_its_largest_layer(tmp_path, tiny_shapes):
    design = _heavy(96)  # full-resolution 96-filter outputs: little arithmetic on 16×16, much memory
    cost = _cost(design, tiny_shapes, 64)
    most_mb = 1
    assert cost.activation_bytes > most_mb * 2**20 > _cost(design, tiny_shapes, 4).activation_bytes
    engine = _engine(tmp_path, tiny_shapes, max_activation_mb_per_batch=most_mb)
    with pytest.raises(Refused) as refusal:
        engine.submit(_run(design, batch_size=64))
    assert refusal.value.limit == "max_activation_mb_per_batch"
    assert f"Layer '{cost.largest.name}' ({cost.largest.block})" in str(refusal.value) and "1 MB per batch" in str(refusal.value)
    assert engine.runs("ann") == []


def test_a_design_within_the_cost_limits_trains(tmp_path, tiny_shapes):
    design = spec.preset("Simple CNN")
    cost = _cost(design, tiny_shapes, 16)
    engine = _engine(tmp_path, tiny_shapes, max_mult_adds_per_batch=cost.mult_adds,
                     max_activation_mb_per_batch=-(-cost.activation_bytes // 2**20))  # fmt: skip
    run_id = engine.submit(_run(design))
    assert engine.wait(run_id, 120) and engine.progress(run_id).status == Status.FINISHED


def test_continue_is_checked_against_the_limits_as_they_are_now(tmp_path, tiny_shapes):
    design = spec.preset("Simple CNN")
    cost = _cost(design, tiny_shapes, 16)
    engine = _engine(tmp_path, tiny_shapes, max_mult_adds_per_batch=10 * cost.mult_adds)
    run_id = engine.submit(_run(design))
    assert engine.wait(run_id, 120)
    engine.rules.set_room(dataclasses.replace(engine.rules.limits, max_mult_adds_per_batch=cost.mult_adds // 2), slots=1)
    with pytest.raises(Refused, match=f"Layer '{cost.costliest.name}'") as refusal:
        engine.continue_run(run_id, 1)
    assert refusal.value.limit == "max_mult_adds_per_batch"
    progress = engine.progress(run_id)
    assert progress.status == Status.FINISHED and progress.epoch == 1  # the run as it was: nothing lost, nothing queued
    engine.rules.set_room(dataclasses.replace(engine.rules.limits, max_mult_adds_per_batch=cost.mult_adds), slots=1)
    engine.continue_run(run_id, 1)  # the room allows it again
    assert engine.wait(run_id, 120) and engine.progress(run_id).epoch == 2


# --- Stop lands within seconds --------------------------------------------------------------------------------------------


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _stop_and_time(engine: LocalEngine, run_id: str) -> float:
    asked = time.monotonic()
    assert engine.stop(run_id)
    assert engine.wait(run_id, 120)
    return time.monotonic() - asked


def test_a_costly_design_trains_one_batch_per_call_so_a_stop_lands_within_seconds(tmp_path):
    """Four batches per call of a step this costly would take seconds each call; Stop is seen between calls."""
    data = _random_images(640, 0, 64)
    engine = _engine(tmp_path, data)  # the server's default limits: admitted
    run_id = engine.submit(_run(_heavy(64), batch_size=32, validation_split=0.0))
    _wait_for(lambda: engine.progress(run_id).batch >= 1, 120)  # a call has ended
    asked = engine.progress(run_id).batch
    assert _stop_and_time(engine, run_id) < STOP_S
    progress = engine.progress(run_id)
    assert progress.status == Status.STOPPED and progress.batch <= asked + 1  # the call under way was one batch


def test_a_stop_during_the_test_evaluation_ends_the_run_promptly_keeping_its_model(tmp_path):
    data = _random_images(32, 1500, 64)  # a few training batches, then a long test evaluation (about 10 s or more in one go)
    engine = _engine(tmp_path, data)
    run_id = engine.submit(_run(_heavy(64), validation_split=0.0))
    _wait_for(lambda: engine.progress(run_id).epoch == 1, 120)  # training is over: the evaluation is under way
    assert engine.progress(run_id).status == Status.RUNNING
    assert _stop_and_time(engine, run_id) < STOP_S
    progress = engine.progress(run_id)
    assert progress.status == Status.STOPPED and "test-set evaluation after epoch 1" in progress.message, progress.message
    assert progress.test_accuracy is None and engine.run(run_id).can_continue  # no test figures; its model kept
    assert (engine.store.root / run_id / "model.keras").is_file()


# --- the server's settings and the Model page -----------------------------------------------------------------------------


def test_the_cost_limits_come_from_dcnn_settings_and_zero_means_none():
    from dcnn_core.settings import load_settings

    defaults = RoomLimits.from_settings(load_settings({}))
    assert defaults.max_mult_adds_per_batch == 10_000_000_000 and defaults.max_activation_mb_per_batch == 200
    assert defaults.max_mult_adds_per_batch == RoomLimits().max_mult_adds_per_batch  # the rules' own defaults agree
    set_ = RoomLimits.from_settings(load_settings({"DCNN_MAX_GMAC_PER_BATCH": "2.5", "DCNN_MAX_ACTIVATION_MB_PER_BATCH": "64"}))
    assert set_.max_mult_adds_per_batch == 2_500_000_000 and set_.max_activation_mb_per_batch == 64
    off = RoomLimits.from_settings(load_settings({"DCNN_MAX_GMAC_PER_BATCH": "0", "DCNN_MAX_ACTIVATION_MB_PER_BATCH": "0"}))
    assert off.max_mult_adds_per_batch is None and off.max_activation_mb_per_batch is None
    unreadable = load_settings({"DCNN_MAX_GMAC_PER_BATCH": "lots", "DCNN_MAX_ACTIVATION_MB_PER_BATCH": "much"})
    assert unreadable.max_gmac_per_batch == 10.0 and unreadable.max_activation_mb_per_batch == 200


def test_the_model_page_says_the_design_is_over_the_cost_limit_before_train(monkeypatch):
    page = AppTest.from_file(APP, default_timeout=60)
    page.session_state["dataset_choice"] = dict(TINY_SHAPES)
    page.run()
    goto(page, "model")
    page.selectbox(key="model_preset").set_value("Simple CNN").run()
    assert not [error for error in page.error if "cost limit" in error.value]  # within the server's defaults
    tighten_app_rules(monkeypatch, max_mult_adds_per_batch=1_000_000)
    page.run()
    [error] = [error.value for error in page.error if "cost limit" in error.value]
    assert "batch size of 32" in error and "Layer 'block2_conv1' (Block 2)" in error and "This server allows 0.001 GMAC" in error
