"""Runs persist: save, reload as after a restart, predict the same, continue training."""

import numpy as np
import pytest

from dcnn_core.data import datasets
from dcnn_core.design import spec
from dcnn_core.results.evaluation import predict_probabilities
from dcnn_core.training import job as training
from dcnn_core.training import runs
from dcnn_core.training.config import Augmentation, TrainConfig, schedule_preview
from dcnn_core.training.registry import JobRegistry

SHAPES_REF = {"key": "shapes", "options": {"count_per_class": 30, "image_size": 16, "seed": 1}}


def _train(dataset, config, store=None, name="Simple CNN", reference=None, owner="owner-a"):
    reference = {**(reference or SHAPES_REF), "title": dataset.title}
    job = training.TrainingJob(training.RunDescription(spec.preset(name), config, reference, owner=owner), dataset)
    if store is not None:
        job.on_end = store.save
    job.run()
    return job


def test_a_run_round_trips_through_disk_and_continues(tiny_shapes, tmp_path):
    store = runs.RunStore(tmp_path / "runs")
    job = _train(tiny_shapes, TrainConfig(epochs=2, batch_size=16, seed=4), store)
    assert job.status == training.FINISHED
    assert (tmp_path / "runs" / job.job_id / "model.keras").exists()

    # A server restart: a fresh store reads the folder back.
    records = runs.RunStore(tmp_path / "runs").load_all()
    assert [record.run_id for record in records] == [job.job_id]
    record = records[0]
    assert record.owner == "owner-a" and record.status == "finished"
    assert record.history["loss"] == pytest.approx(job.snapshot().history["loss"])
    assert record.test_accuracy == pytest.approx(job.snapshot().test_accuracy)
    assert record.has_best_model

    restored = runs.restore_job(record, tiny_shapes)
    before = predict_probabilities(job.model, tiny_shapes.x_test[:8])
    assert np.allclose(predict_probabilities(restored.model, tiny_shapes.x_test[:8]), before, atol=1e-5)

    restored.on_end = store.save
    restored.prepare_continue(1)
    restored.run()
    progress = restored.snapshot()
    assert progress.status == training.FINISHED and progress.epoch == 3
    assert len(progress.history["loss"]) == 3
    assert runs.RunStore(tmp_path / "runs").load_all()[0].history["loss"].__len__() == 3


def test_unreadable_run_folders_are_skipped(tmp_path, tiny_shapes):
    root = tmp_path / "runs"
    (root / "abcdef123456").mkdir(parents=True)
    (root / "abcdef123456" / "run.json").write_text("{not json")
    (root / "..hidden").mkdir()
    assert runs.RunStore(root).load_all() == []


def test_delete_refuses_paths(tmp_path):
    with pytest.raises(ValueError):
        runs.RunStore(tmp_path).delete("../../etc")


def test_early_stopping_restores_the_best_weights(tiny_shapes):
    # A large learning rate makes validation loss rise after the first epochs.
    config = TrainConfig(epochs=30, batch_size=16, learning_rate=0.03, optimizer="sgd", early_stopping=True, patience=2, seed=2)
    job = _train(tiny_shapes, config)
    progress = job.snapshot()
    assert progress.status == training.FINISHED
    assert progress.epoch < 30, "early stopping never triggered"
    assert progress.epoch - progress.best_epoch == 2
    assert "best epoch" in progress.message
    # The model in hand carries the best epoch's weights.
    for kept, best in zip(job.model.get_weights(), job.best_weights, strict=True):
        assert np.array_equal(kept, best)


def test_schedules_are_recorded_and_previewed(tiny_shapes):
    config = TrainConfig(epochs=4, batch_size=32, schedule="step", step_every=2, step_factor=0.5, learning_rate=0.01)
    assert schedule_preview(config) == pytest.approx([0.01, 0.01, 0.005, 0.005])
    job = _train(tiny_shapes, config)
    assert job.snapshot().history["learning_rate"] == pytest.approx([0.01, 0.01, 0.005, 0.005])
    assert all(v > 0 for v in job.snapshot().history["images_per_s"])
    cosine = schedule_preview(TrainConfig(epochs=10, schedule="cosine", learning_rate=1.0))
    assert cosine[0] == 1.0 and all(a > b for a, b in zip(cosine, cosine[1:], strict=False))


def test_augmentation_and_class_weights_train(tiny_shapes):
    from dcnn_core.training.pipeline import augment_preview, balanced_class_weights

    augmentation = Augmentation(flip=True, rotation=0.1, zoom=0.1, shift=0.1, contrast=0.2)
    previews = augment_preview(tiny_shapes.x_train[:2], augmentation, copies=4, seed=0)
    assert previews.shape == (8, 16, 16, 1) and previews.dtype == np.uint8
    assert not np.array_equal(previews[0], previews[1])  # copies differ
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[2] == 1.0
    job = _train(tiny_shapes, TrainConfig(epochs=1, batch_size=16, augmentation=augmentation, class_weights=True))
    assert job.status == training.FINISHED


def test_idle_jobs_are_stopped(digits):
    registry = JobRegistry(max_concurrent=1, idle_stop_s=None)
    job = registry.submit(training.TrainingJob(spec.preset("Simple CNN"), digits, TrainConfig(epochs=50, batch_size=8)))
    registry.idle_stop_s = 60
    job.last_seen -= 120
    assert registry.stop_idle() == [job]
    assert job.wait(15)
    assert "nobody had looked at it for 1 min" in job.snapshot().message


def test_training_config_json_errors_name_the_field():
    with pytest.raises(ValueError, match="Unknown field"):
        TrainConfig.from_dict({"epochs": 3, "colour": 1})
    with pytest.raises(ValueError, match="validation split above 0"):
        TrainConfig.from_dict({"early_stopping": True, "validation_split": 0})


def test_idle_ended_runs_leave_memory_only_when_saved(tiny_shapes, tmp_path):
    store = runs.RunStore(tmp_path / "runs")
    registry = JobRegistry(max_concurrent=1)
    saved = _train(tiny_shapes, TrainConfig(epochs=1, batch_size=32), store)
    unsaved = _train(tiny_shapes, TrainConfig(epochs=1, batch_size=32))
    for job in (saved, unsaved):
        registry.add_ended(job)
        job.last_seen -= 3600
    registry.idle_stop_s = 60
    registry.on_evict = lambda job: (store.root / job.job_id).is_dir()
    assert registry.evict_idle() == [saved]
    assert registry.get(saved.job_id) is None and registry.get(unsaved.job_id) is unsaved


@pytest.mark.parametrize(
    "content",
    ["null", "[]", '"text"', "{not json", '{"format": "dcnn-studio-run", "dataset": 3}'],
    ids=["null", "list", "string", "broken", "bad-dataset"],
)
def test_damaged_run_files_are_skipped_not_raised(tmp_path, content):
    folder = tmp_path / "runs" / "abcdef123456"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(content)
    assert runs.RunStore(tmp_path / "runs").load_all() == []


def test_a_saved_run_that_claims_to_be_running_is_refused(tiny_shapes, tmp_path):
    import json

    store = runs.RunStore(tmp_path / "runs")
    job = _train(tiny_shapes, TrainConfig(epochs=1, batch_size=32), store)
    record_file = tmp_path / "runs" / job.job_id / "run.json"
    data = json.loads(record_file.read_text())
    record_file.write_text(json.dumps(data | {"status": "running"}))
    assert store.load_all() == []  # it would otherwise come back as a training that never ends


def test_eviction_refused_by_the_callback_keeps_the_run(tiny_shapes):
    registry = JobRegistry(max_concurrent=1)
    job = _train(tiny_shapes, TrainConfig(epochs=1, batch_size=32))
    registry.add_ended(job)
    job.last_seen -= 3600
    registry.idle_stop_s = 60
    registry.on_evict = lambda evicted: False
    assert registry.evict_idle() == [] and registry.get(job.job_id) is job


def _own_images() -> datasets.Dataset:
    """A user's own set, as dcnn_core.data.custom_data makes it: key 'custom:<name>', referred to as {"key": "custom"}."""
    shapes = datasets.load_shapes(count_per_class=20, image_size=16, seed=9)
    return datasets.make_dataset("custom:pets", "pets", "Your own images (zip): 120 images in 6 classes", shapes.x_train,
                                 shapes.y_train, shapes.x_test, shapes.y_test, shapes.class_names, False)  # fmt: skip


def test_a_run_on_own_images_is_predicted_with_and_continued_after_a_restart(tmp_path):
    pets = _own_images()
    store = runs.RunStore(tmp_path / "runs")
    job = _train(pets, TrainConfig(epochs=1, batch_size=32, seed=1), store, reference={"key": "custom", "options": {"name": "pets"}})
    assert job.status == training.FINISHED
    assert (tmp_path / "runs" / job.job_id / runs.DATA_FILE).is_file()

    fresh = runs.RunStore(tmp_path / "runs")  # a restart: the user's session, and their images in it, are gone
    [record] = fresh.load_all()
    restored = runs.restore_job(record, fresh.load_images(record))
    before = predict_probabilities(job.model, pets.x_test)
    assert np.allclose(predict_probabilities(restored.model, restored.dataset.x_test), before, atol=1e-5)
    assert restored.dataset.class_names == pets.class_names and restored.dataset.title == "pets"

    restored.on_end = fresh.save
    restored.prepare_continue(1)
    restored.run()
    assert restored.snapshot().epoch == 2
    [again] = runs.RunStore(tmp_path / "runs").load_all()
    assert again.has_saved_images and np.array_equal(fresh.load_images(again).x_train, pets.x_train)  # kept when saved again


# --- the app: owner tokens, runs restored after a restart or an eviction, read-only share links ---------

OWNER = "0123456789abcdef0123456789abcdef"


def _app(monkeypatch, page: str = "train", **query):
    from streamlit.testing.v1 import AppTest

    from tests.test_app_pages import APP, TIMEOUT

    monkeypatch.setenv("DCNN_OFFLINE", "1")  # no download attempt for the default data set
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page == "home":  # AppTest keeps the sidebar's frame only on the first page it runs
        return at
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _plant(store: runs.RunStore, dataset, reference: dict, owner: str = OWNER, history: dict | None = None) -> str:
    """A saved run without a model, as if trained earlier by ``owner``."""
    import dataclasses

    job = training.TrainingJob(training.RunDescription(spec.preset("Simple CNN"), TrainConfig(epochs=2), reference, owner=owner), dataset)
    store.save(job, dataclasses.replace(job.snapshot(), status=training.FINISHED, message="Finished.", history=history or {}))
    return job.job_id


@pytest.mark.parametrize("token", ["abcdef123456", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef0"])
def test_only_a_full_owner_token_opens_someone_s_runs(monkeypatch, token):
    at = _app(monkeypatch, page="home", user=token)
    owner = at.session_state["owner_id"]
    assert owner != token and len(owner) == 32 and int(owner, 16) >= 0
    assert at.query_params["user"] == owner  # the address now holds the new key
    assert any("address is the key to your runs" in caption.value for caption in at.sidebar.caption)
    assert _app(monkeypatch, page="home", user=OWNER).session_state["owner_id"] == OWNER


def test_runs_on_own_images_come_back_after_a_restart_and_an_eviction_and_can_be_deleted(monkeypatch):
    from ui import resources

    store = resources.run_store()
    pets = _own_images()
    reference = {"key": "custom", "options": {"name": "pets"}}
    kept = _train(pets, TrainConfig(epochs=1, batch_size=32), store, reference=reference, owner=OWNER)
    big = _plant(runs.RunStore(store.root, max_data_bytes=0), pets, {**reference, "title": "pets"})  # its images over the cap
    resources.engine.clear()  # a restart: runs are read from disk again

    at = _app(monkeypatch, user=OWNER)
    assert at.session_state["job_ids"] == [kept.job_id, big]
    registry = resources.engine().registry
    restored = registry.get(kept.job_id)
    assert restored is not kept and restored.model is not None  # predicted with again, on its own images
    assert np.array_equal(restored.dataset.x_test, pets.x_test)
    assert registry.get(big).model is None  # a summary: listed and deletable

    restored.last_seen -= 10**6  # idle: the reaper takes it out of memory (the real on_evict: back to disk)
    assert registry.evict_idle() == [restored] and registry.get(kept.job_id) is None
    at.run()
    back = registry.get(kept.job_id)
    assert back is not None and back is not restored and back.model is not None

    at.selectbox(key="train_run_pick").set_value(big).run()
    at.button(key="train_show_run").click().run()
    assert any("were not saved" in box.value for box in [*at.success, *at.info])  # its outcome says its images are gone
    assert any(code.value.endswith(f"?view={big}") for code in at.code)  # its read-only link
    at.button(key="train_delete_run").click().run()
    assert not at.exception
    assert not (store.root / big).exists() and registry.get(big) is None
    assert at.session_state["job_ids"] == [kept.job_id]


def _values(plotly_array) -> list[float]:
    """A Plotly trace's values, whether sent as a list or packed as binary (numpy arrays)."""
    import base64

    if isinstance(plotly_array, dict):
        return np.frombuffer(base64.b64decode(plotly_array["bdata"]), dtype=plotly_array["dtype"]).tolist()
    return list(plotly_array)


def test_a_share_link_shows_one_run_read_only(monkeypatch, tiny_shapes):
    from ui import resources

    history = {"loss": [1.5, 0.75], "accuracy": [0.4, 0.7], "val_loss": [1.25, 0.5], "val_accuracy": [0.5, 0.8],
               "learning_rate": [0.001, 0.001], "images_per_s": [100.0, 110.0]}  # fmt: skip
    run_id = _plant(resources.run_store(), tiny_shapes, {**SHAPES_REF, "title": "Shapes"}, owner="f" * 32, history=history)
    at = _app(monkeypatch, view=run_id)
    assert [title.value for title in at.title] == ["A shared run"]
    assert "Simple CNN" in " ".join(md.value for md in at.markdown)
    import json

    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    epoch_loss = next(trace for trace in curves["data"] if trace.get("name") == "training, end of epoch")
    assert _values(epoch_loss["y"]) == [1.5, 0.75]
    assert len(at.button) == 0 and at.session_state["job_ids"] == []  # nothing to stop, continue or delete; not the viewer's run
    assert (resources.run_store().root / run_id).is_dir()

    for unknown in ["ffffffffffff", "../etc", ""]:
        missing = _app(monkeypatch, view=unknown)
        assert any("No run was found at this link" in warning.value for warning in missing.warning)
        assert len(missing.button) == 0
