"""Shared helpers for the benchmark scripts: the machine, robust statistics, a Streamlit server, Chromium.

The benchmarks run on shared machines, so every headline figure is a ratio of two things measured
side by side in the same run, in alternating order, summarised by its median and spread.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so ``python bench/<name>.py`` finds dcnn_core and ui

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


# --- the machine ------------------------------------------------------------------------------


def _cpuinfo_field(name: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == name:
                return line.split(":", 1)[1].strip()
    return "?"


def cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


def machine_lines() -> list[str]:
    """The machine and software the figures came from, one fact a line."""
    total_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        total_kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
    versions = []
    for package in ("streamlit", "tensorflow-cpu", "tensorflow", "keras", "numpy", "plotly", "playwright", "psutil"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    chromium = "not found"
    if CHROMIUM.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            chromium = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    return [
        f"CPU: {_cpuinfo_field('model name')} (family {family}, model {model}), {_cpuinfo_field('cpu MHz')} MHz, "
        f"{os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)",
        f"RAM: {total_kb / 2**20:.1f} GiB",
        f"OS: {platform.platform()}; Python {platform.python_version()}",
        "Packages: " + ", ".join(versions),
        f"Browser: {chromium}",
        f"Load average at start (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())} — shared machine",
    ]


def print_header(title: str) -> None:
    print(f"# {title}")
    print(f"Command: python {' '.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])}")
    for line in machine_lines():
        print(line)
    print(flush=True)


# --- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    count: int

    def format(self, spec: str = ".3f", unit: str = "") -> str:
        return f"{self.median:{spec}}{unit} (min {self.low:{spec}}, max {self.high:{spec}}, n={self.count})"


def summarise(values: list[float]) -> Summary:
    if not values:
        raise ValueError("Nothing was measured.")
    return Summary(statistics.median(values), min(values), max(values), len(values))


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


# --- processes ---------------------------------------------------------------------------------


def rss_bytes(pid: int, children: bool = True) -> int:
    """Resident memory of a process, plus its children's by default."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        if children:
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        return total
    except psutil.Error:
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def server_env(runs_dir: str, threads: int = 1) -> dict[str, str]:
    return {
        **os.environ,
        "DCNN_TF_THREADS": str(threads),
        "DCNN_RUNS_DIR": runs_dir,  # never read or write the repo's runs/
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }


def start_streamlit(script: Path | str, log_dir: Path, env: dict[str, str]) -> Server:
    """``python -m streamlit run script`` on a free port, started from the repo root (its .streamlit/config.toml)."""
    port = free_port()
    log_path = Path(log_dir) / f"streamlit-{port}.log"
    command = [sys.executable, "-m", "streamlit", "run", str(script),
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(f"http://127.0.0.1:{port}", process, log_path)


def wait_healthy(server: Server, timeout_s: float = 90.0, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        time.sleep(poll_s)
    raise RuntimeError(f"streamlit was not healthy after {timeout_s} s:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    """End the server's own process group (it was started in a new session)."""
    if server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


@contextlib.contextmanager
def running_server(script: Path | str, log_dir: Path, env: dict[str, str]) -> Iterator[Server]:
    server = start_streamlit(script, log_dir, env)
    try:
        wait_healthy(server)
        yield server
    finally:
        stop_server(server)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Debian's headless Chromium through Playwright; the browser object."""
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_rendered(page, title: str, timeout_ms: int = 60_000) -> None:
    """Wait until the script has finished and a heading with exactly ``title`` is visible."""
    page.wait_for_function(
        """(title) => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
            return [...document.querySelectorAll('h1')].some(h => h.innerText.trim() === title && h.offsetParent !== null);
        }""",
        arg=title,
        polling="raf",
        timeout=timeout_ms,
    )


def hello_app(folder: Path, pages: bool = False) -> Path:
    """Write a minimal Streamlit app: one title, or (``pages``) two one-title pages under st.navigation."""
    folder.mkdir(parents=True, exist_ok=True)
    if not pages:
        path = folder / "hello.py"
        path.write_text('import streamlit as st\n\nst.title("Hello")\n')
        return path
    (folder / "one.py").write_text('import streamlit as st\n\nst.title("One")\n')
    (folder / "two.py").write_text('import streamlit as st\n\nst.title("Two")\n')
    path = folder / "hello_pages.py"
    path.write_text(
        'import streamlit as st\n\nst.navigation([st.Page("one.py", title="One", default=True), st.Page("two.py", title="Two")]).run()\n'
    )
    return path


def temporary_folder(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# --- training through the engine door -----------------------------------------------------------


def local_engine(resolve, slots: int = 1, slice_s: float = 1.0, prefix: str = "bench-runs-"):
    """The in-process engine (``dcnn_core.training.engines.local.LocalEngine``) as the app makes it, for a benchmark.

    ``resolve`` maps a run's data-set reference to the data (e.g. ``lambda reference: dataset`` for a set held
    in memory). No room limit can refuse a run (queue, runs or disk per person, parameters), no idle stop; each
    ended run is saved, as in the app, under a fresh temporary folder (``engine.store.root``: remove it after).
    """
    from dcnn_core.room.rules import RoomLimits, ServerRules
    from dcnn_core.training.engines.local import LocalEngine
    from dcnn_core.training.runs import RunStore

    limits = RoomLimits(max_queue=None, max_runs_per_owner=None, max_disk_mb_per_owner=None, max_parameters=None)
    return LocalEngine(RunStore(temporary_folder(prefix)), ServerRules(limits, slots=slots), resolve, slice_s=slice_s)
