"""Run folders on disk: planted ids never reach outside the runs folder, a crash mid-save never loses a run,
and a user's own images are kept with the run (within a cap) or the run comes back as a summary."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dcnn_core.data import datasets
from dcnn_core.design import spec
from dcnn_core.training import job as training
from dcnn_core.training import runs
from dcnn_core.training.config import TrainConfig

OWNER = "0123456789abcdef0123456789abcdef"
SHAPES_REF = {"key": "shapes", "options": {"count_per_class": 30, "image_size": 16, "seed": 1}, "title": "Shapes"}
PETS_REF = {"key": "custom", "options": {"name": "pets"}, "title": "pets"}


def _pets(count: int = 24) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 4, (count, 12, 12, 3)) * 80).astype(np.uint8)  # few levels, like drawings: they compress
    labels = np.arange(count) % 2
    return datasets.make_dataset("custom:pets", "pets", "Your own images (zip): 24 images in 2 classes",
                                 images[:16], labels[:16], images[16:], labels[16:], ("cat", "dog"), False)  # fmt: skip


def _job(dataset: datasets.Dataset, reference: dict, run_id: str | None = None) -> training.TrainingJob:
    extra = {"run_id": run_id} if run_id is not None else {}
    description = training.RunDescription(spec.preset("Simple CNN"), TrainConfig(epochs=1, batch_size=16), reference, owner=OWNER, **extra)
    return training.TrainingJob(description, dataset)


def _ended(job: training.TrainingJob, message: str = "Finished.") -> training.Progress:
    return dataclasses.replace(job.snapshot(), status=training.FINISHED, message=message)


def _names(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir())


# --- run ids are never paths ----------------------------------------------------------------------


def test_run_ids_have_one_exact_form():
    assert runs.is_run_id("abcdef123456")
    for bad in ["../x", "abcdef123456\n", "ABCDEF123456", "abcdef12345", "abcdef1234567", "../abcdef1234", "", None, 12]:
        assert not runs.is_run_id(bad), bad


def test_a_planted_run_id_that_is_a_path_is_refused_on_load_and_on_save(tiny_shapes, tmp_path):
    root = tmp_path / "runs"
    store = runs.RunStore(root)
    job = _job(tiny_shapes, SHAPES_REF)
    folder = store.save(job, _ended(job))
    victim = tmp_path / "x"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    record_file = folder / "run.json"
    record_file.write_text(json.dumps(json.loads(record_file.read_text()) | {"run_id": "../x"}))

    assert store.load_all() == []  # not listed, so never restored, saved again or deleted by that id
    with pytest.raises(ValueError, match="does not match its folder"):
        store.load(folder)
    planted = _job(tiny_shapes, SHAPES_REF, run_id="../x")
    with pytest.raises(ValueError, match="Not a run id"):
        store.save(planted, _ended(planted))
    with pytest.raises(ValueError, match="Not a run id"):
        store.delete("../x")
    assert (victim / "keep.txt").read_text() == "mine"
    assert _names(tmp_path) == ["runs", "x"] and _names(root) == [job.job_id]


def test_a_run_copied_into_another_folder_name_is_skipped(tiny_shapes, tmp_path):
    import shutil

    store = runs.RunStore(tmp_path / "runs")
    job = _job(tiny_shapes, SHAPES_REF)
    folder = store.save(job, _ended(job))
    shutil.copytree(folder, tmp_path / "runs" / "bbbbbbbbbbbb")  # a valid id, but not the one inside
    assert [record.run_id for record in store.load_all()] == [job.job_id]


# --- a crash mid-save ------------------------------------------------------------------------------


def test_a_failed_rename_in_puts_the_previous_run_back(tiny_shapes, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    store = runs.RunStore(root)
    job = _job(tiny_shapes, SHAPES_REF)
    store.save(job, _ended(job, "first"))
    move = runs._move

    def fail_on_rename_in(source: Path, target: Path) -> None:
        if source.name.startswith(".stage-"):
            raise OSError("disk pulled out")
        move(source, target)

    monkeypatch.setattr(runs, "_move", fail_on_rename_in)
    with pytest.raises(OSError, match="disk pulled out"):
        store.save(job, _ended(job, "second"))
    assert store.load(root / job.job_id).message == "first"
    assert _names(root) == [job.job_id]  # no staging or aside folder left behind


_KILLED_SAVE = textwrap.dedent(
    """
    import dataclasses, os, shutil, sys
    import numpy as np
    from dcnn_core.data import datasets
    from dcnn_core.design import spec
    from dcnn_core.training import job as training, runs
    from dcnn_core.training.config import TrainConfig

    root, run_id, step = sys.argv[1], sys.argv[2], sys.argv[3]
    images = np.zeros((4, 8, 8, 1), np.uint8)
    data = datasets.make_dataset("shapes", "Shapes", "test", images, np.zeros(4), images, np.zeros(4), ("a",), False)
    description = training.RunDescription(spec.preset("Simple CNN"), TrainConfig(epochs=1), {"key": "shapes"}, run_id=run_id)
    job = training.TrainingJob(description, data)
    move, remove = runs._move, shutil.rmtree

    def killed_move(source, target):
        if step == "rename-in" and source.name.startswith(".stage-"):
            os._exit(9)  # the process dies: no clean-up runs
        move(source, target)

    def killed_remove(path, *args, **kwargs):
        if step == "delete-old" and os.path.basename(path).startswith(".old-"):
            os._exit(9)
        remove(path, *args, **kwargs)

    runs._move, runs.shutil.rmtree = killed_move, killed_remove
    runs.RunStore(root).save(job, dataclasses.replace(job.snapshot(), status="finished", message="second"))
    """
)


@pytest.mark.parametrize(("step", "kept"), [("rename-in", "first"), ("delete-old", "second")])
def test_a_save_killed_between_steps_leaves_a_whole_run_and_start_up_sweeps_the_rest(tiny_shapes, tmp_path, step, kept):
    root = tmp_path / "runs"
    job = _job(tiny_shapes, SHAPES_REF)
    runs.RunStore(root).save(job, _ended(job, "first"))
    killed = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(root), job.job_id, step], cwd=Path(__file__).parent.parent,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == 9, killed.stderr
    assert len(_names(root)) == 2  # the killed save left a staging or an aside folder

    records = runs.RunStore(root).load_all()  # the next start-up
    assert [(record.run_id, record.message) for record in records] == [(job.job_id, kept)]
    assert _names(root) == [job.job_id]


def test_staging_folders_left_by_a_crash_are_swept_and_an_orphaned_old_run_comes_back(tiny_shapes, tmp_path):
    root = tmp_path / "runs"
    job = _job(tiny_shapes, SHAPES_REF)
    runs.RunStore(root).save(job, _ended(job, "first"))
    (root / job.job_id).rename(root / f".old-{job.job_id}-0a1b2c3d")
    half = root / f".stage-{job.job_id}-k2j4_x9a"
    half.mkdir()
    (half / "run.json").write_text('{"format": "dcnn-st')
    (root / ".stage-bbbbbbbbbbbb-zzz").mkdir()

    records = runs.RunStore(root).load_all()
    assert [(record.run_id, record.message) for record in records] == [(job.job_id, "first")]
    assert _names(root) == [job.job_id]


def test_files_and_folders_are_synced_before_the_run_is_renamed_in(tiny_shapes, tmp_path, monkeypatch):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name synced descriptors")
    synced: list[str] = []
    fsync = os.fsync

    def spy(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", spy)
    root = tmp_path / "runs"
    job = _job(_pets(), PETS_REF)
    runs.RunStore(root).save(job, _ended(job))
    assert any(path.endswith("/run.json") and "/.stage-" in path for path in synced)
    assert any(path.endswith(f"/{runs.DATA_FILE}") for path in synced)
    assert str(root.resolve()) in synced  # the folder holding the renames


def test_delete_leaves_no_half_run(tiny_shapes, tmp_path):
    store = runs.RunStore(tmp_path / "runs")
    job = _job(tiny_shapes, SHAPES_REF)
    store.save(job, _ended(job))
    store.delete(job.job_id)
    assert _names(tmp_path / "runs") == [] and store.load_all() == []


# --- a user's own images ----------------------------------------------------------------------------


def test_own_images_are_saved_with_the_run_and_read_back(tmp_path):
    store = runs.RunStore(tmp_path / "runs")
    pets = _pets()
    job = _job(pets, PETS_REF)
    folder = store.save(job, _ended(job))
    assert (folder / runs.DATA_FILE).stat().st_size < (pets.x_train.nbytes + pets.x_test.nbytes) / 2  # compressed
    [record] = runs.RunStore(tmp_path / "runs").load_all()
    assert record.own_images and record.has_saved_images
    back = store.load_images(record)
    assert np.array_equal(back.x_train, pets.x_train) and np.array_equal(back.y_test, pets.y_test)
    assert back.class_names == ("cat", "dog") and back.title == "pets" and back.key == "custom:pets" and back.source == pets.source


def test_sets_the_app_can_load_again_are_not_copied(tiny_shapes, tmp_path):
    folder = runs.RunStore(tmp_path / "runs").save(job := _job(tiny_shapes, SHAPES_REF), _ended(job))
    assert not (folder / runs.DATA_FILE).exists()


def test_images_over_the_cap_are_not_kept_and_the_run_comes_back_as_a_summary(tmp_path):
    store = runs.RunStore(tmp_path / "runs", max_data_bytes=1000)
    pets = _pets()
    job = _job(pets, PETS_REF)
    folder = store.save(job, _ended(job, "Finished after 1 epoch."))
    assert not (folder / runs.DATA_FILE).exists()
    [record] = store.load_all()
    assert not record.has_saved_images and "not saved" in record.data["note"]

    summary = runs.restore_summary(record)
    assert summary.ended and summary.model is None and summary.status == training.FINISHED
    assert summary.snapshot().message.startswith("Finished after 1 epoch. Its images (0.0 MB) are more than the 0.0 MB a run keeps")
    assert summary.dataset.class_names == ("cat", "dog") and summary.dataset.input_shape == (12, 12, 3)
    with pytest.raises(ValueError):
        summary.prepare_continue(1)  # nothing to continue from


def test_damaged_or_oversized_saved_images_are_refused(tmp_path):
    store = runs.RunStore(tmp_path / "runs")
    job = _job(_pets(), PETS_REF)
    folder = store.save(job, _ended(job))
    [record] = store.load_all()
    images = np.zeros((4, 12, 12, 3), np.uint8)
    wrong_labels = np.array([0, 1, 2, 7], np.uint8)  # two classes only
    np.savez_compressed(folder / runs.DATA_FILE, x_train=images, y_train=wrong_labels, x_test=images, y_test=wrong_labels,
                        class_names=np.array(["cat", "dog"]))  # fmt: skip
    with pytest.raises(ValueError, match="labels"):
        store.load_images(record)
    np.savez_compressed(folder / runs.DATA_FILE, x_train=np.zeros((3000, 12, 12, 3), np.uint8))  # 1.3 MB unpacked
    with pytest.raises(ValueError, match="larger than"):
        runs.RunStore(tmp_path / "runs", max_data_bytes=1000).load_images(record)
