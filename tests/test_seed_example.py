"""The seed README's example, through the client, end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from client import GenericModelInterface

from .stack import Stack

pytestmark = pytest.mark.integration


def test_seed_example_precision_above_90_percent(stack: Stack) -> None:
    # ===== Generate some dummy data ===== #
    x = pd.DataFrame(np.random.normal(size=(10000, 10)))
    y = (x.sum(axis=1) <= x.mean(axis=1)).astype(np.float32)

    # ===== Set up interface, perform fit and predict ===== #
    mi = GenericModelInterface(stack.url + "/", "logreg")
    mi.fit(x, y.to_frame(), name="logistic-regression-random-data")

    yhat = mi.predict(x).iloc[:, 0]
    yhat.index = yhat.index.astype(int)

    precision = (yhat.sort_index() == y).mean()
    assert precision > 0.9
    assert mi.status()["status"] == "done"
    assert mi.model_key and mi.model_key.startswith("logreg-")
