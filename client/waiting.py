"""Waiting for a version to finish: follow the gateway's event stream, poll when there is none.

`GET /models/{model_key}/events` sends the version's status at once and then
every change, so a wait costs one request however long the fit takes. When
the stream can't be had (a gateway from before it answers 404, the
connection fails or drops), waiting falls back to polling the status, every
0.2 s at first and backing off to every 2 s.

A tqdm progress bar shows the status on a terminal (`progress=None`: only
when stderr is one; True or False force it on or off). Past `timeout`
seconds a wait raises `TimeoutError` naming the model and its last status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import requests
from tqdm import tqdm

from contracts.status import Status

from . import _wire
from ._wire import backoff, error_from, finished, settled, still_running

# Seconds without a byte (the gateway sends a keep-alive every 15 s) before a stream counts as lost.
STREAM_IDLE = 45.0
# Answers meaning "this gateway has no event stream": poll instead.
NO_STREAM = frozenset({404, 405, 501})
# How far past its deadline a wait on the stream may end.
DEADLINE_SLACK = 1.0
# Polling when there is no stream: 0.2 s, growing to 2 s.
POLL_FIRST, POLL_FACTOR, POLL_CAP = 0.2, 1.5, 2.0

_STAGES = {Status.QUEUED: 0, Status.RUNNING: 1, Status.DONE: 2, Status.FAILED: 2, _wire.DELETED: 2}


class StreamUnavailable(Exception):
    """No event stream (or it ended early): poll instead."""


class Progress:
    """The status of one wait as a three-step bar (queued, running, finished) on stderr."""

    def __init__(self, model_key: str, progress: bool | None) -> None:
        self.bar = tqdm(
            total=2,
            desc=model_key,
            disable=None if progress is None else not progress,
            bar_format="{desc} |{bar:12}| [{elapsed}]",
            leave=True,
        )
        self.model_key = model_key
        self.seen: tuple[int, str] | None = None

    def show(self, state: dict[str, Any]) -> None:
        seen = (state["version"], state["status"])
        if seen == self.seen:
            return
        self.seen = seen
        self.bar.n = _STAGES.get(state["status"], 0)
        self.bar.set_description_str(f"{self.model_key} version {state['version']}: {state['status']}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


@contextmanager
def _progress(model_key: str, progress: bool | None) -> Iterator[Progress]:
    bar = Progress(model_key, progress)
    try:
        yield bar
    finally:
        bar.close()


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


# ---- blocking (requests) --------------------------------------------------------


def wait_sync(
    http: requests.Session,
    base_url: str,
    status: Callable[[], dict[str, Any]],
    model_key: str,
    version: int | None,
    timeout: float | None,
    progress: bool | None = None,
    connect_timeout: float = 60.0,
) -> dict[str, Any]:
    """The status once `version` (default: the latest) is done; TrainingFailed, NotFound or TimeoutError otherwise."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _progress(model_key, progress) as bar:
        try:
            return _follow_sync(http, base_url, model_key, version, deadline, timeout, bar, connect_timeout)
        except StreamUnavailable:
            pass
        for delay in backoff(POLL_FIRST, POLL_FACTOR, POLL_CAP):
            state = status()
            bar.show(state)
            if settled(state, model_key, version):
                return state
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise still_running(model_key, state, timeout)
            time.sleep(delay if left is None else max(0.0, min(delay, left)))
    raise AssertionError("unreachable")


def _follow_sync(
    http: requests.Session,
    base_url: str,
    model_key: str,
    version: int | None,
    deadline: float | None,
    timeout: float | None,
    bar: Progress,
    connect_timeout: float,
) -> dict[str, Any]:
    last: dict[str, Any] = {"status": "unknown", "version": version}
    while True:
        # A socket read waits for the next byte (a keep-alive comes every 15 s) up to the
        # read timeout. Near the deadline the stream is opened again with a read timeout
        # that ends the wait on time.
        left = _remaining(deadline)
        if left is not None and left <= 0:
            raise still_running(model_key, last, timeout)
        to_deadline = left is not None and left < STREAM_IDLE
        read_timeout = left if left is not None and to_deadline else STREAM_IDLE
        call = _wire.events(model_key, version)
        try:
            response = http.get(
                base_url + call.path, params=call.params, headers=call.headers, stream=True, timeout=(connect_timeout, read_timeout)
            )
        except requests.RequestException as e:
            raise StreamUnavailable(str(e)) from e
        with response:
            if response.status_code in NO_STREAM or (
                response.ok and not response.headers.get("Content-Type", "").startswith(_wire.EVENT_STREAM)
            ):
                raise StreamUnavailable(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise error_from(response.status_code, response.content)
            parser = _wire.EventStream()
            try:
                for line in response.iter_lines(chunk_size=None, decode_unicode=True):
                    state = parser.feed(line)
                    if state is not None:
                        bar.show(state)
                        last = state
                        version = state["version"] if version is None else version
                        if finished(state, model_key, version):
                            return state
                    left = _remaining(deadline)
                    if left is not None and left <= 0:
                        raise still_running(model_key, last, timeout)
                    if left is not None and read_timeout - left > DEADLINE_SLACK:
                        break  # the next read could outlast the deadline: open it again
                else:
                    raise StreamUnavailable("the stream ended early")  # the gateway is restarting
            except requests.RequestException as e:
                if to_deadline:
                    raise still_running(model_key, last, timeout) from None
                raise StreamUnavailable(str(e)) from e


# ---- asyncio (aiohttp) ------------------------------------------------------------


async def wait_async(
    http: aiohttp.ClientSession,
    base_url: str,
    status: Callable[[], Awaitable[dict[str, Any]]],
    model_key: str,
    version: int | None,
    timeout: float | None,
    progress: bool | None = None,
    connect_timeout: float = 60.0,
) -> dict[str, Any]:
    """As `wait_sync`, awaited."""
    last: dict[str, Any] = {"status": "unknown", "version": version}

    async def run() -> dict[str, Any]:
        nonlocal last
        with _progress(model_key, progress) as bar:
            try:
                return await _follow_async(http, base_url, model_key, version, bar, connect_timeout, last)
            except StreamUnavailable:
                pass
            for delay in backoff(POLL_FIRST, POLL_FACTOR, POLL_CAP):
                last = await status()
                bar.show(last)
                if settled(last, model_key, version):
                    return last
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await run()
    except TimeoutError:
        if limit.expired():
            raise still_running(model_key, last, timeout) from None
        raise


async def _follow_async(
    http: aiohttp.ClientSession,
    base_url: str,
    model_key: str,
    version: int | None,
    bar: Progress,
    connect_timeout: float,
    last: dict[str, Any],
) -> dict[str, Any]:
    call = _wire.events(model_key, version)
    timeouts = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=STREAM_IDLE)
    try:
        async with http.get(base_url + call.path, params=call.params, headers=call.headers, timeout=timeouts) as response:
            if response.status in NO_STREAM or (response.ok and response.content_type != _wire.EVENT_STREAM):
                raise StreamUnavailable(f"HTTP {response.status}")
            if response.status >= 400:
                raise error_from(response.status, await response.read())
            parser = _wire.EventStream()
            while line := await response.content.readline():
                state = parser.feed(line.decode().rstrip("\n"))
                if state is None:
                    continue
                bar.show(state)
                last.clear()
                last.update(state)
                version = state["version"] if version is None else version
                if finished(state, model_key, version):
                    return state
    except (TimeoutError, aiohttp.ClientError) as e:  # the wait's own deadline cancels instead
        raise StreamUnavailable(str(e)) from e
    raise StreamUnavailable("the stream ended early")
