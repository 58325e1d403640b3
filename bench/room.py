"""A workshop room on one server: N attendees press Start within a minute; what does each of them see?

One ``streamlit run app.py`` (offline: Shapes stands in for Fashion-MNIST at once; a temporary runs
folder), started at normal priority, and one headless Chromium with one context per attendee, driven
by async Playwright from this process after it has lowered its own priority (``nice 19``: in a real
room the browsers run on the attendees' laptops, not on the server's cores). Each attendee opens the
app, goes to Train through the sidebar, and presses **Start training** at a random moment within
``--window`` seconds of the first. While its run is active it switches to Data and back a few times,
each switch timed from the click to the page's heading drawn with the script idle. It records the
time from pressing Start to the first point of its live curve (the ``train_curves`` chart present)
and to "Finished N epochs.", the first queue place and ETA it was shown, and any exception drawn.
A monitor process at normal priority samples the server's RSS (process + children) every 0.5 s and
asks ``/_stcore/health`` every 2 s with a 10 s timeout.

    python bench/room.py [--attendees 20] [--window 60] [--timeout 900] [--fashion-sized] [--slots N]
                         [--app-root PATH] [--json PATH]

``--app-root`` runs another checkout's app.py (e.g. a ``git worktree`` of an older commit) with the
same client, for before/after figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import CHROMIUM, CHROMIUM_ARGS, ROOT, machine_lines, percentile, rss_bytes

FASHION_SIZED_PER_CLASS = 12_000  # 6 shape classes × 12,000 split 5:1 → 60,000 training images, Fashion-MNIST's count
SWITCHES = 3  # Data → Train round trips per attendee while its run is active
POLL_S = 0.5
OPEN_TIMEOUT_MS = 240_000  # the first visitors wait for imports on a busy server
SWITCH_TIMEOUT_MS = 120_000

SNAPSHOT_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    const main = document.querySelector('[data-testid="stMain"]');
    return {
        text: main ? main.innerText : "",
        chart: !!document.querySelector('.st-key-train_curves .js-plotly-plot'),
        exceptions: document.querySelectorAll('[data-testid="stException"]').length,
        state: app ? app.getAttribute('data-test-script-state') : null,
    };
}"""
RENDERED_JS = """(title) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    return [...document.querySelectorAll('h1')].some(h => h.innerText.trim() === title && h.offsetParent !== null);
}"""
QUEUE = re.compile(r"place (\d+) in (?:line|the queue)(?:, about ([\d:]+(?: s)?))?")
PROGRESS = re.compile(r"Epoch (\d+)/(\d+) · batch (\d+)/(\d+)")
FINISHED = re.compile(r"Finished \d+ epochs\.")
ENDED_OTHERWISE = re.compile(r"(Stopped [^\n]*|Training failed[^\n]*|diverged[^\n]*)")


# --- the monitor: a separate process at normal priority --------------------------------------


def _lowest_nice(root_pid: int) -> int | None:
    """The lowest nice value of any thread of any Chromium process under ``root_pid`` (None when there is none yet)."""
    import psutil

    lowest = None
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(root_pid).children(recursive=True):
            if "chrom" not in process.name():
                continue
            for task in Path(f"/proc/{process.pid}/task").glob("*/stat"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    nice = int(task.read_text().rsplit(")", 1)[1].split()[16])
                    lowest = nice if lowest is None else min(lowest, nice)
    return lowest


def _note_browser_cpu(root_pid: int, seen: dict[int, float]) -> None:
    """Record each Chromium process's CPU seconds so far (user + system) under ``root_pid``."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(root_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "chrom" in process.name():
                    times = process.cpu_times()
                    seen[process.pid] = max(seen.get(process.pid, 0.0), times.user + times.system)


def monitor(pid: int, url: str, out_path: str, client_pid: int) -> None:
    """Sample RSS every 0.5 s, health and the browsers' niceness every 2 s until SIGTERM; write the figures as JSON."""
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    rss_peak, rss_samples, checks, failures, slowest, next_health, browser_nice = 0, 0, 0, 0, 0.0, 0.0, None
    browser_cpu: dict[int, float] = {}
    while not stop:
        rss_peak = max(rss_peak, rss_bytes(pid))
        rss_samples += 1
        now = time.monotonic()
        if now >= next_health:
            next_health = now + 2.0
            checks += 1
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
                    if response.read().decode().strip() != "ok":
                        failures += 1
            except Exception:
                failures += 1
            slowest = max(slowest, time.monotonic() - started)
            if (nice := _lowest_nice(client_pid)) is not None:
                browser_nice = nice if browser_nice is None else min(browser_nice, nice)
            _note_browser_cpu(client_pid, browser_cpu)
        time.sleep(0.5)
    Path(out_path).write_text(json.dumps({"rss_peak_mb": rss_peak / 2**20, "rss_samples": rss_samples, "health_checks": checks,
                                          "health_failures": failures, "health_slowest_s": slowest,
                                          "browser_lowest_nice": browser_nice, "browser_cpu_s": sum(browser_cpu.values())}))  # fmt: skip


# --- one attendee ------------------------------------------------------------------------------


@dataclass
class Attendee:
    index: int
    offset_s: float  # when it presses Start, after the first attendee does
    pressed_at: float | None = None  # seconds since the first planned Start
    pressed_unix: float | None = None  # the same moment as Unix time (to match the server log's page times)
    ended_unix: float | None = None  # when its run was seen ended (or the room's time ran out)
    queue_place: int | None = None  # first place in line shown
    queue_eta_s: float | None = None  # the ETA shown with it
    first_point_s: float | None = None  # from pressing Start to the curve's first point
    finish_s: float | None = None  # from pressing Start to "Finished"
    outcome: str = "not started"
    last_progress: str = ""  # the last progress line seen (where a run was when the room's time ran out)
    batches_seen: list[int] = field(default_factory=list)
    switches_s: list[float] = field(default_factory=list)
    exceptions: int = 0
    page_errors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    text = text.replace(" s", "")
    if ":" in text:
        minutes, seconds = text.split(":")
        return int(minutes) * 60 + int(seconds)
    return float(text)


async def _rendered(page, title: str) -> None:
    await page.wait_for_function(RENDERED_JS, arg=title, polling="raf", timeout=SWITCH_TIMEOUT_MS)


async def _switch(page, link: str, title: str) -> float:
    target = page.get_by_test_id("stSidebarNav").get_by_role("link", name=link, exact=True)
    started = time.perf_counter()
    await target.click(timeout=SWITCH_TIMEOUT_MS)  # a starved browser may take long; it must not abandon the attendee
    await _rendered(page, title)
    return time.perf_counter() - started


def _observe(who: Attendee, snapshot: dict, elapsed: float) -> bool:
    """Update ``who`` from one look at the page; True when its run has ended."""
    text = snapshot["text"]
    who.exceptions = max(who.exceptions, snapshot["exceptions"])
    if who.queue_place is None and (queued := QUEUE.search(text)):
        who.queue_place, who.queue_eta_s = int(queued.group(1)), _seconds(queued.group(2))
    if progress := PROGRESS.search(text):
        who.batches_seen.append(int(progress.group(3)))
        who.last_progress = progress.group(0)
    if snapshot["chart"] and who.first_point_s is None:
        who.first_point_s = elapsed
    if FINISHED.search(text):
        who.finish_s, who.outcome = elapsed, "finished"
        return True
    if ended := ENDED_OTHERWISE.search(text):
        who.outcome = ended.group(1)[:120]
        return True
    return False


async def _run_attendee(who: Attendee, browser, url: str, opened: asyncio.Event, start_at: list[float], count) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.on("pageerror", lambda error: who.page_errors.append(str(error)[:200]))
    try:
        try:
            await page.goto(url + "/", timeout=OPEN_TIMEOUT_MS)
            await page.wait_for_function(RENDERED_JS, arg="DCNN Studio", polling=250, timeout=OPEN_TIMEOUT_MS)
            await _switch(page, "Train", "Train")
        finally:
            count()
        await opened.wait()
        await asyncio.sleep(max(0.0, start_at[0] + who.offset_s - time.monotonic()))
        await page.locator(".st-key-train_start button").click(timeout=SWITCH_TIMEOUT_MS)
        pressed, who.pressed_unix = time.monotonic(), time.time()
        who.pressed_at, who.outcome = pressed - start_at[0], "not finished when the room's time ran out"
        next_switch = pressed + 10 + random.uniform(0, 5)
        while True:
            elapsed = time.monotonic() - pressed
            if _observe(who, await page.evaluate(SNAPSHOT_JS), elapsed):
                who.ended_unix = time.time()
                break
            ready = who.first_point_s is not None or elapsed > 30  # a switch must not hide the first point
            if len(who.switches_s) < 2 * SWITCHES and ready and time.monotonic() >= next_switch:
                who.switches_s.append(await _switch(page, "Data", "Data"))
                await asyncio.sleep(1.0)
                who.switches_s.append(await _switch(page, "Train", "Train"))
                next_switch = time.monotonic() + 15 + random.uniform(0, 10)
            await asyncio.sleep(POLL_S)
    except asyncio.CancelledError:  # the room's time is up: what was seen so far stands
        pass
    except Exception as error:  # a timeout or a closed page: record it, the room goes on
        who.errors.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        with contextlib.suppress(Exception):
            who.exceptions = max(who.exceptions, await page.locator('[data-testid="stException"]').count())
    finally:
        await context.close()


def _niced_chromium(folder: Path) -> Path:
    """A launcher that runs Chromium at nice 19 without CAP_SYS_NICE.

    Run as root, Chromium sets its own priorities: renderers back to nice 0, the browser and GPU
    processes to -8, whatever nice it was started under. Without the capability it cannot lower them.
    """
    launcher = folder / "chromium-niced"
    launcher.write_text(f'#!/bin/sh\nexec setpriv --bounding-set -sys_nice --inh-caps -sys_nice nice -n 19 {CHROMIUM} "$@"\n')
    launcher.chmod(0o755)
    return launcher if os.path.exists("/usr/bin/setpriv") and os.geteuid() == 0 else CHROMIUM


async def _room(url: str, attendees: list[Attendee], timeout_s: float, executable: Path) -> None:
    from playwright.async_api import async_playwright

    opened, left, start_at = asyncio.Event(), [len(attendees)], [0.0]

    def count() -> None:
        left[0] -= 1
        if left[0] == 0:
            start_at[0] = time.monotonic() + 1.0
            print(f"  all {len(attendees)} attendees on the Train page; Start presses begin", flush=True)
            opened.set()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            tasks = []
            for who in attendees:
                tasks.append(asyncio.create_task(_run_attendee(who, browser, url, opened, start_at, count)))
                await asyncio.sleep(0.3)  # people do not all open the page in the same millisecond
            await opened.wait()
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s + 1.0)
            for task in pending:  # the room's time is up
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await browser.close()


# --- the server and the report ----------------------------------------------------------------


def _start_server(app_root: Path, runs_dir: str, args, log_path: Path) -> tuple[subprocess.Popen, str]:
    from _common import Server, free_port, wait_healthy

    env = {**os.environ, "DCNN_OFFLINE": "1", "DCNN_RUNS_DIR": runs_dir, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "DCNN_LOG_PAGE_TIMES": "1"}  # fmt: skip
    if args.fashion_sized:
        env["DCNN_STANDIN_IMAGES_PER_CLASS"] = str(FASHION_SIZED_PER_CLASS)
    if args.slots:
        env["DCNN_MAX_CONCURRENT_JOBS"] = str(args.slots)
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address", "127.0.0.1",
               "--server.port", str(port), "--browser.gatherUsageStats", "false"]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=app_root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(Server(url, process, log_path), timeout_s=120)
    return process, url


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values)}


def _fmt(stats: dict, key: str) -> str:
    return f"{stats[key]:.1f} s" if stats.get("n") else "–"


def _server_page_times(log: str, attendees: list[Attendee]) -> list[float]:
    """Seconds the server spent running the Data and Train pages while trainings ran (``DCNN_LOG_PAGE_TIMES``), browsers aside."""
    began = min((who.pressed_unix for who in attendees if who.pressed_unix), default=None)
    ended = max((who.ended_unix or time.time() for who in attendees if who.pressed_unix), default=None)
    if began is None:
        return []
    times = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "page-time" and parts[2] in ("Data", "Train"):
            with contextlib.suppress(ValueError):
                if began <= float(parts[1]) <= ended:
                    times.append(float(parts[3]))
    return times


def summarise(attendees: list[Attendee], figures: dict) -> dict:
    pressed = [who.pressed_at for who in attendees if who.pressed_at is not None]
    last_start = max(pressed, default=0.0)
    ends = [who.pressed_at + who.finish_s - last_start for who in attendees if who.finish_s is not None]
    eta_ratios = [who.first_point_s / who.queue_eta_s for who in attendees if who.queue_eta_s and who.first_point_s is not None]
    moved = sum(1 for who in attendees if len(set(who.batches_seen)) > 1)
    return {
        "attendees": len(attendees),
        "started": len(pressed),
        "finished": sum(who.outcome == "finished" for who in attendees),
        "first_point_s": _stats([who.first_point_s for who in attendees if who.first_point_s is not None]),
        "finish_s": _stats([who.finish_s for who in attendees if who.finish_s is not None]),
        "last_finish_after_last_start_s": max(ends) if ends else None,
        "switch_s": _stats([s for who in attendees for s in who.switches_s]),
        "eta_actual_over_shown": _stats(eta_ratios),
        "progress_moved": moved,
        "exceptions": sum(who.exceptions for who in attendees),
        "page_errors": sum(len(who.page_errors) for who in attendees),
        "errors": sum(len(who.errors) for who in attendees),
        **figures,
    }


def report(attendees: list[Attendee], summary: dict) -> None:
    print("\n| # | Start at | first place / ETA shown | first point | finished | outcome | switches (s) | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for who in attendees:
        shown = f"{who.queue_place} / {who.queue_eta_s:.0f} s" if who.queue_eta_s is not None else (who.queue_place or "–")
        cell = lambda v: f"{v:.1f} s" if v is not None else "–"  # noqa: E731
        switches = " ".join(f"{s:.1f}" for s in who.switches_s) or "–"
        if who.outcome != "finished" and who.last_progress:
            who.outcome += f" (last seen: {who.last_progress})"
        problems = "; ".join(who.errors + who.page_errors[:1]) or (f"{who.exceptions} stException" if who.exceptions else "")
        print(f"| {who.index} | {cell(who.pressed_at)} | {shown} | {cell(who.first_point_s)} | {cell(who.finish_s)} | {who.outcome} "
              f"| {switches} | {problems or '–'} |")  # fmt: skip
    s = summary
    last = s["last_finish_after_last_start_s"]
    print(f"\nAttendees {s['attendees']}, pressed Start {s['started']}, finished {s['finished']}")
    print(f"First point after Start: median {_fmt(s['first_point_s'], 'median')}, max {_fmt(s['first_point_s'], 'max')} "
          f"(n={s['first_point_s']['n']})")  # fmt: skip
    print(f"Finished after Start: median {_fmt(s['finish_s'], 'median')}, max {_fmt(s['finish_s'], 'max')}; "
          f"last finish {last:.0f} s after the last Start" if last is not None else "Finished after Start: none")  # fmt: skip
    print(f"Page switch (Data ↔ Train, while training): p50 {_fmt(s['switch_s'], 'median')}, p95 {_fmt(s['switch_s'], 'p95')}, "
          f"max {_fmt(s['switch_s'], 'max')} (n={s['switch_s']['n']})")  # fmt: skip
    page = s.get("server_page_s", {"n": 0})
    if page["n"]:
        print(
            f"  the server's own page runs (Data, Train; its log): p50 {_fmt(page, 'median')}, p95 {_fmt(page, 'p95')}, "
            f"max {_fmt(page, 'max')} (n={page['n']}); the rest is waiting for a script thread, sending, the niced browsers drawing"
        )
    eta = s["eta_actual_over_shown"]
    if eta["n"]:
        print(f"Wait actually / ETA shown (queued attendees): median {eta['median']:.2f}, max {eta['max']:.2f} (n={eta['n']})")
    print(f"Progress text moved (batch count changed) for {s['progress_moved']} attendees")
    print(f"Server RSS peak {s.get('rss_peak_mb', 0):.0f} MB; health: {s.get('health_failures')} failures of {s.get('health_checks')} "
          f"checks, slowest {s.get('health_slowest_s', 0):.1f} s; server CPU {s.get('server_cpu_s', 0):.0f} s")  # fmt: skip
    print(
        f"Server CPU share: {s.get('server_cpu_s', 0) / max(1.0, s['wall_s']):.2f} cores on average over {s['wall_s']:.0f} s; "
        f"load average at the end {' '.join(f'{v:.1f}' for v in s['load_at_end'])}; "
        f"lowest nice of any browser thread: {s.get('browser_lowest_nice')}; "
        f"the browsers used {s.get('browser_cpu_s', 0) / max(1.0, s['wall_s']):.2f} cores on average (CPU seen every 2 s)"
    )
    print(f"stException seen {s['exceptions']}, JavaScript errors {s['page_errors']}, client errors/timeouts {s['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attendees", type=int, default=20)
    parser.add_argument("--window", type=float, default=60.0, help="every attendee presses Start within this many seconds of the first")
    parser.add_argument("--timeout", type=float, default=600.0, help="stop the room this many seconds after the first Start")
    parser.add_argument("--fashion-sized", action="store_true", help=f"stand-in Shapes with {FASHION_SIZED_PER_CLASS:,} images per class")
    parser.add_argument("--slots", type=int, default=0, help="DCNN_MAX_CONCURRENT_JOBS (default: the app's own)")
    parser.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose app.py is served")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--monitor", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.monitor:
        monitor(int(args.monitor[0]), args.monitor[1], args.monitor[2], int(args.monitor[3]))
        return
    print(
        f"# Room: {args.attendees} attendees, Start within {args.window:.0f} s"
        + (", Fashion-MNIST-sized stand-in" if args.fashion_sized else "")
    )
    print(f"Command: python {' '.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])}")
    header = [*machine_lines(), f"App: {args.app_root.resolve()} (git {_git_head(args.app_root)})",
              "Browsers: one Chromium + the Playwright driver at nice 19 (Chromium without CAP_SYS_NICE, so it cannot undo it); "
              "server and monitor at normal priority"]  # fmt: skip
    print("\n".join(header), flush=True)
    rng = random.Random(args.seed)
    offsets = sorted([0.0] + [rng.uniform(0, args.window) for _ in range(args.attendees - 1)])
    rng.shuffle(offsets)
    attendees = [Attendee(index + 1, offset) for index, offset in enumerate(offsets)]
    with tempfile.TemporaryDirectory(prefix="room-") as scratch:
        log_path = Path(scratch) / "server.log"
        process, url = _start_server(args.app_root, str(Path(scratch) / "runs"), args, log_path)
        monitor_out = Path(scratch) / "monitor.json"
        watcher = subprocess.Popen([sys.executable, __file__, "--monitor", str(process.pid), url, str(monitor_out), str(os.getpid())])
        os.nice(19)  # from here on: Playwright's driver and Chromium inherit the low priority
        began = time.monotonic()
        try:
            asyncio.run(_room(url, attendees, args.timeout, _niced_chromium(Path(scratch))))
        finally:
            figures = {"wall_s": time.monotonic() - began, "server_cpu_s": _cpu_seconds(process.pid), "load_at_end": os.getloadavg()}
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(timeout=30)
            with contextlib.suppress(OSError, ValueError):
                figures |= json.loads(monitor_out.read_text())
            _stop(process)
            log_errors = [line for line in log_path.read_text(errors="replace").splitlines() if "Traceback" in line or "Error" in line]
            figures["server_log_errors"] = log_errors[:20]
            figures["server_page_s"] = _stats(_server_page_times(log_path.read_text(errors="replace"), attendees))
    summary = summarise(attendees, figures)
    report(attendees, summary)
    if log_errors:
        print("Server log lines with errors:\n  " + "\n  ".join(log_errors[:10]))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                         "attendees": [asdict(who) | {"batches_seen": sorted(set(who.batches_seen))[-5:]}
                                                       for who in attendees]}, indent=1))  # fmt: skip
        print(f"JSON: {args.json}")


def _git_head(root: Path) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    return "?"


def _cpu_seconds(pid: int) -> float:
    import psutil

    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    return 0.0


if __name__ == "__main__":
    main()
