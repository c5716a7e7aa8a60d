"""The AMQP messages, as typed records: a train job, a predict, an import, a delete, an RPC's reply.

Each travels with its frame (or file) in the body and every other field in a
header, named in `topology.Header`. A record's `headers()` is what a publisher
sends; `read(headers)` is what a consumer gets back, checked by the record's
schema (an unknown header is ignored: brokers and plugins add their own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from .errors import MLServerError, from_wire
from .schemas import ALIAS_NAME, FAMILY_NAME, MODEL_KEY, NAME_LENGTH, POSITIVE_ID, JsonDict, JsonList, Text
from .status import Backend, JobKind
from .topology import Header


class _Record:
    """What every message record does: its headers out, and back in through its schema."""

    SCHEMA: ClassVar[Schema]

    def headers(self) -> dict[str, Any]:
        """The headers to publish (fields left unset are left out)."""
        return {k: v for k, v in self.SCHEMA.dump(self).items() if v is not None}

    @classmethod
    def read(cls, headers: Mapping[str, Any]) -> Self:
        """The record a message's headers carry; `ValidationError` naming the bad headers otherwise."""
        record: Self = cls.SCHEMA.load(dict(headers))
        return record


@dataclass
class TrainJob(_Record):
    """A fit or an update. The gateway sends `job_id` and `version` (the session it wrote); a service
    publishing directly leaves both out and the consumer records the job (`job_id` is then set)."""

    model_key: str
    family: str
    kind: JobKind = JobKind.FIT
    job_id: int | None = None
    version: int | None = None
    name: str | None = None
    payload_id: int | None = None
    modkwargs: dict[str, Any] = field(default_factory=dict)
    algkwargs: dict[str, Any] = field(default_factory=dict)
    backend: Backend | None = None  # a fit's serializer (None: the family's); updates keep their base's
    message_id: str | None = None  # the message's own property, not a header: carried by its status events


@dataclass
class PredictJob(_Record):
    model_key: str
    version: int | None = None
    alias: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeleteJob(_Record):
    """A model and all its versions (the body is empty)."""

    model_key: str
    actor: str | None = None


@dataclass
class ImportJob(_Record):
    """A model file in the body; what to store it as in the headers."""

    model_key: str
    family: str
    format: str
    name: str | None = None
    features: list[Any] | None = None
    types: dict[str, Any] | None = None
    actor: str | None = None
    payload_id: int | None = None


@dataclass
class Reply(_Record):
    """An RPC's answer: `status` 200 with the answer in the body, or the error, its fields by header name."""

    status: int
    code: str | None = None
    message: str | None = None
    fields: dict[str, Any] | None = None

    @classmethod
    def error(cls, error: MLServerError, fields: dict[str, Any]) -> Reply:
        return cls(error.status, error.code, error.message, fields)


# ---- their schemas: the non-frame fields travel as headers ----------------


class _Headers(Schema):
    class Meta:
        unknown = EXCLUDE  # brokers and plugins may add their own headers


class _RecordHeaders(_Headers):
    RECORD: ClassVar[type[_Record]]

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> _Record:
        return self.RECORD(**data)


class TrainHeaders(_RecordHeaders):
    RECORD = TrainJob

    job_id = fields.Integer(load_default=None, allow_none=True, data_key=Header.JOB_ID, validate=POSITIVE_ID)
    model_key = fields.String(required=True, data_key=Header.MODEL_KEY, validate=MODEL_KEY)
    family = fields.String(required=True, data_key=Header.FAMILY, validate=FAMILY_NAME)
    version = fields.Integer(load_default=None, allow_none=True, data_key=Header.VERSION, validate=POSITIVE_ID)
    kind = fields.Enum(JobKind, by_value=True, load_default=JobKind.FIT, data_key=Header.KIND)
    name = Text(load_default=None, allow_none=True, data_key=Header.NAME, validate=NAME_LENGTH)
    payload_id = fields.Integer(load_default=None, allow_none=True, data_key=Header.PAYLOAD_ID, validate=POSITIVE_ID)
    modkwargs = JsonDict(load_default=dict, data_key=Header.MODKWARGS)
    algkwargs = JsonDict(load_default=dict, data_key=Header.ALGKWARGS)
    backend = fields.Enum(Backend, by_value=True, load_default=None, allow_none=True, data_key=Header.BACKEND)

    @validates_schema
    def gateway_pairs(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("version") is not None and data.get("job_id") is None:
            raise ValidationError(f"set by the gateway with {Header.JOB_ID}: leave it out (the consumer numbers the version)", Header.VERSION)


class PredictHeaders(_RecordHeaders):
    RECORD = PredictJob

    model_key = fields.String(required=True, data_key=Header.MODEL_KEY, validate=MODEL_KEY)
    version = fields.Integer(load_default=None, allow_none=True, data_key=Header.VERSION, validate=POSITIVE_ID)
    alias = fields.String(load_default=None, allow_none=True, data_key=Header.ALIAS, validate=ALIAS_NAME)
    kwargs = JsonDict(load_default=dict, data_key=Header.KWARGS)

    @validates_schema
    def one_of(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("version") is not None and data.get("alias") is not None:
            raise ValidationError(f"give {Header.VERSION} or {Header.ALIAS}, not both", Header.ALIAS)


class DeleteHeaders(_RecordHeaders):
    RECORD = DeleteJob

    model_key = fields.String(required=True, data_key=Header.MODEL_KEY, validate=MODEL_KEY)
    actor = fields.String(load_default=None, allow_none=True, data_key=Header.ACTOR)


class ImportHeaders(_RecordHeaders):
    RECORD = ImportJob

    model_key = fields.String(required=True, data_key=Header.MODEL_KEY, validate=MODEL_KEY)
    family = fields.String(required=True, data_key=Header.FAMILY, validate=FAMILY_NAME)
    name = Text(load_default=None, allow_none=True, data_key=Header.NAME, validate=NAME_LENGTH)
    format = fields.String(required=True, data_key=Header.IMPORT_FORMAT, validate=validate.OneOf(("skops", "onnx")))
    features = JsonList(load_default=None, allow_none=True, data_key=Header.FEATURES)
    types = JsonDict(load_default=None, allow_none=True, data_key=Header.TYPES)
    actor = fields.String(load_default=None, allow_none=True, data_key=Header.ACTOR)
    payload_id = fields.Integer(load_default=None, allow_none=True, data_key=Header.PAYLOAD_ID, validate=POSITIVE_ID)


class ReplyHeaders(_RecordHeaders):
    RECORD = Reply

    status = fields.Integer(required=True, data_key=Header.STATUS)
    code = fields.String(load_default=None, allow_none=True, data_key=Header.ERROR_CODE)
    message = fields.String(load_default=None, allow_none=True, data_key=Header.ERROR_MESSAGE)
    fields_ = JsonDict(load_default=None, allow_none=True, data_key=Header.ERROR_FIELDS, attribute="fields")


TrainJob.SCHEMA = TrainHeaders()
PredictJob.SCHEMA = PredictHeaders()
DeleteJob.SCHEMA = DeleteHeaders()
ImportJob.SCHEMA = ImportHeaders()
Reply.SCHEMA = ReplyHeaders()


# An error reply names the bad parts of the request as they travel: its headers, and `body` for the frame.
BODY = "body"
_FIELD_HEADERS: dict[str, str] = {
    name: str(f.data_key)
    for schema in (TrainHeaders, PredictHeaders, ImportHeaders, DeleteHeaders)
    for name, f in schema._declared_fields.items()
    if f.data_key
}
_FIELD_HEADERS.update({"x": BODY, "y": BODY, "file": BODY})
_HEADER_FIELDS = {header: name for name, header in _FIELD_HEADERS.items() if header != BODY}


def header_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """An error's fields under the names a message carries them by (`kwargs` -> `x-kwargs`, `x` -> `body`)."""
    return {_FIELD_HEADERS.get(name, name): value for name, value in fields.items()}


def request_fields(fields: Mapping[str, Any], body: str = "x") -> dict[str, Any]:
    """The other way: a reply's error fields under the names of the REST request (`x-kwargs` -> `kwargs`,
    `body` -> the request's field for it: `x` for a predict, `file` for an import)."""
    names = {**_HEADER_FIELDS, BODY: body}
    return {names.get(name, name): value for name, value in fields.items()}


def read_reply(headers: Mapping[str, Any], body: bytes, body_field: str = "x") -> bytes:
    """An RPC reply's answer; the error the consumer replied with, raised as its own class, its fields
    named as the REST request names them (`body_field`: what the request calls its body)."""
    try:
        reply = Reply.read(headers)
    except ValidationError as e:
        raise MLServerError(f"the consumer's reply has malformed headers: {e.messages}") from e
    if reply.status != 200:
        fields = request_fields(reply.fields, body_field) if reply.fields else None
        raise from_wire(reply.code or "internal_error", reply.message or "consumer error", fields)
    return body


class StatusEvent(_Headers):
    """A status event's headers (`contracts.events.event_headers` adds the CloudEvents attributes)."""

    event = fields.String(required=True, data_key=Header.EVENT)
    model_key = fields.String(required=True, data_key=Header.MODEL_KEY)
    family = fields.String(required=True, data_key=Header.FAMILY)
    version = fields.Integer(load_default=None, allow_none=True, data_key=Header.VERSION)
    status = fields.String(load_default=None, allow_none=True, data_key=Header.STATUS)
    alias = fields.String(load_default=None, allow_none=True, data_key=Header.ALIAS)
    serving = fields.String(load_default=None, allow_none=True, data_key=Header.SERVING)
    # The job message that became this version (its `message_id`), and why a version failed or a job was rejected.
    message_id = fields.String(load_default=None, allow_none=True, data_key=Header.MESSAGE_ID)
    error = fields.String(load_default=None, allow_none=True, data_key=Header.ERROR_MESSAGE)
    # A rejected job's bad headers, as its dead letter names them.
    fields_ = JsonDict(load_default=None, allow_none=True, data_key=Header.ERROR_FIELDS, attribute="fields")


class DeadLetterHeaders(_Headers):
    """What the consumer adds to a train job it dead-letters (the job's own headers and body stay)."""

    reason = fields.String(required=True, data_key=Header.DEAD_REASON)
    fields_ = JsonDict(required=True, data_key=Header.ERROR_FIELDS, attribute="fields")
