"""Server-sent status events (`GET /models/{model_key}/events`) and the clients' waits that follow them."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from client import (
    AsyncModelClient,
    GenericModelInterface,
    ModelClient,
    NotFound,
    TrainingFailed,
    _wire,
)
from contracts.topology import Topology
from gateway.auth import new_token

from .stack import Stack, wait_for

pytestmark = pytest.mark.integration

SLOW = "tests.families_for_tests:slow"


def data(n: int = 120, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    return x, pd.Series((x["a"] + x["b"] > 0).astype(int), name="y")


@pytest.fixture(scope="module")
def slow_stack(stack: Stack) -> Stack:
    """The shared stack plus a consumer of the `slow` family (a logistic regression that sleeps `delay` s first)."""
    if not any(f == SLOW and p.poll() is None for f, p in stack.consumers):
        stack.start_consumer(SLOW)
    return stack


def read_events(url: str, params: dict[str, Any] | None = None, timeout: float = 30.0, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Each `status` event's data, parsed from the raw stream; ends when the server ends the stream."""
    deadline = time.monotonic() + timeout
    with requests.get(url, params=params, stream=True, timeout=(5, timeout), headers=headers) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/event-stream")
        event, lines = None, []
        for line in r.iter_lines(chunk_size=None, decode_unicode=True):
            assert time.monotonic() < deadline, "the stream did not end in time"
            if line == "":
                if event == "status":
                    yield json.loads("\n".join(lines))
                event, lines = None, []
            elif line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                lines.append(line.partition(":")[2].strip())


def events_url(stack: Stack, key: str) -> str:
    return f"{stack.url}/models/{key}/events"


class Counter:
    """Counts the requests a `requests.Session` sends, by method and path."""

    def __init__(self, session: requests.Session, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        original = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
            self.calls.append((method.upper(), requests.utils.urlparse(url).path))
            return original(method, url, *args, **kwargs)

        monkeypatch.setattr(session, "request", request)

    def count(self, method: str, path: str) -> int:
        return sum(1 for c in self.calls if c == (method, path))


# ---- the stream ------------------------------------------------------------------


def test_stream_starts_with_the_current_status_and_ends_after_done(slow_stack: Stack) -> None:
    client = ModelClient(slow_stack.url)
    x, y = data()
    accepted = client.fit("slow", x, y, name="ev-stream", modkwargs={"delay": 1.0}, wait=False)
    key = accepted["model_key"]
    started = time.monotonic()
    events = list(read_events(events_url(slow_stack, key)))
    statuses = [e["status"] for e in events]
    # First the status in the store when we subscribed (queued, or running if the consumer was quick).
    assert statuses[0] in ("queued", "running") and events[0]["version"] == accepted["version"]
    assert events[0]["model_key"] == key and events[0]["family"] == "slow"
    # Then each change: running (unless it was the first) and done, which ends the stream.
    assert statuses[-1] == "done" and "running" in statuses, statuses
    assert statuses == sorted(statuses, key=["queued", "running", "done"].index), statuses
    assert len(statuses) == len(set(statuses))
    assert events[-1]["rows"] == len(x) and events[-1]["finished_at"]
    assert time.monotonic() - started < 14  # the events, not a keep-alive re-read (every 15 s), carried it


def test_late_subscriber_gets_done_at_once(slow_stack: Stack) -> None:
    client = ModelClient(slow_stack.url)
    x, y = data(seed=4)
    state = client.fit("logreg", x, y, name="ev-late")
    key = state["model_key"]
    started = time.monotonic()
    events = list(read_events(events_url(slow_stack, key), timeout=10))
    assert [(e["status"], e["version"]) for e in events] == [("done", 1)]
    assert time.monotonic() - started < 5
    # A second version; asking for the first one still gets it, done.
    client.fit("logreg", x, y, name="ev-late", retrain=True)
    assert [(e["status"], e["version"]) for e in read_events(events_url(slow_stack, key), {"version": 1})] == [("done", 1)]
    assert [(e["status"], e["version"]) for e in read_events(events_url(slow_stack, key))] == [("done", 2)]


def test_failed_fit_ends_the_stream_with_its_error(slow_stack: Stack) -> None:
    client = ModelClient(slow_stack.url)
    x, y = data(seed=5)
    accepted = client.fit("logreg", x, y, name="ev-failed", modkwargs={"C": -1.0}, wait=False)
    events = list(read_events(events_url(slow_stack, accepted["model_key"])))
    assert events[-1]["status"] == "failed" and "C" in events[-1]["error"]
    with pytest.raises(TrainingFailed, match="C"):
        client.wait("logreg", accepted["model_key"], accepted["version"], timeout=30)


def test_delete_produces_a_deleted_event(slow_stack: Stack) -> None:
    client = ModelClient(slow_stack.url)
    x, y = data(seed=6)
    accepted = client.fit("slow", x, y, name="ev-delete", modkwargs={"delay": 3.0}, wait=False)
    key = accepted["model_key"]
    stream = read_events(events_url(slow_stack, key))
    first = next(stream)
    assert first["status"] in ("queued", "running")
    client.delete("slow", key)
    rest = list(stream)  # ends by itself after the deletion
    assert rest and rest[-1] == {"model_key": key, "family": "slow", "version": accepted["version"], "status": "deleted"}
    assert all(e["status"] in ("running", "deleted") for e in rest), rest


def test_unknown_model_or_version_is_404_and_bad_version_422(slow_stack: Stack) -> None:
    r = requests.get(events_url(slow_stack, "no-such-model"), timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    state = ModelClient(slow_stack.url).fit("logreg", *data(seed=7), name="ev-404")
    r = requests.get(events_url(slow_stack, state["model_key"]), params={"version": 99}, timeout=10)
    assert r.status_code == 404 and "no version 99" in r.json()["error"]["message"]
    r = requests.get(events_url(slow_stack, state["model_key"]), params={"version": "x"}, timeout=10)
    assert r.status_code == 422 and "version" in r.json()["error"]["fields"]


# ---- the clients' waits ---------------------------------------------------------------


def test_wait_follows_the_stream_instead_of_polling(slow_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    client = ModelClient(slow_stack.url)
    requests_sent = Counter(client.http, monkeypatch)
    x, y = data(seed=8)
    state = client.fit("slow", x, y, name="ev-wait", modkwargs={"delay": 1.0})
    assert state["status"] == "done" and state["version"] == 1 and state["rows"] == len(x)
    key = state["model_key"]
    # One fit, one stream, and not a single status poll, though the fit took over a second.
    assert requests_sent.count("POST", "/families/slow/models") == 1
    assert requests_sent.count("GET", f"/models/{key}/events") == 1
    assert requests_sent.count("GET", f"/models/{key}") == 0, requests_sent.calls

    # The seed's client waits the same way.
    mi = GenericModelInterface(slow_stack.url, "slow", delay=1.0)
    seed_sent = Counter(mi.http, monkeypatch)
    mi.fit(x, y, name="ev-wait-seed")
    assert seed_sent.count("GET", f"/models/{mi.model_key}/events") == 1
    assert seed_sent.count("GET", f"/models/{mi.model_key}") == 0, seed_sent.calls


def test_async_wait_follows_the_stream(slow_stack: Stack) -> None:
    x, y = data(seed=9)

    async def go() -> tuple[dict[str, Any], int]:
        async with AsyncModelClient(slow_stack.url) as client:
            polls = 0
            status = client.status

            async def counted(family: str, model_key: str) -> dict[str, Any]:
                nonlocal polls
                polls += 1
                return await status(family, model_key)

            client.status = counted  # type: ignore[method-assign]
            state = await client.fit("slow", x, y, name="ev-async", modkwargs={"delay": 1.0})
            return state, polls

    state, polls = asyncio.run(go())
    assert state["status"] == "done" and state["version"] == 1
    assert polls == 0


def test_wait_polls_when_the_gateway_has_no_stream(slow_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # A gateway from before the stream: its events route answers 404.
    monkeypatch.setattr(_wire, "EVENTS_PATH", "/models/{model_key}/no-such-route")
    r = requests.get(f"{slow_stack.url}/models/x/no-such-route", timeout=10)
    assert r.status_code == 404
    client = ModelClient(slow_stack.url)
    requests_sent = Counter(client.http, monkeypatch)
    x, y = data(seed=10)
    state = client.fit("slow", x, y, name="ev-poll", modkwargs={"delay": 1.0})
    assert state["status"] == "done" and state["rows"] == len(x)
    assert requests_sent.count("GET", f"/models/{state['model_key']}/no-such-route") == 1
    assert requests_sent.count("GET", f"/models/{state['model_key']}") >= 2  # it polled until done

    async def go() -> dict[str, Any]:
        async with AsyncModelClient(slow_stack.url) as aclient:
            return await aclient.fit("slow", x, y, name="ev-poll-async", modkwargs={"delay": 0.5})

    assert asyncio.run(go())["status"] == "done"
    # An unknown model is still NotFound, not a wait forever.
    with pytest.raises(NotFound):
        client.wait("slow", "no-such-model", timeout=10)


def test_progress_bar_forced_and_silenced(slow_stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    client = ModelClient(slow_stack.url)
    x, y = data(seed=11)
    state = client.fit("logreg", x, y, name="ev-progress", progress=True)
    err = capsys.readouterr().err
    assert state["model_key"] in err and "version 1: done" in err, err
    client.fit("logreg", x, y, name="ev-progress", retrain=True, progress=False)
    client.wait("logreg", state["model_key"], progress=None)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""


def test_wait_timeout_raises(slow_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    client = ModelClient(slow_stack.url)
    x, y = data(seed=12)
    accepted = client.fit("slow", x, y, name="ev-timeout", modkwargs={"delay": 4.0}, wait=False)
    key = accepted["model_key"]
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=key):
        client.wait("slow", key, timeout=0.7)
    assert 0.6 < time.monotonic() - started < 2.5

    async def go() -> None:
        async with AsyncModelClient(slow_stack.url) as aclient:
            await aclient.wait("slow", key, timeout=0.7)

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=key):
        asyncio.run(go())
    assert 0.6 < time.monotonic() - started < 2.5

    monkeypatch.setattr(_wire, "EVENTS_PATH", "/models/{model_key}/no-such-route")  # the polling fallback too
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=key):
        client.wait("slow", key, timeout=0.7)
    assert 0.6 < time.monotonic() - started < 3.5
    monkeypatch.undo()
    assert client.wait("slow", key, timeout=60)["status"] == "done"


# ---- the gateway's events queue ------------------------------------------------------


def _consumers_of(queue: str) -> int | None:
    """Consumers of a queue, from rabbitmqctl: the events queue is exclusive to the gateway's connection,
    so another connection can't ask about it with a passive declare. None when there is no such queue."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "consumers"], capture_output=True, text=True, timeout=30, check=True).stdout
    rows = dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)
    return int(rows[queue]) if queue in rows else None


def test_events_survive_a_broker_reconnect(slow_stack: Stack) -> None:
    found = re.findall(r"connected to the broker as 'gateway ([0-9a-f]+)'", slow_stack.logs())
    assert len(found) == 1, slow_stack.logs()
    instance = found[0]
    queue = Topology(slow_stack.namespace).events_queue(instance)
    assert _consumers_of(queue) == 1  # ONE queue of every event for the whole gateway
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    gateway = [line.split("\t")[0] for line in out.splitlines() if f'"gateway {instance}"' in line]
    assert len(gateway) == 1, out
    subprocess.run(["rabbitmqctl", "-q", "close_connection", gateway[0], "test: reconnect"], check=True, timeout=30)
    # aio-pika reconnects after 5 s; ask the broker every second meanwhile, not in a tight loop.
    wait_for(lambda: "connection to the broker was lost" in slow_stack.logs(), 30, interval=0.2, what="the gateway to see it")
    wait_for(lambda: _consumers_of(queue) == 1, 60, interval=1.0, what="the events queue consumed again")
    wait_for(lambda: requests.get(f"{slow_stack.url}/readyz", timeout=5).ok, 60, what="gateway ready again")

    client = ModelClient(slow_stack.url)
    accepted = client.fit("slow", *data(seed=13), name="ev-reconnect", modkwargs={"delay": 0.5}, wait=False)
    started = time.monotonic()
    events = list(read_events(events_url(slow_stack, accepted["model_key"])))
    assert events[-1]["status"] == "done" and "running" in [e["status"] for e in events]
    assert time.monotonic() - started < 14  # carried by events, not by the keep-alive re-read


def test_stream_needs_a_token_when_tokens_are_set(fresh_stack: Stack) -> None:
    read_token, read_entry = new_token("read")
    fresh_stack.env["ML_SERVER_TOKENS"] = read_entry
    fresh_stack.start_gateway()
    url = events_url(fresh_stack, "some-model")
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {read_token}"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"  # past auth: a read token may watch


def test_event_stream_parser() -> None:
    parser = _wire.EventStream()
    lines = ["retry: 2000", "", ": keep-alive", "", "id: 1:done", "event: status", 'data: {"a":', 'data:1}', "", "event: other", "data: {}", ""]
    assert [e for e in map(parser.feed, lines) if e is not None] == [{"a": 1}]
    with pytest.raises(NotFound, match="deleted"):
        _wire.finished({"version": 2, "status": "deleted"}, "k", 2)
    with pytest.raises(TrainingFailed, match="boom"):
        _wire.finished({"version": 2, "status": "failed", "error": "boom"}, "k", 2)
    assert not _wire.finished({"version": 1, "status": "done"}, "k", 2)  # another version
    assert _wire.finished({"version": 2, "status": "done"}, "k", 2)
