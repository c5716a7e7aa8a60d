"""The dashboard (`/ui`) in a real headless Chromium, against the real stack.

Debian's Chromium and ChromeDriver (`scripts/ensure-chromium.sh`, run by `make
test`), driven by Selenium: the list with fitted models, a fit started through
the API appearing and turning `done` on an open page, the version chart,
promote and rollback through the page changing what predict answers, the
try-it form and CSV answering what the API answers, the operations page, a
wrong token, and 10,000 models paged and filtered by the gateway (their first
screen is timed by `benchmarks/dashboard.py`, not here). Every page is
photographed at a laptop's and a phone's width into `build/screenshots/`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from benchmarks.dashboard import CHROMEDRIVER, CHROMIUM, browser as start_browser, populate, screen
from gateway import dashboard
from gateway.auth import new_token

from .conftest import IN_CI, new_database
from .stack import ROOT, Stack, wait_for

pytestmark = pytest.mark.integration

SLOW = "tests.families_for_tests:slow"
SHOTS = Path(os.environ.get("ML_SERVER_SCREENSHOTS", ROOT / "build" / "screenshots"))
SIZES = {"laptop": (1366, 900), "phone": (390, 844)}
# A page ready to be looked at: what each page shows once its data is in.
READY = {
    "models": "#models-rows tr[data-model-key]",
    "model": "#versions-rows tr",
    "try": "#try-rows tr",
    "ops": "#ops-families tbody tr[data-family]",
    "token": "dialog#token-dialog[open]",
}


# ---- the browser ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module, at a laptop's size."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        message = f"{', '.join(missing)} missing: scripts/ensure-chromium.sh installs Debian's chromium and chromium-driver"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    driver = start_browser(*SIZES["laptop"])
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = 20) -> Any:
    """Wait for `condition` (a deadline, never a sleep); a failure says what was awaited and what the page showed."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except WebDriverException as e:
        shown = driver.execute_script("return document.body ? document.body.innerText.slice(0, 1500) : ''")
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; the page shows:\n{shown}") from e


def open_page(driver: WebDriver, url: str, route: str) -> None:
    """A fresh load of the dashboard at `route` (not a same-page hash change)."""
    driver.get("about:blank")
    driver.get(f"{url}/ui#{route}")


def element(driver: WebDriver, css: str, timeout: float = 20) -> WebElement:
    return until(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, css)), None), f"{css} on the page", timeout)


def text_of(driver: WebDriver, css: str) -> str:
    """The text `css` shows now, read in one step (the page may draw it again at any moment)."""
    text: str = driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : ''", css)
    return text


def wait_text(driver: WebDriver, css: str, expected: str | Callable[[str], bool], timeout: float = 20) -> str:
    check = expected if callable(expected) else (lambda t: t == expected)
    return until(driver, lambda d: (t := text_of(d, css)) and check(t) and t, f"{css} to read {expected!r} (it reads {text_of(driver, css)!r})", timeout)


def click(driver: WebDriver, css: str) -> None:
    """Click what `css` finds when it is there (found again if the page drew it anew meanwhile)."""
    until(driver, lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True, f"{css} to click")


def confirm_dialog(driver: WebDriver) -> WebElement:
    return element(driver, "dialog#confirm[open]")


def screenshots(driver: WebDriver, name: str, again: Callable[[WebDriver], None] | None = None) -> None:
    """The page as it is, at a laptop's width, then loaded again at a phone's (`again` brings it back to the
    same state): the visible screen and the whole page, as PNG files in SHOTS."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():
        if size != "laptop":
            screen(driver, width, height, phone=True)
            driver.refresh()
        page = next((p for p in READY if name.startswith(p)), None)
        if page:
            element(driver, READY[page])
        if again is not None and size != "laptop":
            again(driver)
        driver.execute_script("return new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        driver.save_screenshot(str(SHOTS / f"{name}-{size}.png"))
        layout = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        full = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": width, "height": min(layout["height"], 6000), "scale": 1}},
        )
        (SHOTS / f"{name}-{size}-full.png").write_bytes(base64.b64decode(full["data"]))
    screen(driver, *SIZES["laptop"])
    driver.refresh()
    if page:
        element(driver, READY[page])


def loaded_from(driver: WebDriver) -> set[str]:
    """The origins of everything the page loaded."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    return {re.match(r"^[a-z]+://[^/]+", n).group(0) for n in names if re.match(r"^[a-z]+://", n)}  # type: ignore[union-attr]


# ---- data ------------------------------------------------------------------------------------------------


def numbers(n: int = 200, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])


def fit(stack: Stack, family: str, x: pd.DataFrame, y: pd.DataFrame, name: str, **extra: Any) -> dict[str, Any]:
    r = requests.post(stack.fit_url(family), json={"x": x.to_json(), "y": y.to_json(), "name": name, **extra}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


def predict(stack: Stack, key: str, x: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """The API's answer for rows `x`, as {columns, data} (orient split)."""
    r = requests.post(stack.model_url(key, "predict"), json={"x": x.to_json(orient="split"), "orient": "split", **extra}, timeout=30)
    assert r.status_code == 200, r.text
    answer = json.loads(r.json()["data"])
    return {"columns": [str(c) for c in answer["columns"]], "data": answer["data"]}


@pytest.fixture(scope="module")
def slow(stack: Stack) -> Stack:
    """The shared stack plus a consumer of `slow` (a logistic regression that sleeps `delay` s before it fits)."""
    if not any(f == SLOW and p.poll() is None for f, p in stack.consumers):
        stack.start_consumer(SLOW)
    return stack


# ---- the shared stack --------------------------------------------------------------------------------------


def test_page_and_its_files_come_from_the_gateway_alone(stack: Stack) -> None:
    page = requests.get(f"{stack.url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    referenced = set(re.findall(r'(?:href|src)="ui/([^"]+)"', page.text))
    assert referenced >= {"style.css", "app.js", "icon.svg"}
    modules = {p.name for p in (ROOT / "gateway" / "ui").glob("*.js")} | {dashboard.GENERATED}  # paths.js: made from contracts.paths
    assert modules <= referenced, "every module is preloaded by the page"
    for name in sorted(referenced | modules):
        asset = requests.get(f"{stack.url}/ui/{name}", timeout=10)
        assert asset.status_code == 200, name
        kind = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[name.rsplit(".", 1)[1]]
        assert asset.headers["Content-Type"].startswith(kind), (name, asset.headers["Content-Type"])
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        text = asset.text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace: a name, not a fetch
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), f"{name} names an address elsewhere"
        for imported in re.findall(r'from "\./([^"]+)"', text):
            assert imported in modules, (name, imported)
    slash = requests.get(f"{stack.url}/ui/", timeout=10, allow_redirects=False)
    assert slash.status_code == 308 and slash.headers["Location"] == "/ui", slash.status_code
    for missing in ("nope.js", "index.html", "..%2fapp.py", "../app.py"):
        assert requests.get(f"{stack.url}/ui/{missing}", timeout=10).status_code == 404, missing


def test_feed_streams_every_models_changes_and_answers_json_without_asking_for_a_stream(slow: Stack) -> None:
    stack = slow
    x = numbers(seed=12)
    y = pd.DataFrame({"y": (x["a"] > 0).astype(int)})
    with requests.get(f"{stack.url}/events", params={"family": "slow"}, headers={"Accept": "text/event-stream"}, stream=True, timeout=(5, 30)) as feed:
        assert feed.status_code == 200 and feed.headers["Content-Type"].startswith("text/event-stream")
        other = fit(stack, "linreg", x, pd.DataFrame({"t": x["b"]}), f"{stack.namespace}-ui-feed-other")["model_key"]
        key = fit(stack, "slow", x, y, f"{stack.namespace}-ui-feed", modkwargs={"delay": 1.0})["model_key"]
        in_flight = wait_for(
            lambda: [v for v in requests.get(f"{stack.url}/events", timeout=10).json()["versions"] if v["model_key"] == key],
            15,
            what="the fit among the versions in flight",
        )
        assert in_flight[0]["status"] in ("queued", "running") and in_flight[0]["family"] == "slow"
        seen: list[tuple[str, str]] = []
        event = None
        for line in feed.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "status":
                data = json.loads(line.partition(":")[2])
                seen.append((data["model_key"], data["status"]))
                if (key, "done") in seen:
                    break
    assert (key, "running") in seen and (key, "done") in seen
    assert all(k != other for k, _ in seen), "the feed of family slow sent another family's model"
    assert requests.get(f"{stack.url}/events", params={"family": "Not A Family"}, timeout=10).status_code == 422


def test_list_shows_fitted_models_and_a_fit_turns_done_without_a_reload(slow: Stack, browser: WebDriver) -> None:
    stack = slow
    x = numbers()
    fitted = fit(stack, "linreg", x, pd.DataFrame({"t": x["a"] * 2}), f"{stack.namespace}-ui-list")
    assert stack.wait_finished("linreg", fitted["model_key"])["status"] == "done"

    open_page(browser, stack.url, "/models")
    row = f'#models-rows tr[data-model-key="{fitted["model_key"]}"]'
    wait_text(browser, f"{row} .status", "done")
    assert f"{stack.namespace}-ui-list" in text_of(browser, row) and "linreg" in text_of(browser, row)
    wait_text(browser, "#live", "Live")
    browser.execute_script("window.stillTheSamePage = true")

    # A fit through the API, while the page is open: it appears, runs, and turns done on the page.
    y = pd.DataFrame({"y": (x["a"] + x["b"] > 0).astype(int)})
    started = fit(stack, "slow", x, y, f"{stack.namespace}-ui-live", modkwargs={"delay": 1.5})
    live = f'#models-rows tr[data-model-key="{started["model_key"]}"]'
    seen = wait_text(browser, f"{live} .status", lambda t: t in ("queued", "running"))
    wait_text(browser, f"{live} .status", "done", timeout=60)
    assert browser.execute_script("return window.stillTheSamePage") is True, "the page was loaded again"
    assert seen in ("queued", "running")
    assert loaded_from(browser) == {stack.url}, "the page loaded something from elsewhere"

    # Keyboard only: search by name, Enter; the model's link, Enter.
    search = browser.find_element(By.ID, "filter-q")
    search.send_keys(f"{stack.namespace}-ui-list", Keys.ENTER)
    wait_text(browser, "#models-summary", "1–1 of 1 models")
    browser.find_element(By.CSS_SELECTOR, f"{row} a").send_keys(Keys.ENTER)
    wait_text(browser, "h1", lambda t: t.startswith(f"{stack.namespace}-ui-list"))
    open_page(browser, stack.url, "/models")
    element(browser, live)
    screenshots(browser, "models")


def test_model_page_charts_versions_and_its_promote_and_rollback_change_what_predict_answers(stack: Stack, browser: WebDriver) -> None:
    x = numbers(seed=6)
    noise = np.random.default_rng(7).normal(size=(2, len(x)))
    name = f"{stack.namespace}-ui-model"
    key = fit(stack, "linreg", x, pd.DataFrame({"t": x["a"] * 2 + noise[0]}), name)["model_key"]
    stack.wait_finished("linreg", key)
    fit(stack, "linreg", x, pd.DataFrame({"t": 1 - 3 * x["b"] + noise[1] / 2}), name, retrain=True)
    assert stack.wait_finished("linreg", key, version=2)["version"] == 2
    assert requests.put(stack.model_url(key, "aliases", "champion"), json={"version": 1}, timeout=10).status_code == 200
    assert requests.patch(stack.model_url(key), json={"serving": "champion"}, timeout=10).status_code == 200
    probe = x.head(3)
    first, second = predict(stack, key, probe, version=1), predict(stack, key, probe, version=2)
    assert first != second
    assert predict(stack, key, probe) == first

    open_page(browser, stack.url, f"/models/{key}")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions-rows tr")) == 2, "two versions")
    charts = browser.find_elements(By.CSS_SELECTOR, "#version-charts svg")
    assert [c.get_attribute("data-points") for c in charts] == ["2", "2"]  # score and training time of each version
    assert len(charts[0].find_elements(By.CSS_SELECTOR, "circle.dot")) == 2
    assert len(charts[1].find_elements(By.CSS_SELECTOR, "rect.bar")) == 2
    assert "champion" in text_of(browser, '#versions-rows tr[data-version="1"]')
    schema = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.schema tbody td:first-child")]
    assert schema == ["a", "b", "c"]
    screenshots(browser, "model")

    # Promote version 2 to champion (the alias predicts use): after confirming, predict answers version 2.
    click(browser, "#promote-v2")
    confirm_dialog(browser)
    assert browser.find_element(By.ID, "promote-alias").get_attribute("value") == "champion"
    assert browser.find_element(By.ID, "promote-serve").is_selected()
    click(browser, "#confirm-ok")
    wait_text(browser, '#aliases-rows tr[data-alias="champion"] .alias-version', "v2")
    wait_for(lambda: predict(stack, key, probe) == second, 15, what="predict answering version 2")

    # Roll back: champion goes back to version 1, and so does predict.
    click(browser, "#rollback-champion")
    assert "from version 2 back to version 1" in confirm_dialog(browser).text
    click(browser, "#confirm-ok")
    wait_text(browser, '#aliases-rows tr[data-alias="champion"] .alias-version', "v1")
    wait_for(lambda: predict(stack, key, probe) == first, 15, what="predict answering version 1 again")
    assert any("moved champion from v2 to v1" in li.text for li in browser.find_elements(By.CSS_SELECTOR, ".history li"))

    # Delete asks first: Escape keeps the model, Delete removes it.
    click(browser, "#delete-model")
    confirm_dialog(browser)
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog#confirm[open]"), "the dialog to close")
    assert requests.get(stack.model_url(key), timeout=10).status_code == 200
    click(browser, "#delete-model")
    confirm_dialog(browser)
    click(browser, "#confirm-ok")
    until(browser, lambda d: d.execute_script("return location.hash") == "#/models", "the list after the delete")
    wait_text(browser, ".message[data-kind=ok] p", f"Deleted {name}")
    assert requests.get(stack.model_url(key), timeout=10).status_code == 404

    # A model that is not there is a message, not a blank page.
    open_page(browser, stack.url, f"/models/{key}")
    wait_text(browser, ".error-box p", lambda t: t.startswith("404: ") and key in t)


def test_try_it_answers_what_the_api_answers(stack: Stack, browser: WebDriver) -> None:
    rng = np.random.default_rng(8)
    x = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "color": rng.choice(["red", "green", "blue"], size=300)})
    y = pd.DataFrame({"label": np.where(x["a"] + (x["color"] == "red") > 0.4, "yes", "no")})
    key = fit(stack, "logreg", x, y, f"{stack.namespace}-ui-try")["model_key"]
    assert stack.wait_finished("logreg", key)["status"] == "done"
    rows = pd.DataFrame({"a": [0.3, -0.5], "b": [-1.2, 0.7], "color": ["red", "blue"]})
    labels = predict(stack, key, rows)
    probabilities = predict(stack, key, rows, kwargs={"method": "predict_proba"})

    def fill(driver: WebDriver) -> None:
        """The rows typed into the form, and Predict."""
        element(driver, "#try-rows tr")
        click(driver, "#try-add-row")
        for i, record in enumerate(rows.to_dict("records")):
            row = f"#try-rows tr:nth-child({i + 1})"
            driver.find_element(By.CSS_SELECTOR, f'{row} [aria-label="a (number)"]').send_keys(str(record["a"]))
            driver.find_element(By.CSS_SELECTOR, f'{row} [aria-label="b (number)"]').send_keys(str(record["b"]))
            Select(driver.find_element(By.CSS_SELECTOR, f'{row} [aria-label="color (string)"]')).select_by_value(record["color"])
        click(driver, "#try-submit")
        until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-answer tbody tr")) == len(rows), "the answer")

    def answered() -> tuple[list[Any], list[list[Any]], list[str]]:
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-answer tbody tr")) == len(rows), "the answer")
        got = [json.loads(td.get_attribute("data-value")) for td in browser.find_elements(By.CSS_SELECTOR, "#try-answer td.prediction")]
        cells = browser.find_elements(By.CSS_SELECTOR, "#try-answer td.probability")  # row by row
        heads = [t for th in browser.find_elements(By.CSS_SELECTOR, "#try-answer thead th") if (t := th.get_attribute("textContent") or "").startswith("P(")]
        per_row = len(cells) // len(rows)
        proba = [[json.loads(td.get_attribute("data-value")) for td in cells[i * per_row:(i + 1) * per_row]] for i in range(len(rows))]
        return got, proba, heads

    open_page(browser, stack.url, f"/models/{key}/try")
    fill(browser)
    got, proba, heads = answered()
    assert got == [r[0] for r in labels["data"]]
    assert heads == [f"P({c})" for c in probabilities["columns"]]
    np.testing.assert_allclose(proba, probabilities["data"], rtol=1e-12)
    screenshots(browser, "try", again=fill)

    # The same rows pasted as CSV (columns in another order): the same answer.
    open_page(browser, stack.url, f"/models/{key}/try")
    element(browser, "#try-rows tr")
    click(browser, "#mode-csv")
    csv = browser.find_element(By.ID, "try-csv")
    csv.clear()
    csv.send_keys(rows[["color", "b", "a"]].to_csv(index=False))
    click(browser, "#try-submit")
    got, proba, _ = answered()
    assert got == [r[0] for r in labels["data"]]
    np.testing.assert_allclose(proba, probabilities["data"], rtol=1e-12)

    # A CSV the model can't read is a message naming what is wrong.
    csv.clear()
    csv.send_keys("a,b\n1,2\n")
    click(browser, "#try-submit")
    wait_text(browser, "#try-result .error-box p", lambda t: "no column color" in t)


def test_try_it_shows_the_same_request_over_v2_and_both_forms_run(stack: Stack, browser: WebDriver) -> None:
    rng = np.random.default_rng(11)
    x = pd.DataFrame({"a": rng.normal(size=200), "color": rng.choice(["red", "blue"], size=200)})
    y = pd.DataFrame({"label": np.where(x["a"] + (x["color"] == "red") > 0.4, "yes", "no")})
    key = fit(stack, "logreg", x, y, f"{stack.namespace}-ui-try-v2")["model_key"]
    assert stack.wait_finished("logreg", key)["status"] == "done"
    rows = pd.DataFrame({"a": [0.3, -0.5], "color": ["red", "blue"]})
    labels = [r[0] for r in predict(stack, key, rows)["data"]]

    open_page(browser, stack.url, f"/models/{key}/try")
    element(browser, "#try-rows tr")
    click(browser, "#try-add-row")
    for i, record in enumerate(rows.to_dict("records")):
        row = f"#try-rows tr:nth-child({i + 1})"
        browser.find_element(By.CSS_SELECTOR, f'{row} [aria-label="a (number)"]').send_keys(str(record["a"]))
        Select(browser.find_element(By.CSS_SELECTOR, f'{row} [aria-label="color (string)"]')).select_by_value(record["color"])
    click(browser, "#try-submit")
    element(browser, "#try-v2")
    click(browser, "#try-v2 summary")
    curl = text_of(browser, "#try-curl")
    code = element(browser, "#try-triton").get_attribute("textContent") or ""

    # The curl command's URL and body, sent as curl would send them.
    url = curl.split("'")[1]
    body = json.loads(curl.split(" -d '", 1)[1].rsplit("'", 1)[0])
    assert url == f"{stack.url}/v2/models/{key}/infer" and body["parameters"] == {"content_type": "pd"}
    answer = requests.post(url, json=body, timeout=30).json()
    assert answer["outputs"][0]["data"] == labels and answer["outputs"][1]["name"] == "predict_proba"
    # The Python code, run as it is shown.
    namespace: dict[str, Any] = {}
    exec(compile(code, "try-triton", "exec"), namespace)  # noqa: S102 - the page's own example, against this stack
    assert [v.decode() for v in namespace["result"].as_numpy("predict")] == labels


def test_operations_page_shows_families_queues_predicts_and_latency(stack: Stack, browser: WebDriver) -> None:
    x = numbers(seed=9)
    key = fit(stack, "linreg", x, pd.DataFrame({"t": x["c"]}), f"{stack.namespace}-ui-ops")["model_key"]
    stack.wait_finished("linreg", key)
    for _ in range(3):
        predict(stack, key, x.head(2))

    open_page(browser, stack.url, "/ops")
    row = '#ops-families tr[data-family="linreg"]'
    element(browser, row)
    train, predict_consumers = (int(n) for n in text_of(browser, f"{row} .consumers").split(" / "))
    assert train >= 1 and predict_consumers >= 1
    assert re.fullmatch(r"\d+ / \d+", text_of(browser, f"{row} .depth"))
    assert int(text_of(browser, f"{row} .predicts").replace(",", "")) >= 3
    assert re.search(r"\d", text_of(browser, f"{row} .latency"))
    wait_text(browser, "#ops-cards .card:first-child .value", "yes")
    wait_text(browser, f"{row} .rate", lambda t: t != "—", timeout=15)  # a rate once a second reading came in
    screenshots(browser, "ops")


# ---- a gateway with tokens, on a store of 10,000 models -----------------------------------------------------


@dataclass
class Guarded:
    stack: Stack
    written: dict[str, Any]
    read: str
    write: str


@pytest.fixture(scope="module")
def guarded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """A gateway with a read and a write token, alone on a store of its own (the session's kind) with 10,000 models."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with new_database(kind, tmp_path_factory.mktemp("ui-10k")) as url:
        written = populate(url, 10_000)
        read, read_entry = new_token("read", "viewer")
        write, write_entry = new_token("write", "operator")
        stack = Stack(url, tmp_path_factory.mktemp("ui-guarded"))
        try:
            stack.start_gateway(ML_SERVER_TOKENS=f"{read_entry},{write_entry}")
            yield Guarded(stack, written, read, write)
        finally:
            stack.stop()


def use_token(driver: WebDriver, token: str) -> None:
    element(driver, "dialog#token-dialog[open]")
    field = driver.find_element(By.ID, "token-input")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "token-use").click()


def test_a_wrong_token_is_an_error_and_10000_models_page_and_filter_on_the_gateway(guarded: Guarded, browser: WebDriver) -> None:
    url, written = guarded.stack.url, guarded.written
    assert written["total"] == 10_000

    open_page(browser, url, "/models")
    wait_text(browser, "#token-error", "401: this gateway needs `Authorization: Bearer <token>`")
    use_token(browser, "not-" + guarded.read)
    wait_text(browser, "#token-error", "401: the bearer token is not valid")
    wait_text(browser, ".message[data-kind=error] p", "401: the bearer token is not valid")
    screenshots(browser, "token")

    use_token(browser, guarded.read)
    wait_text(browser, "#models-summary", "1–50 of 10,000 models")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#models-rows tr[data-model-key]")) == 50
    assert not browser.find_elements(By.CSS_SELECTOR, '.message[data-kind="error"]')
    first_screen = browser.execute_script("return performance.getEntriesByName('ml-first-screen').map((e) => e.startTime)")
    assert len(first_screen) == 1
    print(f"first screen of 10,000 models in this test's browser: {first_screen[0]:.0f} ms after navigation (token typed in between)")
    screenshots(browser, "models-10k")

    click(browser, "#page-next")
    wait_text(browser, "#models-summary", "51–100 of 10,000 models")
    assert "page=2" in browser.execute_script("return location.hash")
    Select(browser.find_element(By.ID, "filter-family")).select_by_value("forest")
    wait_text(browser, "#models-summary", f"1–50 of {written['family']['forest']:,} models")
    assert {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#models-rows td:nth-child(2)")} == {"forest"}
    browser.find_element(By.XPATH, "//button[text()='Clear']").click()
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
    wait_text(browser, "#models-summary", f"1–50 of {written['status']['failed']:,} models")
    tag = browser.find_element(By.ID, "filter-tag")
    tag.send_keys("churn", Keys.ENTER)
    expected = len([i for i in range(10_000) if i % 7 == 0 and i % 211 and i % 101 and i % 17 == 0])
    wait_text(browser, "#models-summary", lambda t: t.endswith(f"of {expected:,} models"))

    # Looking is for a read token; acting is not: a delete with it is refused, and says so.
    open_page(browser, url, "/models/logreg-bulk000006")
    element(browser, "#versions-rows tr")
    click(browser, "#delete-model")
    confirm_dialog(browser)
    click(browser, "#confirm-ok")
    wait_text(browser, ".message[data-kind=error] p", lambda t: t.startswith("403: a read token may not DELETE"))
    headers = {"Authorization": f"Bearer {guarded.read}"}
    assert requests.get(f"{url}/models/logreg-bulk000006", headers=headers, timeout=10).status_code == 200
    browser.get("about:blank")  # the page lets go of its feed before this gateway stops


def test_search_page_shows_the_leaderboard_and_the_winner_with_held_out_scores(stack: Stack, browser: WebDriver) -> None:
    from client import ModelClient

    x = numbers(seed=8)
    y = (x["a"] - x["b"] > 0).astype(int).rename("label")
    name = f"{stack.namespace}-ui-search"
    board = ModelClient(stack.url).search("logreg", x, y, name=name, param_grid={"C": [0.01, 1.0, 100.0]}, cv=3, alias="champion", progress=False)
    search = board.attrs["search"]
    open_page(browser, stack.url, f"/searches/{search['id']}")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#leaderboard-rows tr")) == 3, "three candidates")
    assert "3 of 3" in text_of(browser, "#search-progress")
    first = text_of(browser, "#leaderboard-rows tr:first-child")
    assert first.startswith("1") and f"{board['mean_test_score'].iloc[0]:.4f}"[:5] in first
    browser.find_element(By.CSS_SELECTOR, f'a[href="#/models/{search["model_key"]}"]').click()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, READY["model"]), "the winner's page")
    label = browser.find_element(By.CSS_SELECTOR, "#version-charts figcaption").text
    assert label.startswith("Held-out"), label  # scores on rows the version did not learn from, not training
    assert "champion" in text_of(browser, "#versions-rows tr")


def test_a_long_history_is_paged(stack: Stack, browser: WebDriver) -> None:
    x = numbers(seed=9)
    key = fit(stack, "linreg", x, pd.DataFrame({"t": x["a"]}), f"{stack.namespace}-ui-history")["model_key"]
    stack.wait_finished("linreg", key)
    for i in range(17):  # 1 fit and 17 descriptions: 18 entries
        assert requests.patch(stack.model_url(key), json={"description": f"take {i}"}, timeout=10).status_code == 200
    open_page(browser, stack.url, f"/models/{key}")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-entries li")) == 15, "the first 15 entries")
    assert "15 of 18" in text_of(browser, "#history-title + ul + p")
    browser.find_element(By.ID, "history-more").click()
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-entries li")) == 18, "every entry")
    assert not browser.find_elements(By.ID, "history-more")
