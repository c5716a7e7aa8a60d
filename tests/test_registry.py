"""The registry: aliases moved under load, a model pinned to an alias through a retrain, rollback, tags and filters."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from client import AsyncModelClient, ModelClient, amqp
from contracts.errors import Conflict, InvalidInput, NotFound, NotTrained
from contracts.frames import PARQUET, ParquetCodec

from .stack import BROKER_URL, Stack, wait_for

pytestmark = pytest.mark.integration

COLUMNS = ["a", "b", "c"]


def data(seed: int, n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    """Two versions trained on different data answer differently on the same probe."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=COLUMNS)
    w = rng.normal(size=3)
    return x, pd.Series((x.to_numpy() @ w > 0).astype(int), name="label")


PROBE = pd.DataFrame(np.random.default_rng(99).normal(size=(40, 3)), columns=COLUMNS)


def reference(seed: int) -> list[int]:
    x, y = data(seed)
    return LogisticRegression().fit(x, y).predict(PROBE).tolist()


@pytest.fixture
def two_versions(stack: Stack, request: pytest.FixtureRequest) -> tuple[ModelClient, str]:
    """A logreg model with version 1 (data 1) and version 2 (data 2), answering differently."""
    client = ModelClient(stack.url)
    name = f"registry-{request.node.name}"[:100]
    key = client.fit("logreg", *data(1), name=name)["model_key"]
    assert client.fit("logreg", *data(2), name=name, retrain=True)["version"] == 2
    assert reference(1) != reference(2)
    return client, key


def answers(client: ModelClient, key: str, **pick: object) -> list[int]:
    return client.predict("logreg", key, PROBE, **pick).iloc[:, 0].tolist()  # type: ignore[arg-type]


def test_alias_set_moved_and_removed_on_every_path(stack: Stack, two_versions: tuple[ModelClient, str]) -> None:
    client, key = two_versions
    v1, v2 = reference(1), reference(2)
    assert client.set_alias(key, "champion", 1) == {"model_key": key, "alias": "champion", "version": 1}
    assert answers(client, key, alias="champion") == v1
    assert answers(client, key) == v2  # no serving alias: the latest done version

    client.set_alias(key, "champion", 2)
    assert answers(client, key, alias="champion") == v2
    # The seed's JSON body, the query string with a Parquet body, the JSON client, direct AMQP.
    seed = {"model_key": key, "x": PROBE.to_json(orient="columns"), "orient": "columns", "alias": "champion"}
    r = requests.post(stack.family_url("logreg"), json=seed, timeout=30)
    assert r.status_code == 200, r.text
    assert pd.read_json(io.StringIO(r.json()["data"]), orient="columns").iloc[:, 0].tolist() == v2
    r = requests.post(
        stack.model_url(key, "predict"), params={"alias": "champion"}, data=ParquetCodec.encode(PROBE),
        headers={"Content-Type": PARQUET, "Accept": PARQUET}, timeout=30,
    )
    assert r.status_code == 200 and ParquetCodec.decode(r.content).iloc[:, 0].tolist() == v2, r.text
    assert ModelClient(stack.url, format="json").predict("logreg", key, PROBE, alias="champion").iloc[:, 0].tolist() == v2
    direct = asyncio.run(amqp.predict(BROKER_URL, "logreg", key, PROBE, alias="champion", namespace=stack.namespace))
    assert direct.iloc[:, 0].tolist() == v2

    model = client.model(key)
    assert model["aliases"] == {"champion": 2}
    versions = {v["version"]: v for v in client.versions(key)["versions"]}
    assert versions[2]["aliases"] == ["champion"] and versions[1]["aliases"] == []

    client.remove_alias(key, "champion")
    with pytest.raises(NotFound, match="champion"):
        answers(client, key, alias="champion")
    with pytest.raises(NotFound):
        client.remove_alias(key, "champion")
    with pytest.raises(NotFound):
        client.set_alias(key, "champion", 7)
    with pytest.raises(InvalidInput, match="alias"):
        client.set_alias(key, "Not An Alias", 1)
    with pytest.raises(InvalidInput, match="version or alias"):
        answers(client, key, alias="champion", version=1)


def test_alias_moved_under_load_answers_old_or_new_never_an_error(stack: Stack, two_versions: tuple[ModelClient, str]) -> None:
    client, key = two_versions
    v1, v2 = reference(1), reference(2)
    client.set_alias(key, "live", 1)
    stop = threading.Event()
    seen: list[list[int]] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        mine = ModelClient(stack.url)
        while not stop.is_set():
            try:
                seen.append(answers(mine, key, alias="live"))
            except BaseException as e:  # noqa: BLE001 - every error is a failure of the test
                errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in (2, 1, 2, 1, 2):
            wait_for(lambda: len(seen) > 5, 30, what="predicts running")
            client.set_alias(key, "live", target)
            moved = time.monotonic()
            expected = v2 if target == 2 else v1
            # Consumers follow the move within a second (the status event path).
            wait_for(lambda: answers(client, key, alias="live") == expected, 1.0, what=f"live -> {target}")
            assert time.monotonic() - moved < 1.0
            seen.clear()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert all(a in (v1, v2) for a in seen)


def test_pinned_model_serves_its_alias_through_a_retrain_and_rolls_back(stack: Stack, two_versions: tuple[ModelClient, str]) -> None:
    client, key = two_versions
    v1, v2, v3 = reference(1), reference(2), reference(3)
    client.set_alias(key, "champion", 1)
    model = client.edit_model(key, serving="champion")
    assert model["serving"] == "champion" and model["serving_version"] == 1
    assert answers(client, key) == v1

    # A retrain makes version 3; predicts keep answering from the champion.
    name = model["name"]
    done = client.fit("logreg", *data(3), name=name, retrain=True)
    assert done["version"] == 3 and done["status"] == "done"
    assert answers(client, key) == v1
    assert client.status("logreg", key)["version"] == 3

    # Promote, then roll back: instant, no retrain.
    client.set_alias(key, "champion", 3)
    wait_for(lambda: answers(client, key) == v3, 5, what="promoted")
    client.set_alias(key, "champion", 1)
    wait_for(lambda: answers(client, key) == v1, 5, what="rolled back")
    with pytest.raises(Conflict, match="serving"):
        client.remove_alias(key, "champion")
    with pytest.raises(InvalidInput, match="no alias"):
        client.edit_model(key, serving="challenger")
    assert client.edit_model(key, serving=None)["serving_version"] == 3
    wait_for(lambda: answers(client, key) == v3, 5, what="back to the latest done version")
    assert v2 != v3

    history = client.history(key)
    actions = [h["action"] for h in history]
    assert actions[:3] == ["serving", "alias", "alias"]
    assert {"fit", "serving"} <= set(actions)


def test_an_alias_points_at_done_versions_only(stack: Stack) -> None:
    client = ModelClient(stack.url)
    x, y = data(5)
    key = client.fit("logreg", x, y, name="registry-failed-version")["model_key"]
    bad = client.fit("logreg", x, y, name="registry-failed-version", retrain=True, modkwargs={"C": -1.0}, wait=False)
    wait_for(lambda: client.status("logreg", key)["status"] == "failed", 60, what="version 2 failed")
    with pytest.raises(NotTrained, match="done version"):
        client.set_alias(key, "champion", bad["version"])


def test_tags_descriptions_and_filters(stack: Stack) -> None:
    client = ModelClient(stack.url)
    x, y = data(7)
    fraud = client.fit("logreg", x, y, name="registry-fraud")["model_key"]
    churn = client.fit("logreg", x, y, name="registry-churn")["model_key"]
    model = client.edit_model(fraud, description="Card fraud, EU", tags=["fraud", "eu"])
    assert model["description"] == "Card fraud, EU" and model["tags"] == ["eu", "fraud"]
    client.edit_model(churn, tags=["churn", "eu"])
    version = client.edit_version(fraud, 1, description="baseline", tags=["baseline"])
    assert version["description"] == "baseline" and version["tags"] == ["baseline"]

    def keys(**filters: object) -> set[str]:
        return {m["model_key"] for m in client.models(**filters, limit=500)["models"]}

    assert fraud in keys(tag="fraud") and churn not in keys(tag="fraud")
    assert {fraud, churn} <= keys(tag="eu")
    assert keys(tag="eu", name="registry-churn") == {churn}
    assert keys(tag="eu", family="logreg", status="done") >= {fraud, churn}
    assert not keys(tag="eu", family="forest")
    listed = next(m for m in client.models(name="registry-fraud")["models"])
    assert listed["description"] == "Card fraud, EU" and listed["latest"]["tags"] == ["baseline"]
    # Only what is given changes.
    assert client.edit_model(fraud, description=None)["tags"] == ["eu", "fraud"]
    with pytest.raises(InvalidInput, match="tags"):
        client.edit_model(fraud, tags=["Not A Tag"])
    with pytest.raises(InvalidInput):
        client.edit_model(fraud, colour="red")


def test_async_client_covers_the_registry(stack: Stack, two_versions: tuple[ModelClient, str]) -> None:
    _, key = two_versions

    async def go() -> tuple[list[int], list[dict]]:
        async with AsyncModelClient(stack.url) as client:
            await client.set_alias(key, "candidate", 1)
            got = (await client.predict("logreg", key, PROBE, alias="candidate")).iloc[:, 0].tolist()
            await client.edit_model(key, tags=["async"])
            return got, await client.history(key)

    got, history = asyncio.run(go())
    assert got == reference(1)
    assert history[0]["action"] == "tag"
