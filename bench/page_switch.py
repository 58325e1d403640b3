"""Page switch time for each page of a warm DCNN Studio, vs a switch in a minimal two-page Streamlit app.

Two servers run side by side: the app and a two-page ``st.navigation`` app whose pages are one
``st.title`` each. One browser session per server. After a warm-up (every page visited twice; the
Data page's first visit imports TensorFlow), each measurement clicks a sidebar navigation link
and waits until the script state is ``notRunning`` and the new page's title heading is visible.
Every app switch is paired with a switch in the minimal app, in rotating order; the figure per
page is the median of the per-pair ratios, next to the median time in milliseconds and the server
process's CPU time per switch (psutil; steadier than wall time on a loaded machine).
``--compare-before`` adds a third server: a copy of the working tree without the two performance
settings — app.py's ``streamlit_private.keep_keras_session()`` line, and ``runner.postScriptGC = false``
in .streamlit/config.toml (Streamlit's default, a full garbage collection after every run, comes back) —
measured in the same rotation.

    python bench/page_switch.py [--repeats 7] [--compare-before]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path

import psutil
from _common import ROOT, chromium, hello_app, print_header, running_server, server_env, summarise, temporary_folder, wait_rendered

# (sidebar link text, the page's title heading)
APP_PAGES = [("Data", "Data"), ("Model", "Model"), ("Train", "Train"), ("Predict", "Predict"), ("Home", "DCNN Studio")]
HELLO_PAGES = [("Two", "Two"), ("One", "One")]


def open_session(browser, url: str, title: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    wait_rendered(page, title, timeout_ms=120_000)
    return context, page


def switch(page, link: str, title: str) -> float:
    """Seconds from clicking the sidebar link to the page drawn and idle."""
    target = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first
    target.wait_for(state="visible")
    started = time.perf_counter()
    target.click()
    wait_rendered(page, title, timeout_ms=120_000)
    elapsed = time.perf_counter() - started
    if page.locator('[data-testid="stException"]').count():
        print(f"  ! the {link} page shows an exception", flush=True)
    return elapsed


BEFORE_CALLS = ("streamlit_private.keep_keras_session()",)  # app.py's performance line


def before_copy(folder: Path) -> Path:
    """A copy of the working tree whose app.py lacks the ``BEFORE_CALLS`` lines: the app as it was before them."""
    ignore = shutil.ignore_patterns(".git", "runs", "test-artifacts", "__pycache__", ".pytest_cache", ".ruff_cache", "bench")
    shutil.copytree(ROOT, folder, ignore=ignore)
    app = folder / "app.py"
    lines = [line for line in app.read_text().splitlines(keepends=True) if not line.startswith(BEFORE_CALLS)]
    app.write_text("".join(lines))
    config = folder / ".streamlit" / "config.toml"
    config.write_text(config.read_text().replace("postScriptGC = false", "postScriptGC = true"))
    return app


def server_cpu_ms(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return (times.user + times.system) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="switches to each page (default 7)")
    parser.add_argument("--compare-before", action="store_true",
                        help="also run a copy of the app with Streamlit's defaults (full GC after every run, Keras cleared)")  # fmt: skip
    args = parser.parse_args()
    print_header("Page switch: DCNN Studio pages vs a minimal two-page Streamlit app")
    scratch = temporary_folder("bench-page-switch-")
    scripts = {"app": ROOT / "app.py", "minimal": hello_app(scratch / "hello", pages=True)}
    if args.compare_before:
        scripts["before"] = before_copy(scratch / "before")
    env = server_env(str(scratch / "runs"))
    # times[variant][app page title] = [(seconds, server CPU ms)], the minimal app's paired with each app page
    times: dict[str, dict[str, list[tuple[float, float]]]] = {name: {title: [] for _, title in APP_PAGES} for name in scripts}
    with chromium() as browser, contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(running_server(script, scratch, env)) for name, script in scripts.items()}
        pages = {}
        for name, server in servers.items():
            context, page = open_session(browser, server.url, "One" if name == "minimal" else "DCNN Studio")
            stack.callback(context.close)
            pages[name] = page
        for _ in range(2):  # warm-up: every page drawn once at least (TensorFlow import, data sets, caches)
            for name, page in pages.items():
                for link, title in HELLO_PAGES if name == "minimal" else APP_PAGES:
                    switch(page, link, title)
        names = list(scripts)
        turn = 0
        for repeat in range(args.repeats):
            for link, title in APP_PAGES:
                turn += 1
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    target = HELLO_PAGES[turn % 2] if name == "minimal" else (link, title)
                    before = server_cpu_ms(servers[name].process.pid)
                    seconds = switch(pages[name], *target)
                    times[name][title].append((seconds, server_cpu_ms(servers[name].process.pid) - before))
            print(f"  repeat {repeat + 1}/{args.repeats}: "
                  + ", ".join(f"{title} {times['app'][title][-1][0] * 1000:.0f} ms" for _, title in APP_PAGES), flush=True)  # fmt: skip
    shutil.rmtree(scratch, ignore_errors=True)
    print()
    header = "| Page | switch time, median (min–max) | server CPU per switch, median | ÷ minimal app's switch, median (min–max) |"
    if "before" in scripts:
        header += " before the change: time, server CPU | ÷ before, median (min–max) |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for link, title in APP_PAGES:
        app = times["app"][title]
        a = summarise([seconds * 1000 for seconds, _ in app])
        cpu = summarise([ms for _, ms in app])
        r = summarise([x[0] / y[0] for x, y in zip(app, times["minimal"][title], strict=True)])
        row = f"| {link} | {a.median:.0f} ms ({a.low:.0f}–{a.high:.0f}), n={a.count} | {cpu.median:.0f} ms "
        row += f"| {r.median:.2f} ({r.low:.2f}–{r.high:.2f}) |"
        if "before" in scripts:
            other = times["before"][title]
            u = summarise([seconds * 1000 for seconds, _ in other])
            ucpu = summarise([ms for _, ms in other])
            ru = summarise([x[0] / y[0] for x, y in zip(app, other, strict=True)])
            row += f" {u.median:.0f} ms, {ucpu.median:.0f} ms | {ru.median:.2f} ({ru.low:.2f}–{ru.high:.2f}) |"
        print(row)
    minimal = [pair for pairs in times["minimal"].values() for pair in pairs]
    print(f"Minimal app's switches: {summarise([s * 1000 for s, _ in minimal]).format('.0f', ' ms')}; "
          f"its server CPU per switch {summarise([ms for _, ms in minimal]).format('.0f', ' ms')}")  # fmt: skip


if __name__ == "__main__":
    main()
