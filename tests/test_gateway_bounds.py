"""A gateway's own bounds: bodies decoded at once, frames inside JSON, event streams open and queued, and
the docs page's headers. One gateway with small caps (no consumer needed: nothing here reaches one)."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Iterator

import aio_pika
import pytest
import requests

from contracts.messages import StatusEvent
from contracts.topology import EventKind, Topology
from gateway.auth import new_token

from .stack import BROKER_URL, Stack, wait_for

pytestmark = pytest.mark.integration

MiB = 2**20
BUDGET = 4 * MiB
JSON_FRAME = 100_000
STREAM_QUEUE = 64
# Events of 4 KiB published at the streams: 8 MiB, more than a reader's socket buffers (4 MiB at most here) and
# its queue hold.
FLOOD = 2_000


@pytest.fixture
def tokens() -> dict[str, tuple[str, str]]:
    """name: (token, its ML_SERVER_TOKENS entry)."""
    return {"writer": new_token("write", "writer"), "a": new_token("read", "a"), "b": new_token("read", "b"), "c": new_token("read", "c")}


@pytest.fixture
def gateway(fresh_stack: Stack, tokens: dict[str, tuple[str, str]]) -> Iterator[Stack]:
    fresh_stack.env.update(
        ML_SERVER_FAMILIES="logreg",  # fits for it are read (and refused) with no consumer up
        ML_SERVER_TOKENS=",".join(entry for _, entry in tokens.values()),
        ML_SERVER_DECODE_BUDGET=str(BUDGET),
        ML_SERVER_MAX_JSON_FRAME=str(JSON_FRAME),
        ML_SERVER_MAX_STREAMS="4",
        ML_SERVER_MAX_STREAMS_PER_CLIENT="2",
        ML_SERVER_STREAM_QUEUE=str(STREAM_QUEUE),
    )
    fresh_stack.start_gateway(ready=False)
    yield fresh_stack


def _response(sock: socket.socket, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP response with a Content-Length."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_many_large_bodies_at_once_get_503_with_retry_after(gateway: Stack, tokens: dict[str, tuple[str, str]]) -> None:
    size = MiB  # four fit in the budget at once
    body = b'{"x": "' + b"a" * (size - 10) + b'"}'
    assert len(body) == size - 1
    body += b" "
    head = (
        f"PUT /logreg HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tokens['writer'][0]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    socks = [socket.create_connection(("127.0.0.1", gateway.port), timeout=30) for _ in range(8)]
    try:
        for sock in socks:
            sock.sendall(head + body[:1])  # each body has begun: its handler waits for the rest, holding its share
        # The four that don't fit are answered at once, before the rest of their bodies is sent.
        refused: list[socket.socket] = []
        deadline = time.monotonic() + 30
        while len(refused) < 4 and time.monotonic() < deadline:
            readable, _, _ = select.select([s for s in socks if s not in refused], [], [], 0.5)
            refused += readable
        assert len(refused) == 4, f"{len(refused)} answered before their bodies were sent"
        for sock in refused:
            status, headers, answer = _response(sock)
            assert status == 503 and headers.get("retry-after") == "1", (status, headers, answer)
            assert b"ML_SERVER_DECODE_BUDGET" in answer
        # The four admitted are read; their `x` is a frame's JSON text longer than the cap: 413 naming x.
        admitted = [s for s in socks if s not in refused]
        for sock in admitted:
            sock.sendall(body[1:])
        for sock in admitted:
            status, headers, answer = _response(sock)
            assert status == 413 and b"ML_SERVER_MAX_JSON_FRAME" in answer and b'"x"' in answer, (status, answer[:300])
    finally:
        for sock in socks:
            sock.close()
    # Nothing crashed, and the budget was given back: a new large body is read again.
    assert gateway.gateway is not None and gateway.gateway.poll() is None
    r = requests.put(gateway.family_url("logreg"), data=body, headers={"Authorization": f"Bearer {tokens['writer'][0]}", "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "ML_SERVER_MAX_JSON_FRAME" in r.json()["error"]["message"], r.text


def _stream(gateway: Stack, token: str) -> requests.Response:
    return requests.get(
        f"{gateway.url}/events", headers={"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}, stream=True, timeout=30
    )


def _flood(namespace: str, count: int) -> None:
    """`count` alias events on the events exchange, as gateways publish them."""

    async def publish() -> None:
        topology = Topology(namespace)
        async with await aio_pika.connect(BROKER_URL) as connection:
            channel = await connection.channel(publisher_confirms=False)
            exchange = await channel.get_exchange(topology.events_exchange)

            async def one(i: int) -> None:
                headers = StatusEvent().dump(
                    {"event": EventKind.ALIAS, "model_key": f"flood-{i:06d}-" + "k" * 4000, "family": "logreg", "alias": "champion", "version": 1}
                )
                await exchange.publish(
                    aio_pika.Message(b"", headers={k: v for k, v in headers.items() if v is not None}),
                    routing_key=topology.event_key("logreg", f"flood-{i:06d}"),
                )

            for start in range(0, count, 20):  # a few at a time: bursts no bigger than a busy gateway sees
                await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))

    asyncio.run(publish())


def test_event_streams_are_capped_and_a_slow_reader_is_dropped(gateway: Stack, tokens: dict[str, tuple[str, str]]) -> None:
    a1, a2 = _stream(gateway, tokens["a"][0]), _stream(gateway, tokens["a"][0])
    assert a1.status_code == a2.status_code == 200
    a3 = _stream(gateway, tokens["a"][0])
    assert a3.status_code == 429 and a3.headers["Retry-After"] == "5", a3.text
    assert "ML_SERVER_MAX_STREAMS_PER_CLIENT" in a3.json()["error"]["message"]
    b1, b2 = _stream(gateway, tokens["b"][0]), _stream(gateway, tokens["b"][0])
    assert b1.status_code == b2.status_code == 200
    c1 = _stream(gateway, tokens["c"][0])
    assert c1.status_code == 503 and c1.headers["Retry-After"] == "5", c1.text
    assert "ML_SERVER_MAX_STREAMS" in c1.json()["error"]["message"]

    # A stream given up frees its place (once the gateway notices, at the latest at its next keep-alive).
    b2.close()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read: a reader that falls behind

    def opened() -> bool:
        nonlocal slow
        if slow.fileno() == -1:
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", gateway.port))
        slow.sendall(
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer {tokens['c'][0]}\r\n\r\n".encode()
        )
        slow.settimeout(10)
        first = slow.recv(12)
        if first.startswith(b"HTTP/1.1 200"):
            return True
        slow.close()
        return False

    wait_for(opened, 40, interval=0.5, what="a place for another stream")
    # A reader that keeps up, on the same flood: never dropped.
    fast: list[bytes] = []

    def read_fast() -> None:
        try:
            for line in a1.iter_lines():
                fast.append(line)
        except Exception:  # noqa: BLE001 - closed at the end of the test
            pass

    reader = threading.Thread(target=read_fast, daemon=True)
    reader.start()
    try:
        _flood(gateway.namespace, FLOOD)
        # Read it all now: the last event says why the stream ended.
        slow.settimeout(60)
        seen = b""
        deadline = time.monotonic() + 120
        while b"event: dropped" not in seen or not seen.rstrip().endswith(b"0"):
            assert time.monotonic() < deadline, seen[-500:]
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            seen += chunk
        wait_for(lambda: sum(line.startswith(b"event: alias") for line in fast) >= FLOOD, 60, what="the fast reader's events")
        assert not [line for line in fast if line.startswith(b"event: dropped")]
        assert b"event: dropped" in seen and b'"reason":"slow_reader"' in seen and b"ML_SERVER_STREAM_QUEUE" in seen, seen[-500:]
        assert seen.count(b"event: alias") < FLOOD, "every event was kept for a reader that did not read"
    finally:
        slow.close()
        for r in (a1, a2, b1):
            r.close()
    assert gateway.gateway is not None and gateway.gateway.poll() is None


def test_docs_carry_the_dashboards_security_headers(gateway: Stack) -> None:
    ui, docs = requests.get(f"{gateway.url}/ui", timeout=10), requests.get(f"{gateway.url}/docs", timeout=10)
    assert ui.status_code == docs.status_code == 200
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
        assert docs.headers.get(name) == ui.headers.get(name) and docs.headers.get(name), name
    asset = requests.get(f"{gateway.url}/docs/init.js", timeout=10)
    assert asset.status_code == 200 and asset.headers["Content-Security-Policy"] == ui.headers["Content-Security-Policy"]
