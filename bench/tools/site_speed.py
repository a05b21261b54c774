"""How long the results explorer takes to build and to open: `make bench-site-speed` ->
results/speed.md, section "Results explorer: build and page load".

The site of the store (the committed one by default) is built into a scratch folder three times:
from nothing, again with nothing changed (every run page carried over), and after one run's
metrics changed (that run's page rendered again). Then headless Chromium (Debian's, as the
browser tests use) opens the leaderboard, every dataset page and three run pages from file://, and
the navigation timing's load event is read (median of 3 loads each). Measured, never asserted.

    python -m bench.tools.site_speed [--out results/speed.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench import site, store
from bench.run import env
from bench.tools.speed import replace_section

HEADING = "## Results explorer: build and page load"
LOAD_MS = "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;"


def timed(out: Path) -> tuple[float, site.Built]:
    start = time.perf_counter()
    built = site.build(out)
    return time.perf_counter() - start, built


def page_loads(out: Path, pages: list[Path]) -> list[tuple[str, float]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    rows = []
    try:
        for page in pages:
            times = []
            for _ in range(3):
                driver.get(page.as_uri())
                times.append(driver.execute_script(LOAD_MS))
            rows.append((page.relative_to(out).as_posix(), statistics.median(times)))
    finally:
        driver.quit()
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tools.site_speed")
    p.add_argument("--out", default="results/speed.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "explorer"
        fresh, built = timed(out)
        same, again = timed(out)
        key = next(r["key"] for r in store.load_runs())
        m = json.loads((store.run_dir(key) / "metrics.json").read_text())
        m["wall_time_s"] = (m.get("wall_time_s") or 0) + 1
        copy = Path(scratch) / "copy"  # one run changed: in a copy of the store, never the store itself
        shutil.copytree(store.results_dir(), copy / "results")
        (copy / "results" / "runs" / key / "metrics.json").write_text(json.dumps(m))
        shutil.copytree(out, copy / "explorer")
        with store.using(store.Store(copy / "results", copy / "cache")):
            one, changed = timed(copy / "explorer")
        pages = [out / "index.html"]
        pages += [out / f"{p.stem}.html" for p in sorted(store.results_dir().glob("*.md"))]
        runs = sorted((out / "runs").glob("*.html"))
        pages += runs[:: max(1, len(runs) // 3)][:3]
        loads = page_loads(out, [p for p in pages if p.is_file()])
    machine = env.device_name(torch.device("cpu"))
    lines = [
        HEADING,
        "",
        f"`python -m bench site` on the committed store ({built.runs} runs, {built.pages} pages, "
        f"{built.bytes / 1e6:.1f} MB written) on {machine}, {env.cpu_model()}, one process; page loads in "
        "headless Chromium from file:// (load event, median of 3). Made by `make bench-site-speed`.",
        "",
        "| build | run pages rendered | seconds |",
        "|:--|--:|--:|",
        f"| from nothing | {built.rendered} | {fresh:.1f} |",
        f"| again, nothing changed | {again.rendered} | {same:.1f} |",
        f"| one run's metrics changed | {changed.rendered} | {one:.1f} |",
        "",
        "| page | load ms |",
        "|:--|--:|",
        *(f"| {name} | {ms:.0f} |" for name, ms in loads),
        "",
    ]
    text = "\n".join(lines)
    replace_section(Path(args.out), text, HEADING)
    print(text)


if __name__ == "__main__":
    main()
