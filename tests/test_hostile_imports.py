"""Hostile model files against the real stack (both stores): each attack class is a 422 whose `fields.file`
says why, nothing is stored, and a zip bomb is refused without the processes' memory moving by the cap.
The files are made by the tests (`crafted`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from client import ModelClient
from contracts.settings import Settings

from . import crafted
from .processes import descendants
from .stack import Stack

pytestmark = pytest.mark.integration

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins().dropna().reset_index(drop=True)


def post(stack: Stack, family: str, blob: bytes, name: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/families/{family}/models/import", data=blob, params={"name": name},
        headers={"Content-Type": "application/octet-stream"}, timeout=120,
    )


def refused(stack: Stack, r: requests.Response, name: str, *words: str) -> str:
    """A 422 whose message and `fields.file` say why (each of `words`), and no model named `name`."""
    assert r.status_code == 422, (r.status_code, r.text[:500])
    error = r.json()["error"]
    reason = " ".join(error.get("fields", {}).get("file", []))
    for word in words:
        assert word in error["message"] and word in reason, (word, error)
    listed = requests.get(f"{stack.url}/models", params={"name": name}, timeout=10)
    assert listed.status_code == 200 and listed.json()["total"] == 0, listed.text
    return str(error["message"])


ONNX_CASES = {
    **{f"external-{where}": (lambda where=where: crafted.onnx_external(where), "stored as external data") for where in
       ("initializer", "sparse", "constant", "if", "loop", "function")},
    "loop-huge": (lambda: crafted.onnx_loop(10**12), "ML_SERVER_IMPORT_MAX_LOOP_TRIPS"),
    "loop-from-input": (lambda: crafted.onnx_loop(None), "computed at predict time"),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_hostile_onnx_graphs_are_refused_and_store_nothing(stack: Stack, case: str) -> None:
    make, words = ONNX_CASES[case]
    name = f"hostile-onnx-{case}"
    message = refused(stack, post(stack, "onnx", make(), name), name, words)
    head = Path(crafted.TARGET).read_bytes()[:16].decode()
    assert head not in message and crafted.TARGET not in message  # nothing of the file, not even its name


@pytest.mark.parametrize("how", ["cycle", "out-of-range"])
def test_forests_with_broken_trees_are_refused(stack: Stack, penguins: pd.DataFrame, how: str) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    forest = crafted.broken_tree(RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y), how)
    name = f"hostile-tree-{how}"
    refused(stack, post(stack, "forest", crafted.dumps(forest), name), name, "a tree in the file is broken")


def test_a_skops_node_asking_for_a_name_off_the_list_is_refused(stack: Stack, penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    blob = crafted.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y))

    def edit(schema: dict[str, Any]) -> None:
        node = crafted.nodes(schema, "NdArrayNode")[0]
        node["__module__"], node["__class__"] = "os", "system"

    name = "hostile-skops-name"
    refused(stack, post(stack, "logreg", crafted.rewrite_skops(blob, edit), name), name, "os.system (NdArrayNode)")


class PeakMemory:
    """While open: every 20 ms, the private memory (Private_Clean + Private_Dirty of smaps_rollup) of the
    gateway, the consumer and every process below them, summed; and the machine's MemAvailable."""

    def __init__(self, stack: Stack) -> None:
        self.roots = [p.pid for p in (stack.gateway, *(c for _, c in stack.consumers)) if p is not None]
        self.baseline = self.peak = self.sample()
        self.available = self.lowest = self.mem_available()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.sample())
            self.lowest = min(self.lowest, self.mem_available())

    def sample(self) -> int:
        pids = set(self.roots)
        for root in self.roots:
            pids |= set(descendants(root))
        return sum(_private(pid) for pid in pids)

    @staticmethod
    def mem_available() -> int:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return 0


def _private(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith(("Private_Clean:", "Private_Dirty:")))


@pytest.mark.parametrize("bomb", ["honest-header", "past-the-ratio", "lying-header"])
def test_a_zip_bomb_is_refused_without_inflating_it(stack: Stack, bomb: str) -> None:
    """1 GiB + 1 MiB of spaces in a skops file of 1 MiB; its header tells the truth, or claims 400 MiB (under
    the member cap, over the ratio), or 100 bytes (passes the declared checks; the reader stops)."""
    cap = Settings.from_env({}).import_max_member_bytes
    declared = {"honest-header": None, "past-the-ratio": 400 * 2**20, "lying-header": 100}[bomb]
    blob = crafted.zip_bomb(2**30 + 2**20, declared=declared)
    assert len(blob) < 2 * 2**20
    name = f"hostile-bomb-{bomb}"
    with PeakMemory(stack) as memory:
        r = post(stack, "logreg", blob, name)
    words = {"honest-header": "ML_SERVER_IMPORT_MAX_MEMBER_BYTES", "past-the-ratio": "ML_SERVER_IMPORT_MAX_RATIO", "lying-header": "can't be read"}
    refused(stack, r, name, words[bomb])
    grew, dropped = memory.peak - memory.baseline, memory.available - memory.lowest
    print(f"{bomb}: processes' private memory +{grew / 2**20:.0f} MiB at peak, MemAvailable -{dropped / 2**20:.0f} MiB (cap {cap / 2**20:.0f} MiB)")
    assert grew < cap, (grew, cap)


def test_a_pipeline_with_text_columns_imports_without_types(stack: Stack, penguins: pd.DataFrame) -> None:
    """The kinds come from the pipeline's encoder: no `types`, no `ufunc 'isnan'` error."""
    x, y = penguins[["island", "sex", *NUMBERS]], penguins["species"]
    encode = ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"])], remainder="passthrough")
    model = make_pipeline(encode, RandomForestClassifier(n_estimators=10, random_state=0)).fit(x, y)
    client = ModelClient(stack.url)
    answer = client.import_model("forest", crafted.dumps(model), name="text-columns-untyped")
    probe = x.iloc[::29]
    assert client.predict("forest", answer["model_key"], probe)["predict"].tolist() == model.predict(probe).tolist()
    schema = client.versions(answer["model_key"])["versions"][0]["metadata"]["schema"]
    assert [c["kind"] for c in schema] == ["string", "string", "number", "number", "number", "number"]
    assert np.all(client.predict("forest", answer["model_key"], probe, method="predict_proba").to_numpy() == model.predict_proba(probe))
