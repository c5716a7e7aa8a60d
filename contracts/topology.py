"""The AMQP topology: exchanges, queues, routing keys, headers, message types.

Every name on the broker is built here, from a namespace (default
`ml-server`), so several deployments (or test runs) can share one broker.

    <ns>.jobs      direct exchange, durable: fit/update/predict jobs
    <ns>.events    topic exchange, durable: status events
    <ns>.dead      direct exchange, durable: dead-lettered train jobs

    <ns>.<family>.train    quorum queue, bound to jobs with "<family>.train"
    <ns>.<family>.predict  classic queue (quorum on a cluster), bound to jobs with "<family>.predict"
    <ns>.<family>.import   the same kind, bound to jobs with "<family>.import": model files to store
    <ns>.<family>.dead     quorum queue, bound to dead with "<family>.train": train jobs that can't be
                           run (`x-dead-reason`, `x-error-fields` say why) or that killed consumers
    <ns>.events.<id>       exclusive, auto-delete: one gateway's copy of every event ("#")
    (unnamed)              exclusive, auto-delete: one consumer process's copy of its families' events ("<family>.#")

Status events are routed by "<family>.<model_key>" and carry the kind of
event in a header: `status` (a version changed status), `deleted` (the
model and all its versions are gone), `alias` or `rejected` (a job message
was dead-lettered before it became a version), with CloudEvents attributes.

`gateway.asyncapi` turns all of this into the AsyncAPI document of the
contract (`GET /asyncapi.json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Header:
    """AMQP header names. Values are strings or integers; dicts travel as JSON text."""

    JOB_ID = "x-job-id"
    MODEL_KEY = "x-model-key"
    FAMILY = "x-family"
    VERSION = "x-version"
    KIND = "x-kind"
    PAYLOAD_ID = "x-payload-id"
    NAME = "x-name"
    MODKWARGS = "x-modkwargs"
    ALGKWARGS = "x-algkwargs"
    BACKEND = "x-backend"
    KWARGS = "x-kwargs"
    STATUS = "x-status"
    ERROR_CODE = "x-error-code"
    ERROR_MESSAGE = "x-error-message"
    ERROR_FIELDS = "x-error-fields"
    EVENT = "x-event"
    # A job published again from the store after its lease ran out carries the reclaim's token.
    RECLAIM_TOKEN = "x-reclaim-token"
    ALIAS = "x-alias"  # a predict's alias; an alias event's alias
    SERVING = "x-serving"  # an alias event: the alias the model serves now (absent: its latest done version)
    IMPORT_FORMAT = "x-import-format"  # an import: `skops` or `onnx`
    FEATURES = "x-features"  # an import: the feature names (JSON list) when the file has none
    TYPES = "x-types"  # an import: {feature: kind} (JSON object) for features that are not numbers
    ACTOR = "x-actor"  # who asked (the bearer token's name), for the version's history
    # A status event: the `message_id` of the job message that became this version (the gateway's jobs: the job id).
    MESSAGE_ID = "x-message-id"
    # A dead letter: why it was dead-lettered (the names of its bad headers are in `x-error-fields`).
    DEAD_REASON = "x-dead-reason"


class CloudEvent:
    """CloudEvents 1.0 attributes of a status event, in the AMQP binding's form: application properties
    (headers) prefixed `cloudEvents:`, so event routers that speak CloudEvents read our events as they come."""

    SPECVERSION = "cloudEvents:specversion"
    ID = "cloudEvents:id"
    SOURCE = "cloudEvents:source"
    TYPE = "cloudEvents:type"
    TIME = "cloudEvents:time"
    SUBJECT = "cloudEvents:subject"
    VERSION = "1.0"
    TYPE_PREFIX = "org.ml-server.model."  # + the `x-event` value: org.ml-server.model.status, ...


class EventKind(StrEnum):
    """Values of the `x-event` header of a status event."""

    STATUS = "status"  # a version changed status (queued, running, done, failed)
    DELETED = "deleted"  # the model was deleted; also the last status an event stream sends for it
    ALIAS = "alias"  # an alias was set, moved or removed, or the model's serving alias changed
    # A job message for the model was dead-lettered before it became a version (`x-error-message` says why).
    REJECTED = "rejected"
    LOAD = "load"  # load the model's default version into the consumers' caches now (V2 repository `load`)
    UNLOAD = "unload"  # drop the model from the consumers' caches (V2 repository `unload`; nothing is deleted)


class MessageType:
    """Values of the AMQP `type` property."""

    FIT = "fit"
    UPDATE = "update"
    PREDICT = "predict"
    REPLY = "predict.reply"  # the answer to every RPC: predict, import, delete
    STATUS = "status"
    # A trained model to store as a new version (an RPC on the family's import queue, answered like a predict).
    IMPORT = "import"
    # Delete a model and all its versions (an RPC on the family's predict queue; the reply's body is JSON).
    DELETE = "delete"


# Imports waiting for a family's consumers (each carries a model file): a full queue refuses more (503).
IMPORT_QUEUE_LENGTH = 64

# Train jobs delivered this many times (each delivery ended by a dead consumer)
# are dead-lettered instead of killing yet another consumer.
DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Topology:
    namespace: str = "ml-server"

    @property
    def jobs_exchange(self) -> str:
        return f"{self.namespace}.jobs"

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_exchange(self) -> str:
        return f"{self.namespace}.dead"

    def train_queue(self, family: str) -> str:
        return f"{self.namespace}.{family}.train"

    def predict_queue(self, family: str) -> str:
        return f"{self.namespace}.{family}.predict"

    def import_queue(self, family: str) -> str:
        return f"{self.namespace}.{family}.import"

    def family_queues(self, family: str) -> tuple[str, ...]:
        """Every queue of a family: train, predict, import, dead."""
        return (self.train_queue(family), self.predict_queue(family), self.import_queue(family), self.dead_queue(family))

    def dead_queue(self, family: str) -> str:
        return f"{self.namespace}.{family}.dead"

    def reply_queue(self, instance: str) -> str:
        return f"{self.namespace}.reply.{instance}"

    def events_queue(self, instance: str) -> str:
        """A gateway's exclusive queue of every status event, for its event streams."""
        return f"{self.namespace}.events.{instance}"

    @staticmethod
    def train_key(family: str) -> str:
        return f"{family}.train"

    @staticmethod
    def predict_key(family: str) -> str:
        return f"{family}.predict"

    @staticmethod
    def import_key(family: str) -> str:
        return f"{family}.import"

    @staticmethod
    def event_key(family: str, model_key: str) -> str:
        return f"{family}.{model_key}"

    @staticmethod
    def family_events(family: str) -> str:
        """Binding pattern of every event of one family's models."""
        return f"{family}.#"

    ALL_EVENTS = "#"

    def train_queue_arguments(self, max_length: int) -> dict[str, Any]:
        """A full train queue refuses new jobs (the publisher gets a nack: 503), never drops accepted ones."""
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-max-length": max_length,
            "x-overflow": "reject-publish",
        }

    @staticmethod
    def predict_queue_arguments(max_length: int, quorum: bool = False) -> dict[str, Any]:
        """Classic on one node (the fastest); quorum on a cluster, so the queue outlives any one node."""
        arguments: dict[str, Any] = {"x-max-length": max_length, "x-overflow": "reject-publish"}
        if quorum:
            arguments["x-queue-type"] = "quorum"
        return arguments

    @staticmethod
    def dead_queue_arguments() -> dict[str, Any]:
        return {"x-queue-type": "quorum"}
