"""Experiments train headless: the file format, the CLI, strategies, and two workers on this CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dcnn_core.data import datasets
from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.design import spec
from dcnn_core.headless import distribute, experiment, train
from dcnn_core.results.evaluation import predict_probabilities
from dcnn_core.training import job as training
from dcnn_core.training import lifecycle, runs
from dcnn_core.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
OWNER = "0123456789abcdef0123456789abcdef"
TINY_SHAPES = {"count_per_class": 10, "image_size": 16, "seed": 1}


def _experiment(**config) -> experiment.Experiment:
    settings = {"epochs": 1, "batch_size": 16, "seed": 5, **config}
    return experiment.create(spec.preset("Simple CNN"), DatasetChoice("shapes", dict(TINY_SHAPES)), TrainConfig(**settings))


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv(train.WEIGHTS_DUMP_ENV, raising=False)


def test_the_cli_trains_a_run_the_app_can_open(tmp_path, capsys):
    path = _write(tmp_path / "experiment.json", _experiment(epochs=3).to_dict())
    code = train.main([str(path), "--out", str(tmp_path / "runs"), "--owner", OWNER, "--epochs", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "global batch 16 (1 replica)" in out and "epoch 1/1" in out and "Test accuracy:" in out

    [record] = runs.RunStore(tmp_path / "runs").load_all()
    assert f"Run folder: {record.folder.resolve()}" in out and f"?user={OWNER}" in out
    assert record.owner == OWNER and record.status == training.FINISHED
    assert record.strategy.startswith("default (") and len(record.history["loss"]) == 1  # --epochs overrode 3
    assert record.dataset_ref["key"] == "shapes" and record.dataset_ref["options"] == TINY_SHAPES
    dataset = datasets.load_dataset(record.dataset_ref["key"], **record.dataset_ref["options"])
    job = runs.restore_job(record, dataset)
    probabilities = predict_probabilities(job.model, dataset.x_test[:4])
    assert probabilities.shape == (4, 6) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert job.snapshot().test_accuracy == pytest.approx(record.test_accuracy)


def test_without_an_owner_the_cli_makes_one_and_says_how_to_open_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "_train", lambda experiment, dataset, owner, new_owner, cluster, out: print(owner, new_owner) or 0)
    path = _write(tmp_path / "experiment.json", _experiment().to_dict())
    assert train.main([str(path)]) == 0
    owner, new = capsys.readouterr().out.split()
    assert train.OWNER_TOKEN.match(owner) and new == "True"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda data: data["config"].update(batch_size=0), "config.batch_size: The batch size must be from 1 to 4096"),
        (lambda data: data["spec"]["blocks"][1].update(filters=0), "spec.blocks[1].filters:"),
        (lambda data: data["config"]["augmentation"].update(zoom=0.9), "config.augmentation.zoom:"),
        (lambda data: data["dataset"].update(key="x"), "dataset.key: unknown data set 'x'"),
        (lambda data: data["dataset"]["options"].update(image_size=4), "dataset.options: Shapes image size"),
        (lambda data: data["distribution"].update(strategy="tpu"), "distribution.strategy:"),
        (lambda data: data.update(version=7), "version:"),
    ],
)
def test_a_malformed_experiment_exits_2_naming_the_field(tmp_path, capsys, change, named):
    data = _experiment().to_dict()
    change(data)
    code = train.main([str(_write(tmp_path / "bad.json", data)), "--out", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert code == 2
    assert named in captured.err and "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "runs").exists()


def test_bad_files_and_flags_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{not json")
    good = _write(tmp_path / "good.json", _experiment().to_dict())
    for argv in (
        [str(tmp_path / "broken.json")],
        [str(tmp_path / "missing.json")],
        [str(good), "--owner", "not-a-token"],
        [str(good), "--epochs", "0"],
    ):
        assert train.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_a_download_that_fails_offline_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    def offline(key, **options):
        raise datasets.DatasetUnavailable("Fashion-MNIST could not be downloaded — this server seems to be offline.")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    data = _experiment().to_dict()
    data["dataset"] = {"key": "fashion_mnist", "options": {}}
    assert train.main([str(_write(tmp_path / "e.json", data))]) == 2
    err = capsys.readouterr().err
    assert err == "error: dataset.key: Fashion-MNIST could not be downloaded — this server seems to be offline.\n"


def test_experiments_round_trip_and_keep_the_seed():
    original = _experiment(seed=42)
    again = experiment.Experiment.from_json(original.to_json())
    assert again == original and again.config.seed == 42
    assert json.loads(original.to_json())["distribution"] == {"strategy": "auto", "mixed_precision": False}
    with pytest.raises(ValueError, match=r"^dataset.key: your own uploaded images"):
        experiment.create(spec.preset("Simple CNN"), DatasetChoice("custom", {"name": "cats"}), TrainConfig())
    data = original.to_dict()
    data["config"]["early_stopping"], data["config"]["validation_split"] = True, 0.0
    with pytest.raises(ValueError, match=r"^config.early_stopping: .*validation split above 0"):
        experiment.Experiment.from_dict(data)


def test_auto_is_the_default_strategy_on_this_cpu():
    import tensorflow as tf

    if distribute.visible_gpus() > 1:
        pytest.skip("several GPUs: auto picks MirroredStrategy")
    strategy, description = distribute.choose_strategy("auto")
    assert strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
    assert description == ("default (CPU)" if distribute.visible_gpus() == 0 else "default (1 GPU)")
    with pytest.raises(ValueError, match="must be one of"):
        distribute.choose_strategy("tpu")


def test_tf_config_cluster_and_batch_semantics():
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    first = distribute.cluster_from_env({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})})
    second = distribute.cluster_from_env({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})})
    assert (first.workers, first.is_chief, second.is_chief) == (2, True, False)
    with_chief = {"chief": ["127.0.0.1:3"], **cluster}
    worker0 = distribute.cluster_from_env({"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})})
    assert worker0.workers == 3 and not worker0.is_chief
    assert distribute.cluster_from_env({}) == distribute.Cluster()
    with pytest.raises(ValueError, match="TF_CONFIG is not valid"):
        distribute.cluster_from_env({"TF_CONFIG": "{oops"})
    assert distribute.batch_semantics(64, 2) == "global batch 64 = 32 per replica × 2"
    assert distribute.batch_semantics(65, 2) == "global batch 65 ≈ 32–33 per replica × 2"
    assert distribute.batch_semantics(64, 1) == "global batch 64 (1 replica)"


def test_mixed_precision_is_ignored_with_a_note_on_cpu_and_keeps_the_softmax_float32(tiny_shapes):
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    if distribute.visible_gpus() == 0:
        assert "no GPU is visible — ignored" in distribute.set_mixed_precision(True)
        assert keras.mixed_precision.global_policy().name == "float32"
    try:  # what a GPU box gets: float16 layers, a float32 softmax
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = lifecycle.build_and_compile(spec.preset("Simple CNN"), tiny_shapes, TrainConfig())
        assert model.get_layer("predictions").compute_dtype == "float32"
        assert {layer.compute_dtype for layer in model.layers if "conv" in layer.name} == {"float16"}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    plain = lifecycle.build_and_compile(spec.preset("Simple CNN"), tiny_shapes, TrainConfig())
    assert plain.get_layer("predictions").dtype_policy.name == "float32"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


@pytest.mark.timeout(600)
def test_two_workers_train_the_same_weights_with_multi_worker_mirrored_strategy(tmp_path):
    path = _write(tmp_path / "experiment.json", _experiment(batch_size=16).to_dict())
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=str(REPO), DCNN_TF_THREADS="1")
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env[train.WEIGHTS_DUMP_ENV] = str(tmp_path / f"weights-{index}.npz")
        command = [
            sys.executable,
            "-m",
            "dcnn_core.headless.train",
            str(path),
            "--out",
            str(tmp_path / "runs"),
            "--strategy",
            "multi_worker",
        ]
        workers.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=540)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    assert "global batch 16 = 8 per replica × 2" in outputs[0]
    assert "the chief writes the run folder" in outputs[1]

    first, second = np.load(tmp_path / "weights-0.npz"), np.load(tmp_path / "weights-1.npz")
    assert len(first.files) == len(second.files) > 0
    for name in first.files:
        assert np.array_equal(first[name], second[name]), name

    [record] = runs.RunStore(tmp_path / "runs").load_all()  # the chief's only
    assert record.strategy == "MultiWorkerMirroredStrategy, 2 workers, 2 replicas in all"
    saved = runs.load_model(record).get_weights()
    assert all(np.array_equal(kept, first[f"arr_{index}"]) for index, kept in enumerate(saved))


MIRRORED_ON_TWO_CPUS = """
from dcnn_core.runtime import import_keras
import_keras()
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dcnn_core.data import datasets
from dcnn_core.design import spec
from dcnn_core.headless import distribute
from dcnn_core.training import job as training
strategy = distribute.mirrored_strategy(["/cpu:0", "/cpu:1"])
data = datasets.load_shapes(count_per_class=10, image_size=16, seed=1)  # 5 validation images: an uneven 3 + 2 split
job = training.TrainingJob(spec.preset("Simple CNN"), data, training.TrainConfig(epochs=1, batch_size=16))
job.distribution = strategy
job.run()
progress = job.snapshot()
print(progress.status, strategy.num_replicas_in_sync, progress.message, progress.details[-1500:])
"""


@pytest.mark.timeout(300)
def test_two_replicas_train_as_two_gpus_would(tmp_path):
    """MirroredStrategy over two logical CPUs: what a two-GPU box runs, with batches that split unevenly."""
    env = dict(os.environ, PYTHONPATH=str(REPO), DCNN_TF_THREADS="1")
    result = subprocess.run([sys.executable, "-c", MIRRORED_ON_TWO_CPUS], cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("finished 2 Finished 1 epoch."), result.stdout[-3000:]
