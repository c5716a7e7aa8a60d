"""A RabbitMQ cluster of private nodes on this machine, for the cluster fault test.

Each node is a `PrivateBroker` (its own node name, AMQP and distribution
ports, data and log folders, loopback only, no plugins). They share one
Erlang cookie: Debian's `rabbitmq-server` and `rabbitmqctl` run as the
`rabbitmq` user, whose cookie they all read. All boot at once, then the
others `join_cluster` the first (RabbitMQ 3.10 starts Erlang distribution
from its own boot, so a node can't be joined before its first boot). A
stopped node started again on its data rejoins the cluster by itself.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from contracts.topology import Topology

from ..stack import Stack, queue_states, wait_for
from .broker import PrivateBroker


class BrokerCluster:
    def __init__(self, size: int = 3) -> None:
        self.nodes = [PrivateBroker() for _ in range(size)]
        self.boot_s = 0.0  # seconds `start` took

    def urls(self, first: int = 0) -> str:
        """ML_SERVER_BROKER_URL for the cluster: every node's URL, starting with node `first`."""
        order = self.nodes[first:] + self.nodes[:first]
        return ",".join(n.url for n in order)

    def start(self) -> float:
        """Boot every node at once and join the others to the first; seconds it took."""
        began = time.monotonic()
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_accepting()
        first = self.nodes[0]
        errors: list[str] = []

        def join(node: PrivateBroker) -> None:
            for args in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
                done = node.ctl(*args, timeout=120)
                if done.returncode != 0:
                    errors.append(f"{node.node} {' '.join(args)}: {done.stderr}{done.stdout}")
                    return

        joins = [threading.Thread(target=join, args=(n,)) for n in self.nodes[1:]]
        for t in joins:
            t.start()
        for t in joins:
            t.join()
        assert not errors, errors
        self.wait_running(len(self.nodes))
        self.boot_s = time.monotonic() - began
        return self.boot_s

    def live(self) -> PrivateBroker:
        """A node that is up (to ask the cluster something)."""
        return next(n for n in self.nodes if n.started)

    def ctl_json(self, *args: str) -> Any:
        done = self.live().ctl(*args, "--formatter", "json")
        assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def running_nodes(self) -> list[str]:
        return list(self.ctl_json("cluster_status").get("running_nodes", []))

    def wait_running(self, count: int, timeout: float = 120) -> None:
        wait_for(lambda: len(self.running_nodes()) == count, timeout, interval=0.5, what=f"{count} running nodes in the cluster")

    def queues(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The cluster's view of a namespace's queues: type, leader, members, online members, messages, consumers."""
        rows = self.ctl_json("list_queues", "name", "type", "leader", "members", "online", "messages", "consumers")
        return {row["name"]: row for row in rows if str(row["name"]).startswith(f"{namespace}.")}

    def connections(self) -> list[tuple[str, str]]:
        """(connection name, node it is on) of every named client connection of the cluster."""
        rows = self.ctl_json("list_connections", "client_properties", "port")
        by_port = {n.port: n.node for n in self.nodes}
        found: list[tuple[str, str]] = []
        for row in rows:
            name = _connection_name(row.get("client_properties"))
            if name:
                found.append((name, by_port.get(int(row["port"]), f"port {row['port']}")))
        return found

    def node(self, name: str) -> PrivateBroker:
        return next(n for n in self.nodes if n.node == name)

    def delete(self) -> None:
        """Stop every node at once (SIGTERM, falling back to PrivateBroker.delete's ways) and remove their folders."""

        def end(node: PrivateBroker) -> None:
            if node.started:
                try:
                    node.terminate()
                except (OSError, ValueError, AssertionError):
                    pass  # not answering to SIGTERM, or no pid file yet: delete() below has other ways
            node.delete()

        ending = [threading.Thread(target=end, args=(n,)) for n in self.nodes]
        for t in ending:
            t.start()
        for t in ending:
            t.join()

    def log_tails(self) -> str:
        return "\n".join(n.log_tail(2000) for n in self.nodes)


class ClusterStack(Stack):
    """A Stack whose processes get the cluster's broker list (consumer counts asked of a node that is up)."""

    def __init__(self, database_url: str, workdir: Path, cluster: BrokerCluster, **env: str) -> None:
        super().__init__(database_url, workdir, broker_url=cluster.urls(), **env)
        self.cluster = cluster

    def queues(self, family: str) -> list[str]:
        t = Topology(self.namespace)
        return [t.train_queue(family), t.predict_queue(family)]

    def wait_consumers(self, family: str, count: int = 1) -> None:
        def there() -> bool:
            states = queue_states(self.queues(family), self.cluster.live().url)
            return all(q in states and states[q].consumers >= count for q in self.queues(family))

        wait_for(there, 90, interval=0.2, what=f"{count} consumer(s) of {family} on the cluster")

    def stop(self) -> None:
        # The cluster is deleted with everything on it: no purge of the shared broker.
        self.stop_processes()


def _connection_name(properties: Any) -> str | None:
    """The `connection_name` of a connection's client properties, as rabbitmqctl's JSON renders them."""
    if isinstance(properties, dict):
        value = properties.get("connection_name")
        return str(value) if value is not None else None
    if isinstance(properties, list):  # [[key, type, value], ...]
        for item in properties:
            if isinstance(item, list) and len(item) == 3 and item[0] == "connection_name":
                return str(item[2])
    return None
