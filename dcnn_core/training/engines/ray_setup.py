"""How the web server joins a Ray cluster: the environment Ray reads at import, the options of ``ray.init``, a quick
probe of an address, and the worker actor class. Ray is imported here only when the Ray engine connects.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = str(Path(__file__).resolve().parents[3])  # on the workers' path: they import dcnn_core from here
FORWARDED = ("DCNN_OFFLINE", "DCNN_WEIGHTS_DIR", "DCNN_STANDIN_IMAGES_PER_CLASS", "TF_CPP_MIN_LOG_LEVEL", "KERAS_HOME")
# Set before Ray is imported. Clusters of this Ray version check a token (written under ~/.ray by `ray start`); a client
# sends it only in token mode. Short connection attempts: an address that is not (or no longer) a cluster fails in seconds.
RAY_ENVIRONMENT = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "RAY_gcs_server_port_wait_time_s": "2",
                   "RAY_gcs_rpc_server_connect_timeout_s": "1", "RAY_py_gcs_connect_timeout_s": "1"}  # fmt: skip


def import_ray():
    """Ray, imported with this app's environment (set only where the operator has not set it already)."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import ray

    return ray


def init_options(address: str, tf_threads: int) -> dict:
    """``ray.init``'s arguments: this app's namespace, the workers' environment, and a new cluster for ``local``."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH", "")])),
           "DCNN_TF_THREADS": str(tf_threads),
           **{name: os.environ[name] for name in FORWARDED if name in os.environ}}  # fmt: skip
    options = {"namespace": "dcnn-studio", "runtime_env": {"env_vars": env}, "log_to_driver": False, "ignore_reinit_error": True}
    if address == "local":  # a new cluster on this machine, never one that happens to be running here
        return options | {"address": "local", "include_dashboard": False, "num_cpus": os.cpu_count() or 2}
    return options | {"address": address}


def worker_actor_class():
    """The worker as a Ray actor: one CPU to be placed, threaded so that polls and stops are answered while runs train."""
    ray = import_ray()
    from dcnn_core.training.engines.ray_worker import TrainingWorker

    return ray.remote(num_cpus=1, max_concurrency=64, max_restarts=0)(TrainingWorker)


def probe(address: str, timeout: float = 3.0) -> None:
    """Fail at once (OSError) when an explicit ``host:port`` does not answer; ``ray.init`` would wait long before saying so."""
    import socket

    host, _, port = address.rpartition(":")
    if address in ("local", "auto") or not port.isdigit():
        return
    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
        pass
