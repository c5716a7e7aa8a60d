"""The dashboard's first screen with 10,000 models, timed in headless Chromium.

    .venv/bin/python -m benchmarks.dashboard [--models 10000] [--runs 7] [--database-url URL]

Fills a fresh store (a SQLite file, or the database at `--database-url`, which
must be empty and migrated) with `--models` models straight through the
store's tables (no fits: versions, statuses, aliases and tags as a busy
registry has them), starts a gateway on it, and loads `/ui#/models` in
Debian's Chromium (`/usr/bin/chromium`, driven through `/usr/bin/chromedriver`)
`--runs` times, each in a fresh tab after the previous one is closed. The
page marks `ml-first-screen` (a `performance.mark`) in the first animation
frame after the first page of models is in the document; its `startTime` is
the time from the navigation's start to that frame, measured by the browser.
Prints each load and a Markdown line with the median against the 1 s target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import make_url

from contracts import paths
from contracts.status import JobKind, Status
from contracts.store import Alias, Family, Model, Tag, TrainingSession

from .common import BROKER_URL, ROOT, Fatal, free_port, wait_for
from .stack import Processes, purge_namespace

TARGET_SECONDS = 1.0
FAMILIES = ("logreg", "linreg", "forest", "gbm", "sgd", "kmeans")
CHROMIUM = os.environ.get("ML_SERVER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ML_SERVER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
# What the browser needs on this machine: no sandbox as root, no GPU, and no connections of its own
# (the network is closed: background requests would only be refused).
BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def sync_url(url: str) -> str:
    """A database URL for SQLAlchemy's synchronous engine, with the drivers this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def populate(database_url: str, models: int = 10_000, prefix: str = "bulk") -> dict[str, Any]:
    """`models` models written straight into a migrated store, 1 to 3 versions each: most done, some failed,
    running or queued; an alias on every fifth, tags `prod` (every fourth) and `churn` (every seventh).
    The families are registered as a consumer would. What was written, counted by family, status and tag."""
    now = dt.datetime.now(dt.timezone.utc)
    engine = create_engine(sync_url(database_url))
    written: dict[str, Any] = {"models": models, "family": {}, "status": {}, "tag": {"prod": 0, "churn": 0}}
    try:
        with engine.begin() as db:
            have = set(db.execute(select(Family.name)).scalars())
            missing = [f for f in FAMILIES if f not in have]
            if missing:
                db.execute(
                    insert(Family),
                    [{"name": f, "supervised": f != "kmeans", "supports_update": f == "sgd", "params": [], "methods": ["predict"]} for f in missing],
                )
            rows: list[dict[str, Any]] = []
            for i in range(models):
                family = FAMILIES[i % len(FAMILIES)]
                rows.append(
                    {
                        "model_key": f"{family}-{prefix}{i:06d}",
                        "family": family,
                        "name": f"{prefix}-{i:05d}",
                        "created_at": now - dt.timedelta(minutes=10 * (models - i)),
                    }
                )
                written["family"][family] = written["family"].get(family, 0) + 1
            ids = db.execute(insert(Model).returning(Model.id, sort_by_parameter_order=True), rows).scalars().all()
            sessions, aliases, tags = [], [], []
            for i, model_id in enumerate(ids):
                versions = 1 + i % 3
                latest = Status.QUEUED if i % 211 == 0 else Status.RUNNING if i % 101 == 0 else Status.FAILED if i % 17 == 0 else Status.DONE
                written["status"][latest.value] = written["status"].get(latest.value, 0) + 1
                created: dt.datetime = rows[i]["created_at"]
                for v in range(1, versions + 1):
                    status = latest if v == versions else Status.DONE
                    started = created + dt.timedelta(minutes=v) if status is not Status.QUEUED else None
                    finished = started + dt.timedelta(seconds=1 + i % 40) if started and status.finished else None
                    sessions.append(
                        {
                            "model_id": model_id,
                            "version": v,
                            "kind": JobKind.FIT,
                            "status": status,
                            "params": {"retrain": v > 1},
                            "rows": 1000 + 10 * (i % 500) if status.finished else None,
                            "error": "ValueError: Input contains NaN" if status is Status.FAILED else None,
                            "attempts": 0 if status is Status.QUEUED else 1,
                            "created_at": created + dt.timedelta(seconds=v),
                            "started_at": started,
                            "finished_at": finished,
                        }
                    )
                if i % 5 == 0 and (versions > 1 or latest is Status.DONE):
                    aliases.append({"model_id": model_id, "name": "champion", "version": 1, "updated_at": created})
                if i % 4 == 0:
                    tags.append({"model_id": model_id, "version": 0, "name": "prod"})
                    written["tag"]["prod"] += 1
                if i % 7 == 0:
                    tags.append({"model_id": model_id, "version": 0, "name": "churn"})
                    written["tag"]["churn"] += 1
            db.execute(insert(TrainingSession), sessions)
            if aliases:
                db.execute(insert(Alias), aliases)
            if tags:
                db.execute(insert(Tag), tags)
            written["total"] = db.execute(select(func.count()).select_from(Model)).scalar_one()
    finally:
        engine.dispose()
    return written


def browser(width: int = 1366, height: int = 900) -> Any:
    """Headless Chromium through Selenium, showing pages `width` x `height` CSS pixels large (a laptop's)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*BROWSER_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    screen(driver, width, height)
    return driver


def screen(driver: Any, width: int, height: int, phone: bool = False) -> None:
    """Pages are shown `width` x `height` large (the window's frame left out); `phone`: as a phone shows them
    (the viewport meta tag honoured, touch)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone}
    )
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": phone})


FIRST_SCREEN = """
const mark = performance.getEntriesByName("ml-first-screen")[0];
const nav = performance.getEntriesByType("navigation")[0];
const api = performance.getEntriesByType("resource").filter((e) => new URL(e.name).pathname === "/models");
return mark ? {
  first_screen: mark.startTime,
  html: nav.responseEnd,
  dom: nav.domContentLoadedEventEnd,
  api: api.length ? api[0].responseEnd - api[0].startTime : null,
  rows: document.querySelectorAll("#models-rows tr").length,
  summary: document.getElementById("models-summary").textContent,
} : null;
"""


def first_screens(url: str, runs: int) -> list[dict[str, Any]]:
    """Load the models page `runs` times, each in a new tab; the browser's own timings of each load."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    loads = []
    try:
        for _ in range(runs):
            driver.switch_to.new_window("tab")
            driver.get(f"{url}/ui#/models")
            loads.append(WebDriverWait(driver, 30).until(lambda d: d.execute_script(FIRST_SCREEN)))
            previous = driver.current_window_handle
            driver.close()
            driver.switch_to.window([h for h in driver.window_handles if h != previous][0])
    finally:
        driver.quit()
    return loads


def start_gateway(procs: Processes, workdir: Path, database_url: str, namespace: str) -> str:
    """A gateway alone on the store (the page reads the store; no consumer is needed); its URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_SERVER_DATA_DIR": str(workdir / "data"),
        "ML_SERVER_DATABASE_URL": database_url,
        "ML_SERVER_BROKER_URL": BROKER_URL,
        "ML_SERVER_NAMESPACE": namespace,
        "ML_SERVER_PORT": str(port),
        "ML_SERVER_SECRET": uuid.uuid4().hex,
        "ML_SERVER_LOG_LEVEL": "WARNING",
    }
    gateway = procs.spawn("gateway", [sys.executable, "-m", "gateway"], env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        import requests

        if gateway.poll() is not None:
            raise Fatal(f"the gateway exited with {gateway.returncode}:\n{procs.log('gateway')}")
        return requests.get(url + paths.HEALTHZ, timeout=2).ok

    wait_for(up, 60, "the gateway", interval=0.2)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database-url", help="an empty database (migrated here); default: a new SQLite file")
    args = parser.parse_args(argv)
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            print(f"{path} is missing: scripts/ensure-chromium.sh installs Debian's chromium and chromium-driver", file=sys.stderr)
            return 2

    from service import schema

    with tempfile.TemporaryDirectory(prefix="ml-server-ui-bench-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite:///{workdir / 'ml-server.db'}"
        kind = make_url(url).get_backend_name()
        schema.upgrade(url)
        written = populate(url, args.models)
        print(f"store: {written['total']:,} models ({kind}); by status {written['status']}", flush=True)
        procs = Processes(workdir)
        namespace = f"bench-ui-{uuid.uuid4().hex[:8]}"
        try:
            base = start_gateway(procs, workdir, url, namespace)
            loads = first_screens(base, args.runs)
        finally:
            procs.stop()
            purge_namespace(namespace)
    for n, load in enumerate(loads, 1):
        print(
            f"load {n}: first screen {load['first_screen']:.0f} ms (HTML {load['html']:.0f} ms, DOM ready {load['dom']:.0f} ms, "
            f"GET /models {load['api']:.0f} ms); {load['rows']} rows, {load['summary']!r}"
        )
    times = [load["first_screen"] / 1000 for load in loads]
    median = statistics.median(times)
    verdict = "met" if median < TARGET_SECONDS else "MISSED"
    print(
        f"| dashboard first screen, {args.models:,} models ({kind}), headless Chromium | median {median * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}) over {len(times)} loads | target < {TARGET_SECONDS:.0f} s: {verdict} |"
    )
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
