"""Status events as they go on the wire: ml-server's headers and the CloudEvents attributes.

Every event (a version changed status, a model was deleted, an alias moved, a
job was rejected) is an empty message on the events exchange whose headers
are `StatusEvent`'s, plus the CloudEvents 1.0 attributes in the AMQP
binding's form (`cloudEvents:id`, `cloudEvents:type`, ...), so that event
routers which speak CloudEvents take them as they come. Consumers of the
older headers (the gateway's event streams, the consumers' caches) read
them as before.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from .messages import StatusEvent
from .topology import CloudEvent, EventKind

_EVENT = StatusEvent()


def event_source(namespace: str, family: str) -> str:
    """`cloudEvents:source`: the deployment (its namespace) and the model's family, as a URI reference."""
    return f"/{namespace}/{family}"


def event_type(kind: EventKind | str) -> str:
    """`cloudEvents:type` of an `x-event` kind: `org.ml-server.model.status`, `...deleted`, `...alias`, `...rejected`."""
    return f"{CloudEvent.TYPE_PREFIX}{EventKind(kind).value}"


def event_headers(namespace: str, event: dict[str, Any]) -> dict[str, Any]:
    """The headers of one event (`event` as `StatusEvent` loads it), fields left out or None dropped."""
    headers = {k: v for k, v in _EVENT.dump(event).items() if v is not None}
    headers.update(
        {
            CloudEvent.SPECVERSION: CloudEvent.VERSION,
            CloudEvent.ID: uuid.uuid4().hex,
            CloudEvent.SOURCE: event_source(namespace, event["family"]),
            CloudEvent.TYPE: event_type(event["event"]),
            CloudEvent.TIME: datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            CloudEvent.SUBJECT: event["model_key"],
        }
    )
    return headers
