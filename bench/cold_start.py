"""Cold start: launching ``streamlit run app.py`` until the home page is drawn in Chromium, vs a hello-world app.

Each trial starts a fresh server process (free port, headless), polls ``/_stcore/health`` every 50 ms,
opens a fresh browser context on ``/`` and waits until the script state is ``notRunning`` and the
page's title heading is visible. A is DCNN Studio (title "DCNN Studio"), B a one-line app
(``st.title("Hello")``) written to a temporary folder; both start from the repo root, so both read
its ``.streamlit/config.toml``. Trials alternate AB, BA, …; the figure is the median of the ratios A/B.

After each home page the script also lists the native libraries mapped into the server process
(``/proc/<pid>/maps``): TensorFlow must not be among them, since the home page must not wait for it.

    python bench/cold_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

from _common import (
    ROOT,
    chromium,
    hello_app,
    print_header,
    rss_bytes,
    server_env,
    start_streamlit,
    stop_server,
    summarise,
    temporary_folder,
    wait_healthy,
    wait_rendered,
)

HEAVY = ("tensorflow", "keras", "sklearn", "scipy", "pandas", "pyarrow", "PIL", "matplotlib", "torch")
_PACKAGE = re.compile(r"site-packages/([A-Za-z0-9_]+)/")


def native_packages(pid: int) -> set[str]:
    """Top-level packages with a shared library mapped into ``pid`` (a package imported its C extension)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {match.group(1) for line in maps.splitlines() if line.rstrip().endswith(".so") or ".so." in line
            for match in [_PACKAGE.search(line)] if match}  # fmt: skip


def trial(browser, script: Path, title: str, scratch: Path) -> dict:
    """Seconds from Popen to the page drawn, split at the health check; plus the server's state after it."""
    started = time.perf_counter()
    server = start_streamlit(script, scratch, server_env(str(scratch / "runs")))
    try:
        wait_healthy(server)
        healthy = time.perf_counter()
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(server.url + "/")
        wait_rendered(page, title)
        drawn = time.perf_counter()
        packages = native_packages(server.process.pid)
        rss = rss_bytes(server.process.pid)
        context.close()
    finally:
        stop_server(server)
    return {"total": drawn - started, "to_healthy": healthy - started, "page": drawn - healthy, "packages": packages, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="A/B pairs (default 5)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs (their folder is printed)")
    args = parser.parse_args()
    print_header("Cold start: DCNN Studio home page vs a hello-world Streamlit app")
    scratch = temporary_folder("bench-cold-start-")
    hello = hello_app(scratch / "hello")
    app = ROOT / "app.py"
    results: dict[str, list[dict]] = {"app": [], "hello": []}
    with chromium() as browser:
        trial(browser, app, "DCNN Studio", scratch)  # warm the OS file cache and Chromium once for each; not counted
        trial(browser, hello, "Hello", scratch)
        for repeat in range(args.repeats):
            order = ("app", "hello") if repeat % 2 == 0 else ("hello", "app")
            for which in order:
                results[which].append(
                    trial(browser, app, "DCNN Studio", scratch) if which == "app" else trial(browser, hello, "Hello", scratch)
                )
            a, b = results["app"][-1], results["hello"][-1]
            print(f"  repeat {repeat + 1}/{args.repeats} ({' then '.join(order)}): app {a['total']:.2f} s "
                  f"(healthy {a['to_healthy']:.2f} + page {a['page']:.2f}), hello {b['total']:.2f} s "
                  f"(healthy {b['to_healthy']:.2f} + page {b['page']:.2f}) → ratio {a['total'] / b['total']:.3f}", flush=True)  # fmt: skip
    ratios = summarise([a["total"] / b["total"] for a, b in zip(results["app"], results["hello"], strict=True)])
    print()
    for which, label in (("app", "DCNN Studio"), ("hello", "hello world")):
        runs = results[which]
        print(f"{label:12} launch → drawn: {summarise([r['total'] for r in runs]).format('.2f', ' s')}; "
              f"of which launch → healthy {summarise([r['to_healthy'] for r in runs]).format('.2f', ' s')}, "
              f"healthy → drawn {summarise([r['page'] for r in runs]).format('.2f', ' s')}; "
              f"server RSS after it {summarise([r['rss'] / 2**20 for r in runs]).format('.0f', ' MiB')}")  # fmt: skip
    print(f"RATIO app / hello world: {ratios.format('.3f')}  — target ≤ 1.3: {'met' if ratios.median <= 1.3 else 'NOT met'}")
    loaded = set().union(*(r["packages"] for r in results["app"]))
    hello_loaded = set().union(*(r["packages"] for r in results["hello"]))
    print(f"Native packages mapped in the app server after the home page: {', '.join(sorted(loaded))}")
    print(f"  … and in the hello-world server: {', '.join(sorted(hello_loaded))}")
    print(f"  heavy ones in the app server: {', '.join(sorted(p for p in loaded if p in HEAVY)) or 'none'} "
          f"(tensorflow loaded: {'YES' if 'tensorflow' in loaded else 'no'})")  # fmt: skip
    if args.keep_logs:
        print(f"Server logs: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
