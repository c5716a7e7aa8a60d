"""Predict coalescing: concurrent predicts for the same model become one broker message.

One AMQP round trip per request caps a broker-based server near the broker's
echo rate; batching *before* the broker lifts that cap. Requests are grouped
by (family, model key, version or alias, kwargs, column schema), so their rows can be
concatenated and the answer split again by position. Rows carry no index of
their own here (`Rows` keeps a request's labels aside, in the gateway), so
every request, JSON or Parquet, with labels or without, can share a message.

A group sends at once while fewer than `inflight` of its messages are out,
so a lone request never waits. Otherwise requests queue behind the messages
in flight and leave together when one of them comes back, when the queued
rows reach `max_rows`, or when the oldest has waited `max_wait` seconds. A
request of `max_rows` rows or more always has a message to itself, and
travels as the Parquet it came as when it came as Parquet.

One message answers for all its requests. If it fails with an error about
the input (422), the requests are sent again one by one, so that each caller
gets the answer about its own rows; any other error (unknown model, no
consumer, deadline) is everyone's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from contracts.errors import DeadlineExceeded, InvalidInput, MLServerError
from contracts.frames import ParquetCodec, Rows, concat_rows
from contracts.messages import PredictJob, read_reply

from . import metrics

log = logging.getLogger(__name__)

# Broker.call: (family, body, headers, timeout) -> (reply headers, reply body)
Call = Callable[[str, bytes, dict[str, Any], float], Awaitable[tuple[dict[str, Any], bytes]]]

@dataclass
class Answer:
    """The answer's rows for one request: a table, the consumer's Parquet as it came (when the
    request had the message to itself, passed on without re-encoding), or both."""

    _table: pa.Table | None = None
    body: bytes | None = None

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            assert self.body is not None
            self._table = ParquetCodec.decode_table(self.body)
        return self._table

    def parquet(self) -> bytes:
        return self.body if self.body is not None else ParquetCodec.encode_table(self.table)


@dataclass
class _Waiter:
    rows: Rows
    deadline: float
    future: asyncio.Future[Answer]


@dataclass
class _Group:
    family: str
    headers: dict[str, Any]
    queued: list[_Waiter] = field(default_factory=list)
    rows: int = 0
    inflight: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer:
    def __init__(self, call: Call, max_rows: int, max_wait: float, inflight: int) -> None:
        self._call = call
        self.max_rows = max(1, max_rows)
        self.max_wait = max_wait
        self.inflight = max(1, inflight)
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(
        self,
        family: str,
        model_key: str,
        version: int | None,
        kwargs: dict[str, Any],
        rows: Rows,
        timeout: float,
        alias: str | None = None,
    ) -> Answer:
        """The answer's rows for `rows`, in order, within `timeout` seconds."""
        kwargs_key = orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS) if kwargs else b""
        key = (family, model_key, version, alias, kwargs_key, rows.schema)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(family, PredictJob(model_key, version, alias, kwargs).headers())
        loop = asyncio.get_running_loop()
        waiter = _Waiter(rows, loop.time() + timeout, loop.create_future())
        group.queued.append(waiter)
        group.rows += rows.num_rows
        if group.inflight < self.inflight or group.rows >= self.max_rows:
            self._send(key, group)
        elif group.timer is None:
            group.timer = loop.call_later(self.max_wait, self._send, key, group)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no {family} consumer answered within {timeout:g}s") from None
        finally:
            if not waiter.future.done():  # deadline passed or caller gone: never sent, or answered to no one
                waiter.future.cancel()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for group in self._groups.values():
            if group.timer is not None:
                group.timer.cancel()

    def _send(self, key: tuple[Any, ...], group: _Group) -> None:
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        batch: list[_Waiter] = []
        rows = 0
        while group.queued and (not batch or rows + group.queued[0].rows.num_rows <= self.max_rows):
            waiter = group.queued.pop(0)
            if waiter.future.done() or waiter.deadline <= now:
                continue  # its caller has given up already
            batch.append(waiter)
            rows += waiter.rows.num_rows
        group.rows = sum(w.rows.num_rows for w in group.queued)
        if group.queued and group.timer is None:
            group.timer = loop.call_later(self.max_wait, self._send, key, group)
        if not batch:
            if not group.queued and not group.inflight:
                self._groups.pop(key, None)
            return
        group.inflight += 1
        task = loop.create_task(self._run(key, group, batch, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: tuple[Any, ...], group: _Group, batch: list[_Waiter], rows: int) -> None:
        try:
            metrics.observe_predict_batch(len(batch), rows)
            try:
                answer = await self._exchange(group, batch, min(w.deadline for w in batch))
            except InvalidInput:
                if len(batch) == 1:
                    raise
                # Someone's rows are bad: ask again one by one, so the error goes to its owner only.
                await asyncio.gather(*(self._alone(group, w) for w in batch))
                return
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_result(answer)
                return
            offset = 0
            for w in batch:
                n = w.rows.num_rows
                if not w.future.done():
                    w.future.set_result(Answer(answer.table.slice(offset, n)))
                offset += n
        except Exception as e:  # noqa: BLE001 - handed to every caller of the batch
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(e)
        finally:
            group.inflight -= 1
            if group.queued:
                self._send(key, group)
            elif not group.inflight and self._groups.get(key) is group:
                del self._groups[key]

    async def _alone(self, group: _Group, waiter: _Waiter) -> None:
        try:
            answer = await self._exchange(group, [waiter], waiter.deadline)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            if not waiter.future.done():
                waiter.future.set_exception(e)
            return
        if not waiter.future.done():
            waiter.future.set_result(answer)

    async def _exchange(self, group: _Group, batch: list[_Waiter], deadline: float) -> Answer:
        if len(batch) == 1:
            rows = batch[0].rows
            body = rows.parquet if rows.parquet is not None else ParquetCodec.encode_table(rows.table)
            expected = rows.num_rows
        else:
            table = concat_rows([w.rows for w in batch])
            body, expected = ParquetCodec.encode_table(table), table.num_rows
        timeout = max(0.001, deadline - asyncio.get_running_loop().time())
        reply_headers, reply_body = await self._call(group.family, body, group.headers, timeout)
        answer = Answer(body=read_reply(reply_headers, reply_body))
        got = ParquetCodec.footer(answer.parquet())[1]
        if got != expected:
            raise MLServerError(f"the consumer answered {got} rows for {expected}")
        return answer
