"""The AsyncAPI document of the AMQP contract: valid AsyncAPI 2.6, and every name the code uses is in it.

`asyncapi/asyncapi-2.6.0.schema.json` is the official JSON schema of AsyncAPI 2.6.0, the file
`schemas/2.6.0.json` of the `@asyncapi/specs` npm package (6.11.1, Apache-2.0), kept here unchanged.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts.settings import Settings
from contracts.status import JobKind
from contracts.topology import IMPORT_QUEUE_LENGTH, CloudEvent, EventKind, Header, MessageType, Topology
from gateway.asyncapi import FAMILY, MODEL_KEY, build

SCHEMA = Path(__file__).parent / "asyncapi" / "asyncapi-2.6.0.schema.json"


def settings(namespace: str = "ml-server") -> Settings:
    return Settings(data_dir=Path("/nonexistent"), broker_url="amqp://localhost/", database_url="sqlite://", namespace=namespace)


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def names_of(cls: type) -> set[str]:
    return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}


def contract_gaps(document: dict[str, Any], settings: Settings) -> list[str]:
    """Every name the code puts on the wire (from `contracts`) that the document does not say, as it says it."""
    t = Topology(settings.namespace)
    gaps: list[str] = []
    messages = document["components"]["messages"]
    headers = {h for m in messages.values() for h in m["headers"]["properties"]}
    for header in names_of(Header) | (names_of(CloudEvent) - {CloudEvent.VERSION, CloudEvent.TYPE_PREFIX}):
        if header not in headers:
            gaps.append(f"header {header}")
    types = {m["bindings"]["amqp"]["messageType"] for m in messages.values()}
    for message_type in names_of(MessageType):
        if message_type not in types:
            gaps.append(f"message type {message_type}")
    event_values = set(messages["statusEvent"]["headers"]["properties"][Header.EVENT]["enum"])
    gaps += [f"event kind {k.value}" for k in EventKind if k.value not in event_values]
    fit_kinds = {m["headers"]["properties"][Header.KIND]["enum"][0] for m in (messages["fit"], messages["update"])}
    gaps += [f"job kind {k}" for k in (JobKind.FIT.value, JobKind.UPDATE.value) if k not in fit_kinds]

    channels = document["channels"]
    expected = {
        t.train_key(FAMILY): ("routingKey", t.jobs_exchange, "direct", t.train_queue(FAMILY), t.train_queue_arguments(settings.max_train_queue)),
        t.predict_key(FAMILY): ("routingKey", t.jobs_exchange, "direct", t.predict_queue(FAMILY), t.predict_queue_arguments(settings.max_predict_queue)),
        t.import_key(FAMILY): ("routingKey", t.jobs_exchange, "direct", t.import_queue(FAMILY), t.predict_queue_arguments(IMPORT_QUEUE_LENGTH)),
        t.event_key(FAMILY, MODEL_KEY): ("routingKey", t.events_exchange, "topic", None, None),
        t.dead_queue(FAMILY): ("queue", t.dead_exchange, "direct", t.dead_queue(FAMILY), t.dead_queue_arguments()),
    }
    for name, (kind, exchange, exchange_type, queue, arguments) in expected.items():
        channel = channels.get(name)
        if channel is None:
            gaps.append(f"channel {name}")
            continue
        amqp = channel["bindings"]["amqp"]
        if amqp["is"] != kind:
            gaps.append(f"channel {name} is a {amqp['is']}, not a {kind}")
        found = amqp.get("exchange") or channel.get("x-queue", {}).get("exchange") or {}
        if (found.get("name"), found.get("type")) != (exchange, exchange_type):
            gaps.append(f"channel {name}: exchange {found} is not {exchange} ({exchange_type})")
        if queue is not None:
            declared = channel.get("x-queue", {})
            if declared.get("name") != queue or declared.get("arguments") != arguments:
                gaps.append(f"channel {name}: queue {declared} is not {queue} with {arguments}")
    if t.dead_queue(FAMILY) in channels and channels[t.dead_queue(FAMILY)]["x-queue"].get("bindingKey") != t.train_key(FAMILY):
        gaps.append("the dead queue's binding key")
    return gaps


def test_the_document_is_valid_asyncapi() -> None:
    document = build(settings())
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator().iter_errors(document)]
    assert not errors, errors
    assert document["asyncapi"] == "2.6.0"


def test_the_validator_refuses_a_broken_document() -> None:
    document = build(settings())
    broken = copy.deepcopy(document)
    broken["components"]["messages"]["fit"]["headers"]["type"] = "array"  # headers must be an object schema
    assert list(validator().iter_errors(broken))
    broken = copy.deepcopy(document)
    broken["channels"][Topology.train_key(FAMILY)]["publish"]["oneMessage"] = {}
    assert list(validator().iter_errors(broken))


@pytest.mark.parametrize("namespace", ["ml-server", "test-abc123"])
def test_every_name_the_code_uses_is_in_the_document(namespace: str) -> None:
    s = settings(namespace)
    assert contract_gaps(build(s), s) == []


def test_a_name_missing_from_the_document_is_found() -> None:
    s = settings()
    document = build(s)
    del document["components"]["messages"]["predict"]["headers"]["properties"][Header.KWARGS]
    document["components"]["messages"]["delete"]["bindings"]["amqp"]["messageType"] = "remove"
    document["channels"][Topology.train_key(FAMILY)]["x-queue"]["arguments"]["x-delivery-limit"] = 1
    gaps = contract_gaps(document, s)
    assert f"header {Header.KWARGS}" in gaps and f"message type {MessageType.DELETE}" in gaps
    assert any("queue" in g and Topology.train_key(FAMILY) in g for g in gaps), gaps


def test_headers_carry_types_and_titles_from_the_schemas() -> None:
    messages = build(settings())["components"]["messages"]
    fit = messages["fit"]["headers"]
    assert set(fit["required"]) == {Header.MODEL_KEY, Header.FAMILY}
    assert fit["properties"][Header.MODEL_KEY]["title"] == "model_key"
    assert fit["properties"][Header.MODEL_KEY]["pattern"] == "^[A-Za-z0-9_.-]{1,64}$"
    assert fit["properties"][Header.MODKWARGS]["type"] == "string"  # JSON text
    assert fit["properties"][Header.JOB_ID]["type"] == "integer"
    assert messages["reply"]["headers"]["properties"][Header.ERROR_FIELDS]["title"] == "fields"
    event = messages["statusEvent"]["headers"]
    assert CloudEvent.ID in event["required"] and Header.MESSAGE_ID in event["properties"]
