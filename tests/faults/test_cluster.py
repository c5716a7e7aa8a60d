"""A three-node RabbitMQ cluster loses a node under load, twice, and gets it back.

Three `rabbitmq-server` nodes of Debian's package run on this machine and
form one cluster (`join_cluster`). The gateway and one consumer get the
nodes' URLs starting with the first node, a second consumer starting with the
second, so they sit on different nodes. While fits and predicts run, the
node the gateway and the first consumer are connected to is stopped, then,
once it has rejoined, the node leading the train queue. Each time:

- every fit that got a 202 ends `done`, exactly one version per model;
- predicts fail only while the processes move to another node, as 503 with
  Retry-After or a 504 within their deadline, and answer again within seconds
  (the longest gap between answered predicts is the failover time, printed
  and kept in the run's fault figures);
- the stopped node rejoins; the queues are whole again (every member online),
  hold nothing, and every process holds one connection, to a node that is up.

One cluster for the module: booting and joining three nodes is most of its time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from ..conftest import new_database
from ..stack import wait_for
from .cluster import BrokerCluster, ClusterStack
from .helpers import FitBurst, PredictLoad, data, fit_body, record, versions

pytestmark = pytest.mark.integration

PREDICT_TIMEOUT = 4.0
PUBLISH_TIMEOUT = 3.0
ENV = {"ML_SERVER_PREDICT_TIMEOUT": str(PREDICT_TIMEOUT), "ML_SERVER_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT)}
# Longest a caller may go without an answered predict across a failover (measured: 0.1 to 3.4 s).
FAILOVER_LIMIT = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[BrokerCluster]:
    c = BrokerCluster(3)
    try:
        c.start()
        yield c
    finally:
        c.delete()


def _failover(s: ClusterStack, node: str, load: PredictLoad, burst: FitBurst) -> dict[str, Any]:
    """Stop `node` under load; figures of the failover once predicts answer again. The node stays down."""
    answers_before = len(burst.answers)
    began = time.monotonic()
    s.cluster.node(node).terminate()
    stopped = time.monotonic()
    wait_for(lambda: load.ok_since(stopped), 60, what=f"a predict answered after {node} stopped")
    back = time.monotonic()
    during = [(lat, st) for b, lat, st in load.results if began - PREDICT_TIMEOUT <= b <= back]
    refused = [st for st, _ in burst.answers[answers_before:]]
    return dict(
        node=node,
        stop_s=round(stopped - began, 2),
        predicts_back_after_stop_s=round(back - stopped, 2),
        failover_s=round(load.longest_gap(began, back), 2),
        predicts_during=len(during),
        predicts_failed=sum(1 for _, st in during if st != 200),
        predict_statuses=sorted({st for _, st in during}),
        max_predict_latency_s=round(max((lat for lat, _ in during), default=0.0), 2),
        fits_refused_503=refused.count(503),
    )


def _rejoin(s: ClusterStack, node: str) -> float:
    """Start `node` again on its data; seconds until it runs in the cluster with every queue member online."""
    began = time.monotonic()
    s.cluster.node(node).start()

    def whole() -> bool:
        queues = s.cluster.queues(s.namespace)
        return all(len(q["online"]) == len(s.cluster.nodes) for q in queues.values() if q["type"] == "quorum")

    wait_for(whole, 90, interval=0.5, what="every quorum queue member online")
    return time.monotonic() - began


def test_losing_a_node_loses_no_fit_and_predicts_answer_again_within_seconds(
    cluster: BrokerCluster, tmp_path: Path, figures_file: Path
) -> None:
    with new_database("postgresql", tmp_path) as database_url:
        s = ClusterStack(database_url, tmp_path / "stack", cluster, **ENV)
        try:
            _scenario(s, cluster, figures_file)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{s.logs()}") from e  # the gateway's and consumers' side of it
        finally:
            s.stop()


def _scenario(s: ClusterStack, cluster: BrokerCluster, figures_file: Path) -> None:
    t = s.queues("logreg")
    first, second = cluster.nodes[0].node, cluster.nodes[1].node
    s.start_consumer("logreg", wait=False)  # nodes 1, 2, 3
    s.start_consumer("logreg", wait=False, ML_SERVER_BROKER_URL=cluster.urls(1))  # nodes 2, 3, 1
    s.start_gateway()
    s.wait_consumers("logreg", 2)

    queues = cluster.queues(s.namespace)
    # Replicated over the cluster: train, dead-letter and (the broker list names several nodes) predict queues.
    family_queues = [*t, f"{s.namespace}.logreg.dead"]
    assert {q: (queues[q]["type"], len(queues[q]["members"])) for q in family_queues} == {q: ("quorum", 3) for q in family_queues}
    where = dict(cluster.connections())
    gateway = next(n for n in where if n.startswith("gateway "))
    consumers = sorted((n for n in where if n.startswith("consumer ")), key=lambda n: where[n] != first)
    assert len(consumers) == 2 and [where[gateway], where[consumers[0]], where[consumers[1]]] == [first, first, second], where

    x, y = data(1)
    model = requests.post(s.fit_url("logreg"), json=fit_body(x, y, name=f"{s.namespace}-predicted"), timeout=30).json()["model_key"]
    assert s.wait_finished("logreg", model)["status"] == "done"

    load = PredictLoad(s.family_url("logreg"), model, threads=3).start()
    burst = FitBurst(s).start()
    try:
        wait_for(lambda: len(burst.accepted()) >= 3, 60, what="fits accepted before the first failover")
        # 1. The node the gateway and the first consumer are connected to.
        gateway_node = _failover(s, where[gateway], load, burst)
        gateway_node["rejoin_s"] = round(_rejoin(s, where[gateway]), 2)
        # 2. The node leading the train queue now.
        accepted_before = len(burst.accepted())
        wait_for(lambda: len(burst.accepted()) > accepted_before, 150, what="a fit accepted after the rejoin")
        leader = cluster.queues(s.namespace)[t[0]]["leader"]
        train_leader = _failover(s, leader, load, burst)
        accepted_before_rejoin = len(burst.accepted())
        wait_for(lambda: len(burst.accepted()) > accepted_before_rejoin, 150, what="a fit accepted after the failover")
    finally:
        burst.stop()
        load.stop()
    # The node rejoins while the fits are checked.
    rejoining = ThreadPoolExecutor(1).submit(_rejoin, s, leader)

    accepted = burst.accepted()
    statuses = [st for st, _ in burst.answers]
    assert len(accepted) == burst.sent, statuses  # each fit accepted in the end (after its 503s)
    assert set(statuses) <= {202, 503}, statuses  # a clean refusal or an acceptance, nothing else
    finished = [s.wait_finished("logreg", k, timeout=120) for k in accepted]
    lost = [f for f in finished if f["status"] != "done"]
    # Refused attempts left `failed` versions behind; exactly one version of each model is done.
    duplicates = sum(len([v for v in versions(s, k) if v["status"] == "done"]) - 1 for k in accepted)
    assert all(v["status"] in ("done", "failed") for k in accepted for v in versions(s, k))

    train_leader["rejoin_s"] = round(rejoining.result(timeout=180), 2)

    # Nothing left behind: every queue empty with all its members online, the consumers back on both
    # queues, one connection per process, no process restarted.
    def settled() -> dict[str, Any] | None:
        now = cluster.queues(s.namespace)
        ok = (
            all(q["messages"] == 0 for q in now.values())
            and all(len(now[q]["online"]) == 3 for q in family_queues)
            and all(now[q]["consumers"] == 2 for q in t)
        )
        return now if ok else None

    wait_for(settled, 60, interval=1.0, what="the cluster's queues settled")
    after = cluster.connections()
    assert sorted(name for name, _ in after) == sorted(where), (where, after)  # one each, none left from the moves
    assert {node for _, node in after} <= set(cluster.running_nodes()), after
    assert s.gateway is not None and s.gateway.poll() is None
    assert all(p.poll() is None for _, p in s.consumers)

    figures = record(
        figures_file,
        "cluster_node_loss",
        nodes=len(cluster.nodes),
        cluster_boot_s=round(cluster.boot_s, 2),
        fits_accepted=len(accepted),
        fits_refused_503_then_resent=statuses.count(503),
        fits_lost=len(lost),
        duplicates=duplicates,
        predicts=len(load.results),
        predicts_503_without_retry_after=load.unavailable_without_retry_after,
        gateway_node=gateway_node,
        train_leader=train_leader,
    )
    assert not lost and duplicates == 0, (lost, figures)
    assert load.unavailable_without_retry_after == 0, figures
    for failover in (gateway_node, train_leader):
        # Only a clean refusal or a timeout, each within its deadline, and predicts answered again soon.
        assert set(failover["predict_statuses"]) <= {200, 503, 504}, figures
        assert failover["max_predict_latency_s"] < PREDICT_TIMEOUT + PUBLISH_TIMEOUT + 2, figures
        assert failover["failover_s"] < FAILOVER_LIMIT, figures
