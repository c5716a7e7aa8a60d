"""The messages of the AsyncAPI document (`asyncapi`): each one's headers from its `*Headers` schema,
its AMQP properties, its body."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from contracts import schemas
from contracts.messages import DeadLetterHeaders, DeleteHeaders, ImportHeaders, PredictHeaders, ReplyHeaders, StatusEvent, TrainHeaders
from contracts.frames import JSON, PARQUET, TARGET_METADATA_KEY
from contracts.status import JobKind, Status
from contracts.topology import CloudEvent, EventKind, Header, MessageType

BINDING = "0.2.0"  # the AsyncAPI AMQP bindings' version these objects follow
PARQUET_FRAME = {"type": "string", "format": "binary", "contentMediaType": PARQUET}

# What each header means; its type and limits come from the schema that reads it.
ABOUT: dict[str, str] = {
    Header.JOB_ID: "set by the gateway (the training session it wrote); leave it out when publishing directly",
    Header.MODEL_KEY: "the model; chosen by the publisher for a new model",
    Header.FAMILY: "the model family; must be the family of the routing key",
    Header.VERSION: "a version number. On a train job: set by the gateway with x-job-id (a direct publisher leaves it "
    "out: the consumer numbers the version). On a predict: the version to answer with (not with x-alias). "
    "On an event: the version it is about",
    Header.KIND: f"`{JobKind.FIT.value}` (default) or `{JobKind.UPDATE.value}` (partial_fit on the latest done version); "
    "must agree with the `type` property when both are given",
    Header.PAYLOAD_ID: "set by the gateway for a body too big for one message (stored first, then read by the consumer)",
    Header.NAME: "a model name, stored with the model",
    Header.MODKWARGS: "the estimator's parameters, a JSON object as text, e.g. `{\"C\": 0.5}`",
    Header.ALGKWARGS: "arguments of `fit`, a JSON object as text",
    Header.BACKEND: "how the fitted model is stored and served; default: the family's",
    Header.KWARGS: "a JSON object as text: `method` (`predict`, `predict_proba`, ...) and the method's arguments",
    Header.STATUS: "a reply: 200 or the error's HTTP-equivalent status. An event: the version's status",
    Header.ERROR_CODE: "an error reply: the error's code (`invalid_input`, `decode_error`, `not_found`, `not_trained`, ...)",
    Header.ERROR_MESSAGE: "an error reply: what went wrong. An event: why the version failed or the job was rejected",
    Header.ERROR_FIELDS: "a JSON object as text: {part: [messages]}, the parts named as the request carries them "
    "(header names, `body` for the body); present on every error reply and every dead letter",
    Header.EVENT: "what the event is about",
    Header.RECLAIM_TOKEN: "set by a consumer that publishes a job again from the store after its lease ran out",
    Header.ALIAS: "a predict: answer with the version this alias points at (not with x-version). An event: the alias",
    Header.SERVING: "an alias event: the alias the model serves by default now (absent: its latest done version)",
    Header.IMPORT_FORMAT: "the model file's format",
    Header.FEATURES: "a JSON list as text: the feature names, when the file has none",
    Header.TYPES: "a JSON object as text: {feature: kind} for features that are not numbers",
    Header.ACTOR: "who asked, for the model's history (the gateway sets the bearer token's name)",
    Header.MESSAGE_ID: "the `message_id` of the job message this version came from (the gateway's jobs: the job id)",
    Header.DEAD_REASON: "why the consumer dead-lettered the job",
    CloudEvent.SPECVERSION: "CloudEvents attribute (AMQP binding): the CloudEvents version",
    CloudEvent.ID: "CloudEvents attribute: unique id of this event",
    CloudEvent.SOURCE: "CloudEvents attribute: `/<namespace>/<family>`",
    CloudEvent.TYPE: f"CloudEvents attribute: `{CloudEvent.TYPE_PREFIX}` + the x-event value",
    CloudEvent.TIME: "CloudEvents attribute: when the event was published (RFC 3339, UTC)",
    CloudEvent.SUBJECT: "CloudEvents attribute: the model key",
}


def field_schema(field: fields.Field[Any]) -> dict[str, Any]:
    """The JSON Schema of one header, from its marshmallow field: type, limits, values."""
    out: dict[str, Any]
    if isinstance(field, (schemas.JsonDict, schemas.JsonList)):
        out = {"type": "string", "contentMediaType": JSON}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.Enum):
        out = {"type": "string", "enum": [m.value for m in field.enum]}
    else:
        out = {"type": "string"}
    for check in field.validators:
        if isinstance(check, validate.Regexp):
            out["pattern"] = check.regex.pattern
        elif isinstance(check, validate.Range):
            out.update({k: v for k, v in (("minimum", check.min), ("maximum", check.max)) if v is not None})
        elif isinstance(check, validate.Length):
            out.update({k: v for k, v in (("minLength", check.min), ("maxLength", check.max)) if v is not None})
        elif isinstance(check, validate.OneOf):
            out["enum"] = list(check.choices)
    return out


def headers_schema(schema: type[Schema], extra: dict[str, dict[str, Any]] | None = None, **override: Any) -> dict[str, Any]:
    """An AMQP headers table from a `*Headers` schema: each property is a header, its `title` the
    field's name in ml-server's own terms (what REST calls it), `required` as the consumer checks."""
    props: dict[str, Any] = {}
    required = []
    for name, field in schema._declared_fields.items():
        header = str(field.data_key or name)
        prop = {"title": name.rstrip("_"), **field_schema(field), "description": ABOUT.get(header, "")}
        props[header] = {**prop, **override.get(name.rstrip("_"), {})}
        if field.required:
            required.append(header)
    for header, prop in (extra or {}).items():
        props[header] = {"description": ABOUT.get(header, ""), **prop}
    return {"type": "object", "properties": props, "required": required, "additionalProperties": True}


def _message(
    message_id: str, message_type: str, summary: str, headers: dict[str, Any], payload: dict[str, Any],
    content_type: str, properties: dict[str, Any], description: str = "",
) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "name": message_id,
        "title": summary,
        "summary": summary,
        "description": description,
        "contentType": content_type,
        "headers": headers,
        "payload": payload,
        "bindings": {"amqp": {"contentEncoding": "identity", "messageType": message_type, "bindingVersion": BINDING}},
        # The AMQP basic properties the message carries (the bindings have no place for them).
        "x-amqp-properties": {"type": {"const": message_type, "description": "the `type` property"}, **properties},
    }




_EMPTY = {"type": "string", "maxLength": 0, "description": "empty"}
_MESSAGE_ID = {
    "description": "unique per job, chosen by the publisher: the same id again is a no-op (safe retry); "
    "the job's events carry it in x-message-id",
    "required": True,
}
_PERSISTENT = {"description": "2 (persistent): train queues are durable", "const": 2, "required": True}
_RPC = {
    "reply_to": {"description": "the caller's reply queue", "required": True},
    "correlation_id": {"description": "echoed on the reply", "required": True},
    "expiration": {"description": "the caller's deadline in milliseconds, as text: a request nobody took in time is "
                   "dropped by the broker and gets no reply", "required": False},
}


def _training_body() -> dict[str, Any]:
    key = TARGET_METADATA_KEY.decode()
    return {
        **PARQUET_FRAME,
        "description": f"one Parquet file holding x and y: the Parquet schema metadata key `{key}` is the JSON list of "
        f"the target columns (`[]` or absent: no target, for unsupervised families); every other column is x. "
        "A body that is not such a file makes the job's version `failed`, with the reason in its event.",
    }


def messages() -> dict[str, Any]:
    """Every message of the contract, by its `messageId`."""
    reply_props = {"correlation_id": {"description": "the request's correlation_id", "required": True}}
    train_extra = {Header.RECLAIM_TOKEN: {"type": "string"}}  # a job published again from the store
    train = {kind: headers_schema(TrainHeaders, train_extra, kind={"enum": [kind]}) for kind in (JobKind.FIT.value, JobKind.UPDATE.value)}
    event_extra: dict[str, Any] = {
        CloudEvent.SPECVERSION: {"type": "string", "const": CloudEvent.VERSION},
        CloudEvent.ID: {"type": "string"},
        CloudEvent.SOURCE: {"type": "string", "format": "uri-reference"},
        CloudEvent.TYPE: {"type": "string", "enum": [f"{CloudEvent.TYPE_PREFIX}{k.value}" for k in EventKind]},
        CloudEvent.TIME: {"type": "string", "format": "date-time"},
        CloudEvent.SUBJECT: {"type": "string"},
    }
    event = headers_schema(
        StatusEvent,
        event_extra,
        event={"enum": [k.value for k in EventKind], "description": "`status`: a version changed status (x-version, x-status; "
               "x-error-message when failed). `deleted`: the model and its versions are gone. `alias`: an alias was set, moved "
               "or removed (x-alias, x-version absent when removed, x-serving). `rejected`: a job message for the model was "
               "dead-lettered before it became a version (x-error-message says why, x-error-fields names its bad headers)"},
        status={"enum": [s.value for s in Status]},
    )
    event["required"] = [Header.EVENT, Header.MODEL_KEY, Header.FAMILY, *event_extra]
    dead = headers_schema(DeadLetterHeaders)
    dead["description"] = "the job's own headers, as published, and these two"
    reply = headers_schema(ReplyHeaders)
    return {
        "fit": _message(
            "fit", MessageType.FIT, "train a new version of a model (sklearn fit)", train[JobKind.FIT.value], _training_body(), PARQUET,
            {"message_id": _MESSAGE_ID, "delivery_mode": _PERSISTENT},
            "The consumer records the job as the model's next version (a new model when the key is new), fits it, "
            "stores it; events tell `running`, then `done` or `failed`.",
        ),
        "update": _message(
            "update", MessageType.UPDATE, "partial_fit the model's latest done version into a new version",
            train[JobKind.UPDATE.value], _training_body(), PARQUET,
            {"message_id": _MESSAGE_ID, "delivery_mode": _PERSISTENT},
            "For families that support update; the frame has the columns of the first fit.",
        ),
        "predict": _message(
            "predict", MessageType.PREDICT, "predict with a model", headers_schema(PredictHeaders),
            {**PARQUET_FRAME, "description": "x as a Parquet file, the columns the model was trained on"}, PARQUET, _RPC,
            "Answered by a `reply`: the prediction as Parquet, one column per target (or class, for predict_proba).",
        ),
        "delete": _message(
            "delete", MessageType.DELETE, "delete a model and all its versions", headers_schema(DeleteHeaders),
            _EMPTY, JSON, _RPC,
            "As `DELETE /models/{model_key}`; answered by a `deleteReply`; a `deleted` event follows.",
        ),
        "import": _message(
            "import", MessageType.IMPORT, "store a model trained elsewhere as a new done version",
            headers_schema(ImportHeaders), {"type": "string", "format": "binary", "description": "the skops file or ONNX graph"},
            "application/octet-stream", _RPC,
            "Answered by a `reply` whose body is the JSON `{model_key, version}`.",
        ),
        "reply": _message(
            "reply", MessageType.REPLY, "the answer to a predict or an import", reply,
            {"oneOf": [
                {**PARQUET_FRAME, "description": "x-status 200, predict: the prediction, indexed like x"},
                {"type": "object", "description": "x-status 200, import: JSON", "properties": {"model_key": {"type": "string"}, "version": {"type": "integer"}}},
                {**_EMPTY, "description": "an error: empty, the error is in the headers"},
            ]},
            PARQUET, {"correlation_id": reply_props["correlation_id"]},
            f"`{Header.STATUS}` 200 with the answer, or the error's status with `{Header.ERROR_CODE}`, "
            f"`{Header.ERROR_MESSAGE}` and `{Header.ERROR_FIELDS}` and an empty body. Content type: Parquet for a predict, JSON for an import.",
        ),
        "deleteReply": _message(
            "deleteReply", MessageType.REPLY, "the answer to a delete", reply,
            {"type": "object", "properties": {"model_key": {"type": "string"}, "deleted": {"type": "integer", "description": "how many versions were deleted"}},
             "description": "JSON; empty on an error"},
            JSON, {"correlation_id": reply_props["correlation_id"]},
        ),
        "statusEvent": _message(
            "statusEvent", MessageType.STATUS, "something happened to a model", event, _EMPTY, JSON, {},
            "An empty message whose headers are the event: ml-server's own and the CloudEvents 1.0 attributes "
            "(AMQP binding, binary mode). Match a job's events by x-message-id.",
        ),
        "deadLetter": _message(
            "deadLetter", MessageType.FIT, "a train job the consumer could not run as sent", dead, _training_body(), PARQUET,
            {"message_id": {"description": "as published"}},
            f"The job as it was published, with {Header.DEAD_REASON} and {Header.ERROR_FIELDS} added. (A job dead-lettered "
            "by the broker after the delivery limit has RabbitMQ's own `x-death` header instead.) The `type` property is "
            "the one the job was published with.",
        ),
    }


__all__ = ["ABOUT", "BINDING", "messages"]
