"""Server-sent events: `GET /models/{model_key}/events` streams a model's status changes.

The gateway binds ONE exclusive, auto-delete queue to the `<ns>.events` topic
exchange (every routing key), on its own channel of the broker connection,
and fans the events out in-process to the open streams. The channel is a
robust one: after a reconnect aio-pika declares the queue again (same name),
binds it and consumes from it as before.

An event only says "look again": a stream re-reads the version from the
store and sends what the store holds when it changed, so a client never sees
a status the store does not have. A stream opens with the current status
(so a finish that came before the subscription is not missed), sends a
keep-alive comment every `KEEPALIVE` seconds (and re-reads the store then,
which also catches an event lost while the broker was away), and ends after
the asked version (`?version=N`, default: the latest at subscription) is
`done`, `failed` or deleted.

Bounded: each stream's reader may fall `ML_SERVER_STREAM_QUEUE` events behind;
one that falls further is ended with a last `event: dropped` whose `data` says
why (`{reason: "slow_reader", message}`), and the events it missed are not
kept for it. A client (a bearer token's holder, or an address without tokens)
holds at most `ML_SERVER_MAX_STREAMS_PER_CLIENT` streams at once (429 beyond),
and a gateway process at most `ML_SERVER_MAX_STREAMS` (503 beyond); both
answers carry `Retry-After`.

Every status message is `event: status` with a JSON `data` line: that
version's status (`StatusResponse`), or `{model_key, family, version, status:
"deleted"}` when the model was deleted. An alias set, moved or removed (or
the model's serving alias changed) is `event: alias` with `{model_key,
family, alias, version, serving}` (`version` null: removed).

`GET /events[?family=]` is the feed of every model (the dashboard's list
follows it): with `Accept: text/event-stream`, the same `status` and `alias`
events for any model, as they happen, until the client goes away; asked for
anything else, the versions queued or running now as JSON. A stream that
never ends is only sent to a client that asks for one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from contracts import amqp
from contracts.errors import InvalidInput, NotFound, TooManyRequests, Unavailable
from contracts.schemas import MODEL_KEY, EventsQuery, FeedQuery
from contracts.messages import StatusEvent
from contracts.status import Status
from contracts.topology import EventKind, Topology

from .service import respond, status_body
from .state import BROKER, RECORDS, SETTINGS

log = logging.getLogger(__name__)

# Seconds between keep-alive comments (and store re-reads) on an idle stream.
KEEPALIVE = 15.0
# Events the gateway takes from the broker before it has handed out the earlier ones: keep
# ML_SERVER_STREAM_QUEUE above it, or a burst alone could drop a reader that keeps up.
HUB_PREFETCH = 32
# Seconds between looks at whether an idle stream's client is still connected.
LIVENESS = 1.0
DELETED = EventKind.DELETED.value
TERMINAL = frozenset({Status.DONE.value, Status.FAILED.value, DELETED})
# At most this many versions of each in-flight status in the feed's JSON answer.
IN_FLIGHT_LIMIT = 1000
# Versions whose last sent status a feed remembers (to send each change once).
FEED_MEMORY = 10_000
# Seconds a client refused a stream (too many open) is told to wait.
STREAM_RETRY_AFTER = 5

Event = dict[str, Any]


# Events the gateway's own followers may fall behind by before the oldest are dropped instead of queued.
FOLLOWER_QUEUE = 1_000_000


class Inbox:
    """The events waiting for one stream's reader, at most `size`: a reader that falls further behind is
    dropped (`dropped` says why, and `get` answers None from then on) rather than queued for without end."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=size + 1)  # + the final None
        self.dropped: str | None = None
        self._ended = False  # None was put: nothing more is

    def put(self, event: Event | None) -> None:
        if self._ended:
            return
        if event is not None and self._queue.qsize() >= self.size:
            self.dropped = (
                f"the reader fell {self.size} events behind (ML_SERVER_STREAM_QUEUE): the stream was ended; "
                "read the current state and open a new stream"
            )
            while not self._queue.empty():
                self._queue.get_nowait()
            event = None
        self._ended = event is None
        self._queue.put_nowait(event)

    async def get(self) -> Event | None:
        return await self._queue.get()

    def waiting(self) -> bool:
        return not self._queue.empty()

    def get_nowait(self) -> Event | None:
        return self._queue.get_nowait()


class EventHub:
    """One queue of every status event, fanned out to the streams that watch each model."""

    def __init__(
        self,
        on_deleted: Callable[[str], None] = lambda key: None,
        *,
        queue_size: int = 256,
        max_streams: int = 1000,
        max_per_client: int = 20,
    ) -> None:
        """`on_deleted(model_key)`: called for each model deleted (by any gateway). `queue_size`: events
        waiting per stream; `max_streams`, `max_per_client`: streams open at once, in all and per client."""
        self._watchers: defaultdict[str, set[Inbox]] = defaultdict(set)
        self._everything: set[Inbox] = set()  # the feeds: every model's events
        self.closed = False
        self.on_deleted = on_deleted
        self.queue_size = queue_size
        self.max_streams = max_streams
        self.max_per_client = max_per_client
        self.open: Counter[str] = Counter()  # streams open, per client

    async def start(self, connection: AbstractRobustConnection, topology: Topology, instance: str) -> None:
        self.channel = await connection.channel()
        # Acked, HUB_PREFETCH at a time: a burst of events reaches the streams in steps their readers keep up
        # with (each step smaller than a stream's queue), and a backlog waits in the broker, not here.
        await self.channel.set_qos(prefetch_count=HUB_PREFETCH)
        exchange = (await amqp.declare_exchanges(self.channel, topology)).events
        self.queue = await self.channel.declare_queue(topology.events_queue(instance), exclusive=True, auto_delete=True)
        await self.queue.bind(exchange, topology.ALL_EVENTS)
        await self.queue.consume(self._on_event)

    async def stop(self) -> None:
        self.close()
        if not self.channel.is_closed:
            await self.channel.close()

    def close(self) -> None:
        """End every stream (the gateway is shutting down)."""
        self.closed = True
        for inboxes in (*self._watchers.values(), self._everything):
            for inbox in inboxes:
                inbox.put(None)

    @contextmanager
    def admit(self, client: str) -> Iterator[None]:
        """One more stream open for `client` (its token's name, or its address): 429 past the cap per client,
        503 past the cap of this gateway, both with Retry-After."""
        if self.open[client] >= self.max_per_client:
            raise TooManyRequests(
                f"{self.open[client]} event streams are open for this client, the most one client may hold "
                "(ML_SERVER_MAX_STREAMS_PER_CLIENT): close one first",
                retry_after=STREAM_RETRY_AFTER,
            )
        if self.open.total() >= self.max_streams:
            raise Unavailable(
                f"this gateway holds {self.open.total()} event streams, the most it keeps open (ML_SERVER_MAX_STREAMS): retry later",
                retry_after=STREAM_RETRY_AFTER,
            )
        self.open[client] += 1
        try:
            yield
        finally:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]

    def _inbox(self, size: int | None = None) -> Inbox:
        inbox = Inbox(size or self.queue_size)
        if self.closed:
            inbox.put(None)
        return inbox

    @contextmanager
    def watch(self, model_key: str) -> Iterator[Inbox]:
        """The model's events from now on; None when the gateway shuts down or the reader fell behind."""
        inbox = self._inbox()
        self._watchers[model_key].add(inbox)
        try:
            yield inbox
        finally:
            watchers = self._watchers.get(model_key)
            if watchers is not None:
                watchers.discard(inbox)
                if not watchers:
                    del self._watchers[model_key]

    @contextmanager
    def watch_all(self, follower: bool = False) -> Iterator[Inbox]:
        """Every model's events from now on; None when the gateway shuts down or the reader fell behind.

        `follower`: the gateway's own followers (the V2 catalog, searches) are never dropped for falling
        behind, since they would stop following; they do little per event, and nothing a client controls."""
        inbox = self._inbox(FOLLOWER_QUEUE if follower else None)
        self._everything.add(inbox)
        try:
            yield inbox
        finally:
            self._everything.discard(inbox)

    def watching(self, model_key: str) -> int:
        return len(self._watchers.get(model_key, ()))

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        try:
            self._fan_out(message)
        finally:
            await amqp.settle(message.ack())

    def _fan_out(self, message: AbstractIncomingMessage) -> None:
        try:
            event = StatusEvent().load(dict(message.headers or {}))
        except ValidationError:
            return
        if event["event"] == DELETED:
            self.on_deleted(event["model_key"])
        for inbox in (*self._watchers.get(event["model_key"], ()), *self._everything):
            inbox.put(event)


EVENTS = web.AppKey("events", EventHub)


def _state(model: Any, session: Any) -> dict[str, Any]:
    return status_body(model, session)


class _Stream:
    """One open event stream: sends a version's state when it differs from what was sent last."""

    def __init__(self, request: web.Request, model: Any, version: int) -> None:
        self.request = request
        self.model_key, self.family, self.version = model.model_key, model.family, version
        self.sent: dict[int, str] = {}
        self.response = web.StreamResponse(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.response.content_type = "text/event-stream"
        self.response.charset = "utf-8"

    async def open(self) -> None:
        await self.response.prepare(self.request)
        await self.response.write(b"retry: 2000\n\n")

    async def send(self, state: dict[str, Any]) -> bool:
        """Send `state` unless it was just sent; True when the stream is over."""
        version, status = state["version"], state["status"]
        if self.sent.get(version) != status:
            self.sent[version] = status
            data = json.dumps(state, default=str, separators=(",", ":"))  # ASCII: no character a client reads as a line end
            await self.response.write(f"id: {version}:{status}\nevent: status\ndata: {data}\n\n".encode())
        return status == DELETED or (version == self.version and status in TERMINAL)

    async def look(self, version: int) -> bool:
        """Re-read `version` from the store and send it if it changed; True when the stream is over."""
        try:
            model, session = await self.request.app[RECORDS].version_status(self.model_key, version)
        except NotFound:
            if version != self.version:
                return False  # an older version went away; this one may still be there
            return await self.send({"model_key": self.model_key, "family": self.family, "version": self.version, "status": DELETED})
        except (SQLAlchemyError, OSError) as e:
            log.warning("model=%s event stream: the store is unavailable (%s); waiting", self.model_key, e)
            return False
        return await self.send(_state(model, session))

    async def alias(self, event: Event) -> None:
        """An alias set, moved or removed, or the serving alias changed: `event: alias`."""
        data = json.dumps({k: event.get(k) for k in ("model_key", "family", "alias", "version", "serving")}, separators=(",", ":"))
        await self.response.write(f"event: alias\ndata: {data}\n\n".encode())

    async def keepalive(self) -> None:
        await self.response.write(b": keep-alive\n\n")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the current status, then every status change, until the version finishes."""
    model_key = request.match_info["model_key"]
    try:
        MODEL_KEY(model_key)
        query = EventsQuery().load(dict(request.query))
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {"model_key": e.messages}
        raise InvalidInput(f"invalid query parameters: {messages}", fields=messages) from e
    hub = request.app[EVENTS]
    # Watch before reading the store: a change between the read and the watch can't slip through.
    with hub.admit(client_of(request)), hub.watch(model_key) as inbox:
        model, session = await request.app[RECORDS].version_status(model_key, query["version"])
        stream = _Stream(request, model, session.version)
        await stream.open()
        try:
            if await stream.send(_state(model, session)):
                return await _finish(stream)
            while True:
                try:
                    event = await _next(request, inbox)
                except TimeoutError:
                    await stream.keepalive()
                    if await stream.look(stream.version):
                        break
                    continue
                if event is None:  # shutting down, or too slow a reader: the client reconnects or falls back to polling
                    await _dropped(stream.response, inbox)
                    break
                if event["event"] == EventKind.ALIAS:
                    await stream.alias(event)
                    continue
                if event["event"] == DELETED:
                    await stream.send({"model_key": model_key, "family": model.family, "version": stream.version, "status": DELETED})
                    break
                if event["version"] is not None and await stream.look(event["version"]):
                    break
        except ConnectionError:  # the client went away
            return stream.response
        return await _finish(stream)


async def all_events(request: web.Request) -> web.StreamResponse:
    """Every model's status changes as server-sent events (`Accept: text/event-stream`), or the versions
    in flight now as JSON; `family` narrows both to one family."""
    try:
        family = FeedQuery().load(dict(request.query))["family"]
    except ValidationError as e:
        raise InvalidInput(f"invalid query parameters: {e.messages}", fields=e.messages if isinstance(e.messages, dict) else None) from e
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return respond({"versions": await _in_flight(request, family)})
    hub = request.app[EVENTS]
    with hub.admit(client_of(request)), hub.watch_all() as inbox:
        response = web.StreamResponse(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        await response.prepare(request)
        sent: dict[tuple[str, int], str] = {}
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    event = await _next(request, inbox)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:  # shutting down, or too slow a reader: the client reconnects
                    await _dropped(response, inbox)
                    break
                if family is not None and event["family"] != family:
                    continue
                message = await _feed_message(request, event, sent)
                if message:
                    await response.write(message)
        except ConnectionError:  # the client went away
            return response
        try:
            await response.write_eof()
        except ConnectionError:
            pass
        return response


async def _next(request: web.Request, inbox: Inbox) -> Event | None:
    """The stream's next event; TimeoutError after KEEPALIVE seconds without one, ConnectionError as soon as
    the client is gone (so its place among the open streams is free again within a second)."""
    if inbox.waiting():  # a backlog is taken at once, without a round through the event loop per event
        return inbox.get_nowait()
    waited = 0.0
    while True:
        try:
            return await asyncio.wait_for(inbox.get(), LIVENESS)
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client went away") from None
            waited += LIVENESS
            if waited >= KEEPALIVE:
                raise


def client_of(request: web.Request) -> str:
    """Whose stream this is, for the cap per client: the bearer token's holder, else the peer's address."""
    actor = request.get("actor")
    return f"token:{actor}" if actor else f"address:{request.remote}"


async def _dropped(response: web.StreamResponse, inbox: Inbox) -> None:
    """The last event of a stream whose reader fell too far behind: `event: dropped` saying why."""
    if inbox.dropped is not None:
        log.warning("event stream dropped: %s", inbox.dropped)
        await response.write(_sse("dropped", {"reason": "slow_reader", "message": inbox.dropped}))


async def _in_flight(request: web.Request, family: str | None) -> list[dict[str, Any]]:
    """The versions queued or running now (each model's latest), running first, newest first."""
    found = []
    for status in (Status.RUNNING, Status.QUEUED):
        _, rows = await request.app[RECORDS].list_models(family, None, status, IN_FLIGHT_LIMIT, 0)
        found += [status_body(model, session) for model, session in rows]
    return found


async def _feed_message(request: web.Request, event: Event, sent: dict[tuple[str, int], str]) -> bytes | None:
    """The feed's message for one event: the version as the store holds it now (sent when it changed), an
    alias change, or a deletion; None when there is nothing new to send."""
    key = event["model_key"]
    if event["event"] == EventKind.ALIAS:
        data: dict[str, Any] = {k: event.get(k) for k in ("model_key", "family", "alias", "version", "serving")}
        return _sse("alias", data)
    if event["event"] == DELETED:
        return _sse("status", {"model_key": key, "family": event["family"], "version": event["version"], "status": DELETED})
    if event["version"] is None:
        return None
    try:
        model, session = await request.app[RECORDS].version_status(key, event["version"])
    except NotFound:  # deleted meanwhile: its own event follows
        return None
    except (SQLAlchemyError, OSError) as e:
        log.warning("model=%s version=%s feed: the store is unavailable (%s); event skipped", key, event["version"], e)
        return None
    state = _state(model, session)
    if sent.get((key, session.version)) == state["status"]:
        return None
    if len(sent) >= FEED_MEMORY:
        sent.clear()
    sent[(key, session.version)] = state["status"]
    return _sse("status", state, f"{key}:{session.version}:{state['status']}")


def _sse(name: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    text = json.dumps(data, default=str, separators=(",", ":"))  # ASCII: no character a client reads as a line end
    return (f"id: {event_id}\n" if event_id else "").encode() + f"event: {name}\ndata: {text}\n\n".encode()


async def _finish(stream: _Stream) -> web.StreamResponse:
    try:
        await stream.response.write_eof()
    except ConnectionError:
        pass
    return stream.response


async def _hub(app: web.Application) -> AsyncIterator[None]:
    broker = app[BROKER]
    assert broker.connection is not None
    settings = app[SETTINGS]
    hub = EventHub(
        on_deleted=app[RECORDS].forget,
        queue_size=settings.stream_queue,
        max_streams=settings.max_streams,
        max_per_client=settings.max_streams_per_client,
    )
    await hub.start(broker.connection, broker.topology, broker.instance)
    app[EVENTS] = hub
    yield
    await hub.stop()


async def _close_streams(app: web.Application) -> None:
    if EVENTS in app:
        app[EVENTS].close()


def setup(app: web.Application) -> None:
    """The hub the event streams read from; call after the broker's cleanup context is registered."""
    app.cleanup_ctx.append(_hub)
    app.on_shutdown.append(_close_streams)
