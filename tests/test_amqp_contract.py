"""The AMQP contract driven by an outsider: `pika` (not our client), knowing only `GET /asyncapi.json`.

Every exchange, routing key, queue, header name and message type here is read from the served
document, never from `contracts`: what a team in another language would have.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pika
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from sklearn.linear_model import LinearRegression

from .stack import BROKER_URL, Stack

pytestmark = pytest.mark.integration

FAMILY = "linreg"
DEADLINE = 60.0


class Contract:
    """The served AsyncAPI document, read as a publisher reads it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.messages = document["components"]["messages"]

    def channel_of(self, message_id: str) -> tuple[str, dict[str, Any]]:
        ref = f"#/components/messages/{message_id}"
        for name, channel in self.doc["channels"].items():
            for op in ("publish", "subscribe"):
                message = channel.get(op, {}).get("message", {})
                if ref in [message.get("$ref"), *(m.get("$ref") for m in message.get("oneOf", []))]:
                    return name, channel
        raise AssertionError(f"no channel carries {message_id}")

    def exchange(self, message_id: str) -> str:
        channel = self.channel_of(message_id)[1]
        return str(channel["bindings"]["amqp"]["exchange"]["name"])

    def routing_key(self, message_id: str, **params: str) -> str:
        return self.channel_of(message_id)[0].format(**params)

    def queue(self, message_id: str, **params: str) -> str:
        return str(self.channel_of(message_id)[1]["bindings"]["amqp"]["queue"]["name"]).format(**params)

    def header(self, message_id: str, title: str) -> str:
        """The header that carries the field `title` (the name ml-server's REST API gives it)."""
        for name, prop in self.messages[message_id]["headers"]["properties"].items():
            if prop.get("title") == title:
                return str(name)
        raise AssertionError(f"message {message_id} has no header titled {title}")

    def type(self, message_id: str) -> str:
        return str(self.messages[message_id]["bindings"]["amqp"]["messageType"])


def parquet(frame: pd.DataFrame, metadata: dict[bytes, bytes] | None = None) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def training_body(c: Contract, x: pd.DataFrame, y: pd.Series) -> bytes:
    """x and y in one Parquet file, the target named in the schema metadata key the document gives."""
    description = c.messages["fit"]["payload"]["description"]
    key = description.split("metadata key `", 1)[1].split("`", 1)[0]
    return parquet(pd.concat([x, y], axis=1), {key.encode(): json.dumps([str(y.name)]).encode()})


class Peer:
    """One pika connection: an events queue bound before anything is published, an RPC reply queue."""

    def __init__(self, c: Contract, namespace_bindings: list[str]) -> None:
        self.c = c
        self.connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.events = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in namespace_bindings:
            self.channel.queue_bind(self.events, c.exchange("statusEvent"), key)
        self.replies = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.seen: list[dict[str, Any]] = []

    def close(self) -> None:
        self.connection.close()

    def publish(self, kind: str, routing_key: str, headers: dict[str, Any], body: bytes, **props: Any) -> None:
        self.channel.basic_publish(
            self.c.exchange(kind),
            routing_key,
            body,
            pika.BasicProperties(headers=headers, type=self.c.type(kind), **props),
            mandatory=True,
        )

    def call(self, kind: str, headers: dict[str, Any], body: bytes = b"") -> tuple[dict[str, Any], bytes, str | None]:
        """An RPC: (reply headers, reply body, reply content type)."""
        correlation_id = uuid.uuid4().hex
        self.publish(
            kind, self.c.routing_key(kind, family=FAMILY), headers, body,
            reply_to=self.replies, correlation_id=correlation_id, expiration=str(int(DEADLINE * 1000)),
        )
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            method, props, reply = self.channel.basic_get(self.replies, auto_ack=True)
            if method is None:
                self.connection.process_data_events(time_limit=0.05)
                continue
            if props.correlation_id == correlation_id:
                assert props.type == self.c.type("reply")
                return dict(props.headers or {}), reply, props.content_type
        raise AssertionError(f"no reply to {kind} within {DEADLINE}s")

    def wait_event(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first event (headers) that `match`es, of those seen or still to come."""
        for event in self.seen:
            if match(event):
                return event
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            method, props, _ = self.channel.basic_get(self.events, auto_ack=True)
            if method is None:
                self.connection.process_data_events(time_limit=0.05)
                continue
            assert props.type == self.c.type("statusEvent")
            event = dict(props.headers or {})
            self.seen.append(event)
            if match(event):
                return event
        raise AssertionError(f"no event {what} within {DEADLINE}s; seen: {self.seen}")

    def dead_letter(self, queue: str, message_id: str) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            method, props, body = self.channel.basic_get(queue, auto_ack=False)
            if method is None:
                self.connection.process_data_events(time_limit=0.1)
                continue
            if props.message_id == message_id:
                self.channel.basic_ack(method.delivery_tag)
                return dict(props.headers or {}), body
            self.channel.basic_nack(method.delivery_tag, requeue=True)
        raise AssertionError(f"{message_id} not dead-lettered within {DEADLINE}s")


def read_parquet(body: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(body)).to_pandas()


@pytest.fixture
def contract(stack: Stack) -> Contract:
    r = requests.get(stack.url + "/asyncapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert 'href="asyncapi.json"' in requests.get(stack.url + "/docs", timeout=10).text  # linked from the docs page
    return Contract(r.json())


def test_fit_events_predict_errors_dead_letters_and_delete_with_pika(stack: Stack, contract: Contract) -> None:
    c = contract
    key = f"pika-{uuid.uuid4().hex[:10]}"
    peer = Peer(c, [c.routing_key("statusEvent", family=FAMILY, model_key=key)])
    try:
        h = {name: c.header("fit", name) for name in ("model_key", "family", "name", "modkwargs")}
        ev = {name: c.header("statusEvent", name) for name in ("event", "model_key", "version", "status", "message_id", "error", "fields")}
        rng = np.random.default_rng(7)
        x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
        y = pd.Series(3 * x["a"] - x["b"] + 0.5, name="target")

        # ---- fit: the events of this message, matched by message_id --------------------------------
        fit_id = uuid.uuid4().hex
        train_key = c.routing_key("fit", family=FAMILY)
        peer.publish("fit", train_key, {h["model_key"]: key, h["family"]: FAMILY, h["name"]: "outsider"}, training_body(c, x, y),
                     message_id=fit_id, delivery_mode=2)
        done = peer.wait_event(lambda e: e.get(ev["message_id"]) == fit_id and e.get(ev["status"]) in ("done", "failed"), "done")
        assert done[ev["status"]] == "done" and done[ev["version"]] == 1 and done[ev["model_key"]] == key, done
        running = peer.wait_event(lambda e: e.get(ev["message_id"]) == fit_id and e.get(ev["status"]) == "running", "running")
        assert running[ev["version"]] == 1
        ce = {p: v for p, v in done.items() if p.startswith("cloudEvents:")}
        assert ce["cloudEvents:specversion"] == "1.0" and ce["cloudEvents:subject"] == key and ce["cloudEvents:id"], ce

        # A fit that fails: its event carries the reason. A body that is not Parquet: a failed version, as documented.
        for body, modkwargs, why in ((training_body(c, x, y), {"no_such_parameter": 1}, "no_such_parameter"), (b"not parquet", {}, "Parquet")):
            failing = uuid.uuid4().hex
            peer.publish("fit", train_key, {h["model_key"]: key, h["family"]: FAMILY, h["modkwargs"]: json.dumps(modkwargs)}, body,
                         message_id=failing, delivery_mode=2)
            failed = peer.wait_event(lambda e: e.get(ev["message_id"]) == failing and e.get(ev["status"]) in ("done", "failed"), "failed")
            assert failed[ev["status"]] == "failed" and why in failed[ev["error"]], failed

        # ---- predict -------------------------------------------------------------------------------
        p = {name: c.header("predict", name) for name in ("model_key", "version", "alias", "kwargs")}
        r = {name: c.header("reply", name) for name in ("status", "code", "message", "fields")}
        headers, body, content_type = peer.call("predict", {p["model_key"]: key, p["version"]: 1}, parquet(x.head(5)))
        assert headers[r["status"]] == 200, headers
        expected = LinearRegression().fit(x, y).predict(x.head(5))
        np.testing.assert_allclose(read_parquet(body)["target"].to_numpy(), expected, rtol=1e-9, atol=1e-9)

        # ---- every error reply: status, code, message and the fields named as the request carries them ----------
        cases = [
            ({p["model_key"]: "no-such-model"}, parquet(x.head(1)), 404, p["model_key"]),
            ({p["model_key"]: key}, b"not parquet", 422, "body"),
            ({p["model_key"]: key, p["kwargs"]: json.dumps({"method": "explode"})}, parquet(x.head(1)), 422, p["kwargs"]),
            ({p["model_key"]: key, p["version"]: 1, p["alias"]: "champion"}, parquet(x.head(1)), 422, p["alias"]),
            ({p["model_key"]: key, p["version"]: 99}, parquet(x.head(1)), 404, p["version"]),
            ({p["model_key"]: key, p["version"]: 2}, parquet(x.head(1)), 409, p["model_key"]),  # version 2 failed
            ({}, parquet(x.head(1)), 422, p["model_key"]),
            ({p["model_key"]: key}, parquet(x.head(1).rename(columns={"a": "z"})), 422, "body"),
        ]
        for request, payload, status, field in cases:
            headers, body, _ = peer.call("predict", request, payload)
            assert headers[r["status"]] == status and headers[r["code"]] and headers[r["message"]], (request, headers)
            fields = json.loads(headers[r["fields"]])
            assert field in fields, (request, headers)
            assert body == b""

        # ---- dead letters: with their reason; a rejected event when the model key is known ------------------
        dead_queue = c.queue("deadLetter", family=FAMILY)
        d = {name: c.header("deadLetter", name) for name in ("reason", "fields")}
        no_key = uuid.uuid4().hex
        peer.publish("fit", train_key, {h["family"]: FAMILY}, training_body(c, x, y), message_id=no_key, delivery_mode=2)
        headers, _ = peer.dead_letter(dead_queue, no_key)
        assert h["model_key"] in headers[d["reason"]] and h["model_key"] in json.loads(headers[d["fields"]]), headers
        no_family = uuid.uuid4().hex
        peer.publish("fit", train_key, {h["model_key"]: key}, training_body(c, x, y), message_id=no_family, delivery_mode=2)
        headers, body = peer.dead_letter(dead_queue, no_family)
        assert h["family"] in json.loads(headers[d["fields"]]) and headers[h["model_key"]] == key and body
        rejected = peer.wait_event(lambda e: e.get(ev["message_id"]) == no_family, "rejected")
        assert rejected[ev["event"]] == "rejected" and h["family"] in rejected[ev["error"]], rejected
        assert h["family"] in json.loads(rejected[c.header("statusEvent", "fields")]), rejected
        contradicting = uuid.uuid4().hex  # `type` says update, the kind header says fit
        peer.channel.basic_publish(
            c.exchange("fit"), train_key, training_body(c, x, y),
            pika.BasicProperties(headers={h["model_key"]: key, h["family"]: FAMILY, c.header("fit", "kind"): c.type("fit")},
                                 type=c.type("update"), message_id=contradicting, delivery_mode=2),
            mandatory=True,
        )
        headers, _ = peer.dead_letter(dead_queue, contradicting)
        assert c.header("fit", "kind") in json.loads(headers[d["fields"]]), headers

        # ---- delete ------------------------------------------------------------------------------------
        dh = c.header("delete", "model_key")
        headers, body, content_type = peer.call("delete", {dh: key})
        assert headers[r["status"]] == 200 and json.loads(body) == {"model_key": key, "deleted": 3}, (headers, body)
        assert content_type == c.messages["deleteReply"]["contentType"]
        gone = peer.wait_event(lambda e: e.get(ev["event"]) == "deleted", "deleted")
        assert gone[ev["model_key"]] == key
        assert requests.get(stack.model_url(key), timeout=10).status_code == 404
        headers, _, _ = peer.call("predict", {p["model_key"]: key}, parquet(x.head(1)))
        assert headers[r["status"]] == 404
        headers, _, _ = peer.call("delete", {dh: key})
        assert headers[r["status"]] == 404 and dh in json.loads(headers[r["fields"]])
    finally:
        peer.close()
