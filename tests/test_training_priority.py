"""Training yields to the web server: TensorFlow's compute threads run at a lower priority once a training runs.

TensorFlow's pool spans every core (a lone user's training uses the whole machine), so without this a page run
would wait behind the training for a core. Checked in a fresh process, because lowering a thread cannot be undone
and the test process's own threads must stay as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, os, threading
from dcnn_core.data import datasets
from dcnn_core.design import spec
from dcnn_core.training import job as training
from dcnn_core.training.config import TrainConfig

from dcnn_core.runtime import import_keras


def threads():
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as file:
                found.append((file.read().strip(), os.getpriority(os.PRIO_PROCESS, int(task))))
        except OSError:
            pass  # a thread that ended meanwhile
    return found


keras = import_keras()
keras.ops.sum(keras.ops.matmul(keras.ops.ones((256, 256)), keras.ops.ones((256, 256))))  # a page's op comes first: TensorFlow
before = threads()  # makes its pool here, on the thread that serves pages, at its priority; the training must lower it
data = datasets.load_shapes(count_per_class=30, image_size=16, seed=1)
job = training.TrainingJob(spec.preset("LeNet-5"), data, TrainConfig(epochs=2, batch_size=16))
worker = threading.Thread(target=job.run, name="train-1")
worker.start()
worker.join()
print(json.dumps({"status": job.status.value, "main": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                  "before": before, "threads": threads()}))
"""


def _train_in_a_fresh_process(nice: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), DCNN_TRAINING_NICE=nice)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are read from /proc (Linux)")
def test_training_computes_below_the_web_server_and_leaves_the_server_thread_as_it_was():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    result = _train_in_a_fresh_process("10")
    assert result["status"] == "finished"
    assert [nice for name, nice in result["before"] if name.startswith("tf_")] and all(nice == base for _, nice in result["before"])
    compute = [nice for name, nice in result["threads"] if name.startswith("tf_")]
    assert compute and all(nice == min(19, base + 10) for nice in compute)  # TensorFlow's pool yields
    assert result["main"] == base  # the thread that serves pages keeps its priority
    assert all(nice == base for name, nice in result["threads"] if not name.startswith("tf_"))  # and every other thread

    same = _train_in_a_fresh_process("0")  # DCNN_TRAINING_NICE=0: training competes as an equal
    assert same["status"] == "finished" and all(nice == base for _, nice in same["threads"])
