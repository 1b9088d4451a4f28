"""Workbench latency in a real browser (Debian's chromium through Playwright) on a generated 1M-row file:
page load, table page flips (plain, sorted, searched), and how long a metric line written to a run's
metrics.jsonl takes to appear on the run page. Prints p50/p95 in milliseconds.

    .venv/bin/python bench/ui.py               # 1,000,000 rows
    .venv/bin/python bench/ui.py --rows 50000  # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORDS = ["acme", "order", "delivery", "refund", "warranty", "desk", "lamp", "router", "kettle", "battery", "reset"]


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("question,answer\n")
        for i in range(rows):
            question = " ".join(rng.choice(WORDS) for _ in range(6))
            answer = " ".join(rng.choice(WORDS) for _ in range(12))
            handle.write(f"{question} {i}?,{answer}.\n")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ordered)})"


def start_ui(workspace: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "openrecipe", "ui", "--workspace", str(workspace), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(url + "/login", timeout=2).read()
            return process, url
        except OSError:
            time.sleep(0.1)


def flip_pages(page, label: str, count: int) -> list[float]:
    """Click "next" and time until the page label changes (request, server, JSON, rendering)."""
    samples = []
    for _ in range(count):
        before = page.inner_text("#page-label")
        started = time.perf_counter()
        page.click("#next-page")
        page.wait_for_function(f"document.getElementById('page-label').textContent !== {json.dumps(before)}")
        samples.append(1000 * (time.perf_counter() - started))
    print(f"  table page, {label:<24} {percentiles(samples)}")
    return samples


def bench_table(browser, url: str, rows: int, pages: int) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(600_000)
    started = time.perf_counter()
    page.goto(url + "/data?file=big.csv")
    page.wait_for_selector("#data-table tbody tr")
    print(f"  first open (read + validate {rows:,} rows with the CLI's reader): {time.perf_counter() - started:.1f} s")
    loads = []
    for _ in range(10):
        started = time.perf_counter()
        page.goto(url + "/data?file=big.csv")
        page.wait_for_selector("#data-table tbody tr")
        loads.append(1000 * (time.perf_counter() - started))
    print(f"  page load (table shown)             {percentiles(loads)}")
    flip_pages(page, "plain", pages)
    server = page.evaluate(
        """async (count) => { const out = [];
        for (let i = 0; i < count; i++) {
          const page = 1 + Math.floor(Math.random() * 20000);
          const started = performance.now();
          await fetch(`/api/data/page?file=big.csv&page=${page}`).then(r => r.json());
          out.push(performance.now() - started); }
        return out; }""",
        pages,
    )
    print(f"  table page, JSON only (random page) {percentiles(server)}")
    started = time.perf_counter()
    page.click("th[data-column=answer]")
    page.wait_for_selector("th[data-column=answer]:has-text('▲')")
    print(f"  first sort by a text column: {1000 * (time.perf_counter() - started):.0f} ms (then cached)")
    flip_pages(page, "sorted by answer", pages)
    started = time.perf_counter()
    page.fill("#search", "refund warranty")
    page.wait_for_function("document.getElementById('table-status').textContent.includes('/')")
    page.wait_for_timeout(600)
    print(f"  search typed → first page: {1000 * (time.perf_counter() - started):.0f} ms (includes 200 ms debounce)")
    flip_pages(page, "searched + sorted", pages)
    page.close()


def bench_events(browser, url: str, workspace: Path, count: int) -> None:
    """A job whose 'process' is this script: metric lines appended here must show up on its run page."""
    from openrecipe.ui.settings import UiSettings
    from openrecipe.ui.store import Store

    run_dir = workspace / "runs" / "bench"
    (run_dir / "sft").mkdir(parents=True)
    metrics = run_dir / "sft" / "metrics.jsonl"
    metrics.write_text("")
    store = Store(UiSettings(workspace=workspace).state_file)
    job_id = store.add_job("bench", str(run_dir), "bench.yaml", ["run"], pid=os.getpid())
    page = browser.new_page()
    page.goto(f"{url}/runs/{job_id}")
    page.evaluate(
        """() => { window.arrivals = [];
        new MutationObserver(() => window.arrivals.push(Date.now()))
          .observe(document.getElementById('loss-chart'), {attributes: true, attributeFilter: ['data-points']}); }"""
    )
    page.wait_for_timeout(500)
    written = []
    for step in range(1, count + 1):
        written.append(time.time() * 1000)
        with open(metrics, "a") as handle:
            handle.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n")
        page.wait_for_function(f"window.arrivals.length >= {step}")
        time.sleep(random.uniform(0.05, 0.3))
    arrivals = page.evaluate("window.arrivals")
    latencies = [arrived - sent for arrived, sent in zip(arrivals, written, strict=True)]
    print(f"  metric written → shown in the page  {percentiles(latencies)}")
    with store.transaction() as db:
        db.execute("UPDATE jobs SET state = 'finished' WHERE id = ?", (job_id,))
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=40, help="page flips per measurement")
    parser.add_argument("--events", type=int, default=40, help="metric lines for the event latency")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        (workspace / "data").mkdir(parents=True)
        write_csv(workspace / "data" / "big.csv", args.rows)
        process, url = start_ui(workspace)
        print(f"openrecipe ui, {args.rows:,}-row CSV ({(workspace / 'data' / 'big.csv').stat().st_size / 1e6:.0f} MB)")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                bench_table(browser, url, args.rows, args.pages)
                bench_events(browser, url, workspace, args.events)
                browser.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()


if __name__ == "__main__":
    main()
