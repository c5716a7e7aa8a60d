"""What a consumer tells a publisher when its message can't be served as sent.

A train job whose headers can't be read (or contradict each other, or name a
model of another family) can't become a version: it is dead-lettered with
`x-dead-reason` and `x-error-fields` (the bad headers, by name) added to its
own headers, and, when its model key can be read, a `rejected` status event
says so to whoever listens. An RPC (predict, import, delete) is always
answered; an error reply's `x-error-fields` names the bad parts of the
request as they travel: headers by their names, the frame as `body`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from aiormq.exceptions import AMQPError
from marshmallow import ValidationError

from contracts.amqp import settle
from contracts.errors import DecodeError, InvalidInput, MLServerError, PayloadTooLarge
from contracts.schemas import MODEL_KEY
from contracts.messages import BODY, DeadLetterHeaders, DeleteJob, TrainJob, header_fields
from contracts.status import JobKind
from contracts.topology import Header

from .records import Records

log = logging.getLogger(__name__)

_DEAD = DeadLetterHeaders()
_TRAIN_TYPES = frozenset((JobKind.FIT.value, JobKind.UPDATE.value))


class Refused(Exception):
    """A train job that can't be run as sent: why, and its bad headers ({name: [messages]})."""

    def __init__(self, reason: str, fields: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields


def read_train(family: str, headers: Mapping[str, Any], message_type: str | None) -> TrainJob:
    """A train job's headers, checked against each other and the queue they came by; Refused otherwise."""
    try:
        job = TrainJob.read(headers)
    except ValidationError as e:
        fields = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        raise Refused(f"invalid headers: {', '.join(sorted(fields))}", fields) from e
    if job.kind.value not in _TRAIN_TYPES:
        raise Refused(f"{Header.KIND} {job.kind.value!r} is not a train job", {Header.KIND: [f"one of {sorted(_TRAIN_TYPES)}"]})
    if job.family != family:
        raise Refused(
            f"{Header.FAMILY} is {job.family!r} but the job came by the {family!r} train queue",
            {Header.FAMILY: [f"must be {family!r}, the family of the routing key"]},
        )
    if message_type in _TRAIN_TYPES and message_type != job.kind.value:
        raise Refused(
            f"the type property ({message_type!r}) contradicts {Header.KIND} ({job.kind.value!r})",
            {Header.KIND: [f"{job.kind.value!r} with type {message_type!r}: give one kind (or leave type out)"]},
        )
    if message_type not in (None, "", *_TRAIN_TYPES):
        raise Refused(
            f"type {message_type!r} does not go to a train queue",
            {"type": [f"one of {sorted(_TRAIN_TYPES)} (or left out)"]},
        )
    return job


def readable_key(headers: Mapping[str, Any]) -> str | None:
    """The model key of a refused job, when it has a valid one (its rejected event is routed by it)."""
    key = headers.get(Header.MODEL_KEY)
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    if not isinstance(key, str):
        return None
    try:
        MODEL_KEY(key)
    except ValidationError:
        return None
    return key


def dead_headers(headers: Mapping[str, Any], reason: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The job's own headers with why it was dead-lettered."""
    return {**headers, **_DEAD.dump({"reason": reason, "fields": fields})}


async def dead_letter(
    dead: AbstractExchange, routing_key: str, message: AbstractIncomingMessage, reason: str, fields: dict[str, Any]
) -> None:
    """Publish the job, as it came, to the dead-letter exchange with `x-dead-reason` and `x-error-fields`
    (confirmed), then ack it. Not confirmed: rejected, so the broker dead-letters it without the reason."""
    try:
        await dead.publish(
            aio_pika.Message(
                message.body,
                headers=dead_headers(message.headers or {}, reason, fields),
                content_type=message.content_type,
                type=message.type,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                timestamp=message.timestamp,
                app_id=message.app_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
            mandatory=False,
        )
    except (AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError) as e:
        log.warning("dead letter with its reason not published (%s); rejected without it", e)
        await settle(message.reject(requeue=False))
    else:
        await settle(message.ack())


async def delete(records: Records, family: str, headers: Mapping[str, Any]) -> tuple[str, bytes]:
    """A delete RPC: the model of `family` and all its versions, through the store's one delete (as the
    gateway's `DELETE`); (model_key, the reply's JSON `{model_key, deleted}`)."""
    try:
        job = DeleteJob.read(headers)
    except ValidationError as e:
        fields = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        raise InvalidInput(f"invalid delete headers: {fields}", fields=fields) from e
    deleted = await records.delete(family, job.model_key)
    log.info("model=%s deleted over AMQP (%d versions) by %s", job.model_key, deleted, job.actor or "anonymous")
    return job.model_key, orjson.dumps({"model_key": job.model_key, "deleted": deleted})


def error_fields(error: MLServerError) -> dict[str, Any]:
    """An error reply's `x-error-fields`: the error's fields by their header names, or (an error that
    names none) the part of the request it is about; `{}` only for an internal error."""
    if error.fields:
        return header_fields(error.fields)
    if isinstance(error, (DecodeError, PayloadTooLarge)) or type(error) is InvalidInput:
        return {BODY: [error.message]}
    if error.status in (404, 409):  # no such model or version, not trained, training failed
        return {Header.MODEL_KEY: [error.code]}
    return {}
