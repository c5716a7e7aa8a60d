"""The AsyncAPI 2.6 document of the AMQP contract (`GET /asyncapi.json`).

What a service needs to publish jobs straight to RabbitMQ, in any language:
the exchanges, routing keys and queues (with their arguments), every message
with its properties, headers and body, the replies, the status events and the
dead letters. It is generated from `contracts` (the names from `topology`, the
header schemas from `schemas`, the queue arguments from `Topology`'s own
methods), for the deployment's namespace, so it says what the gateway and the
consumers actually declare and read. docs/amqp.md is its prose.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from aiohttp import web

from contracts import schemas
from contracts.frames import PARQUET
from contracts.settings import Settings
from contracts.topology import DELIVERY_LIMIT, IMPORT_QUEUE_LENGTH, Topology

from .asyncapi_messages import BINDING, messages
from .state import SETTINGS


FAMILY = "{family}"
MODEL_KEY = "{model_key}"
REPLY_TO = "{reply_to}"

def _exchange(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"}


def _queue(name: str, *, durable: bool = True, exclusive: bool = False, auto_delete: bool = False) -> dict[str, Any]:
    return {"name": name, "durable": durable, "exclusive": exclusive, "autoDelete": auto_delete, "vhost": "/"}


def build(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 2.6 document of the deployment's AMQP contract (its namespace, its queue limits)."""
    t = Topology(settings.namespace)
    try:
        release = version("ml-server")
    except PackageNotFoundError:
        release = "0.0.0"
    family_param = {"description": "a model family (`GET /families` lists them)", "schema": {"type": "string", "pattern": schemas.FAMILY_NAME.regex.pattern}}
    msgs = messages()
    ref = {name: {"$ref": f"#/components/messages/{name}"} for name in msgs}
    jobs = _exchange(t.jobs_exchange, "direct")
    return {
        "asyncapi": "2.6.0",
        "id": f"urn:ml-server:{settings.namespace}",
        "info": {
            "title": "ml-server over AMQP",
            "version": release,
            "description": _DESCRIPTION.format(ns=settings.namespace, limit=DELIVERY_LIMIT),
        },
        "servers": {
            "rabbitmq": {
                "url": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "the deployment's RabbitMQ (ML_SERVER_BROKER_URL)",
                "variables": {"host": {"default": "localhost"}, "port": {"default": "5672"}},
            }
        },
        "defaultContentType": PARQUET,
        "channels": {
            t.train_key(FAMILY): {
                "description": f"Fit and update jobs of a family, on the `{t.jobs_exchange}` exchange. They wait in the "
                f"queue `{t.train_queue(FAMILY)}` (declared by the gateway and the consumers; a publisher may declare "
                "it too, with exactly these arguments, or RabbitMQ closes its channel).",
                "parameters": {"family": family_param},
                "bindings": {"amqp": {"is": "routingKey", "exchange": jobs, "bindingVersion": BINDING}},
                "x-queue": {
                    **_queue(t.train_queue(FAMILY)),
                    "arguments": t.train_queue_arguments(settings.max_train_queue),
                    "bindingKey": t.train_key(FAMILY),
                },
                "publish": {
                    "operationId": "train",
                    "summary": "publish a fit or an update (persistent, mandatory, with publisher confirms)",
                    "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": BINDING}},
                    "message": {"oneOf": [ref["fit"], ref["update"]]},
                },
            },
            t.predict_key(FAMILY): {
                "description": f"RPCs of a family, on the `{t.jobs_exchange}` exchange: predict and delete. "
                f"They wait in the queue `{t.predict_queue(FAMILY)}`; each is answered once on its `reply_to`.",
                "parameters": {"family": family_param},
                "bindings": {"amqp": {"is": "routingKey", "exchange": jobs, "bindingVersion": BINDING}},
                "x-queue": {
                    **_queue(t.predict_queue(FAMILY)),
                    "arguments": t.predict_queue_arguments(settings.max_predict_queue),
                    "bindingKey": t.predict_key(FAMILY),
                },
                "publish": {
                    "operationId": "call",
                    "summary": "publish an RPC with reply_to, correlation_id and expiration (mandatory)",
                    "bindings": {"amqp": {"mandatory": True, "bindingVersion": BINDING}},
                    "message": {"oneOf": [ref["predict"], ref["delete"]]},
                },
            },
            t.import_key(FAMILY): {
                "description": f"Model files to store as versions of a family, on the `{t.jobs_exchange}` exchange. They wait "
                f"in the queue `{t.import_queue(FAMILY)}` (one read at a time per consumer process, in a fit process) and "
                "are answered once on their `reply_to`, like a predict.",
                "parameters": {"family": family_param},
                "bindings": {"amqp": {"is": "routingKey", "exchange": jobs, "bindingVersion": BINDING}},
                "x-queue": {
                    **_queue(t.import_queue(FAMILY)),
                    "arguments": t.predict_queue_arguments(IMPORT_QUEUE_LENGTH),
                    "bindingKey": t.import_key(FAMILY),
                },
                "publish": {
                    "operationId": "import",
                    "summary": "publish an import with reply_to, correlation_id and expiration (mandatory)",
                    "bindings": {"amqp": {"mandatory": True, "bindingVersion": BINDING}},
                    "message": ref["import"],
                },
            },
            REPLY_TO: {
                "description": "The caller's own reply queue (exclusive, auto-delete; or RabbitMQ's "
                "`amq.rabbitmq.reply-to`), named by the request's `reply_to`. The consumer publishes the reply to "
                "the default exchange with that routing key. A request still queued when its `expiration` "
                "passes is dropped by the broker: no reply comes, the caller's deadline ends the wait.",
                "parameters": {"reply_to": {"description": "the request's reply_to", "schema": {"type": "string"}}},
                "bindings": {"amqp": {"is": "queue", "queue": _queue(REPLY_TO, durable=False, exclusive=True, auto_delete=True), "bindingVersion": BINDING}},
                "subscribe": {"operationId": "reply", "summary": "the answer to one RPC", "message": {"oneOf": [ref["reply"], ref["deleteReply"]]}},
            },
            t.event_key(FAMILY, MODEL_KEY): {
                "description": f"Status events on the `{t.events_exchange}` topic exchange, routed by "
                f"`<family>.<model_key>`. Bind your own queue (e.g. exclusive, auto-delete; `{t.family_events(FAMILY)}` for a "
                f"family, `{t.ALL_EVENTS}` for all) BEFORE publishing a job, or its first events may pass unseen.",
                "parameters": {
                    "family": family_param,
                    "model_key": {"description": "the model", "schema": {"type": "string", "pattern": schemas.MODEL_KEY.regex.pattern}},
                },
                "bindings": {"amqp": {"is": "routingKey", "exchange": _exchange(t.events_exchange, "topic"), "bindingVersion": BINDING}},
                "subscribe": {"operationId": "events", "summary": "a model's status changes", "message": ref["statusEvent"]},
            },
            t.dead_queue(FAMILY): {
                "description": f"Train jobs that can't be run as sent (bad or missing headers, contradicting headers, a "
                f"model of another family), with their reason; and jobs that killed their consumer {DELIVERY_LIMIT} "
                f"times (delivery limit) or whose fit process died every time. Bound to the `{t.dead_exchange}` "
                f"direct exchange with `{t.train_key(FAMILY)}`. A body that is not valid Parquet is NOT "
                "dead-lettered: the job becomes a `failed` version, its event carrying the reason.",
                "parameters": {"family": family_param},
                "bindings": {"amqp": {"is": "queue", "queue": _queue(t.dead_queue(FAMILY)), "bindingVersion": BINDING}},
                "x-queue": {
                    **_queue(t.dead_queue(FAMILY)),
                    "arguments": t.dead_queue_arguments(),
                    "exchange": _exchange(t.dead_exchange, "direct"),
                    "bindingKey": t.train_key(FAMILY),
                },
                "subscribe": {"operationId": "deadLetters", "summary": "a dead-lettered train job", "message": ref["deadLetter"]},
            },
        },
        "components": {"messages": msgs},
    }


_DESCRIPTION = """The message contract of ml-server on RabbitMQ, for services that publish fits, predicts and
deletes without the gateway. Every name here is of the namespace `{ns}` (ML_SERVER_NAMESPACE).

- Bodies are Parquet (`application/vnd.apache.parquet`); every other field is a header. Header values are
  strings or integers as typed below; objects and lists travel as JSON text.
- The exchanges are declared by the gateway and the consumers (durable; jobs `direct`, events `topic`, dead
  `direct`). A publisher may declare them too, with the same type and `durable=true`, or just use them.
- Publish jobs with `mandatory=true`: a message no queue takes (no consumer of that family ever started)
  comes back instead of vanishing. Use publisher confirms for train jobs: a train queue that is full refuses
  the publish (nack).
- A train job's `message_id` is its identity: publishing the same id again is a no-op (a safe retry after a
  lost confirm), and the job's status events carry it in `x-message-id`. Jobs of a model apply in order.
- Every RPC (predict, delete, import) is answered once, on `reply_to`, with its `correlation_id`: `x-status`
  200 and the answer, or the error in `x-status`, `x-error-code`, `x-error-message` and `x-error-fields`.
- A train job that can't be run as sent is dead-lettered with `x-dead-reason` and `x-error-fields`, and a
  `rejected` event goes to its model's routing key when its `x-model-key` is readable. Redelivered
  {limit} times it is dead-lettered by the broker.
"""


@functools.cache
def _document(settings: Settings) -> bytes:
    return orjson.dumps(build(settings))


async def asyncapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_document(request.app[SETTINGS]), content_type="application/json")
