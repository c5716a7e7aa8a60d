"""Direct AMQP: a service publishes fits and predicts to the exchange without the gateway."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from client.amqp import predict, publish_fit
from contracts.errors import NotFound

from .stack import BROKER_URL, Stack, wait_for, wait_queue_drained

pytestmark = pytest.mark.integration


def test_fit_and_predict_straight_over_amqp(stack: Stack) -> None:
    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(300, 3)), columns=["u", "v", "w"])
    y = pd.Series(2 * x["u"] - x["w"] + 1, name="out")
    key = f"direct-{stack.namespace}"

    message_id = asyncio.run(publish_fit(BROKER_URL, "linreg", x, y, model_key=key, name="direct", namespace=stack.namespace))
    state = stack.wait_finished("linreg", key)
    assert state["status"] == "done" and state["version"] == 1 and state["name"] == "direct"

    # The same message again (a publisher retrying after a lost confirm) changes nothing.
    asyncio.run(publish_fit(BROKER_URL, "linreg", x, y, model_key=key, namespace=stack.namespace, message_id=message_id))
    # A new message is a new version.
    asyncio.run(publish_fit(BROKER_URL, "linreg", x, y, model_key=key, namespace=stack.namespace))
    assert wait_for(lambda: stack.status("linreg", key)["status"] == "done" and stack.status("linreg", key)["version"] == 2, 30, what="version 2")
    wait_queue_drained(stack, "linreg")
    assert stack.status("linreg", key)["version"] == 2

    got = asyncio.run(predict(BROKER_URL, "linreg", key, x.head(10), namespace=stack.namespace, timeout=10))
    expected = LinearRegression().fit(x, y).predict(x.head(10))
    assert list(got.columns) == ["out"]
    np.testing.assert_allclose(got["out"].to_numpy(), expected, rtol=1e-9, atol=1e-9)

    with pytest.raises(NotFound):
        asyncio.run(predict(BROKER_URL, "linreg", "no-such-model", x.head(1), namespace=stack.namespace, timeout=10))


def test_the_client_reads_its_namespace_from_the_settings(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the gateway and the consumers do: ML_SERVER_NAMESPACE, when no namespace is given.
    monkeypatch.setenv("ML_SERVER_NAMESPACE", stack.namespace)
    x = pd.DataFrame({"u": np.arange(20.0), "v": np.arange(20.0) % 3})
    y = pd.Series(3 * x["u"] - x["v"], name="out")
    key = f"settings-{stack.namespace}"
    asyncio.run(publish_fit(BROKER_URL, "linreg", x, y, model_key=key))
    assert stack.wait_finished("linreg", key)["status"] == "done"
    got = asyncio.run(predict(BROKER_URL, "linreg", key, x.head(2), timeout=10))
    np.testing.assert_allclose(got["out"].to_numpy(), y.head(2).to_numpy(), atol=1e-6)
