"""`ml-server fit | predict | status | alias | import`: the real console script against the real stack."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from commands import client as client_cli

from .stack import Stack

pytestmark = pytest.mark.integration

ML_SERVER = str(Path(sys.executable).parent / "ml-server")


def ml_server(stack: Stack | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_SERVER_")}
    if stack is not None:
        env["ML_SERVER_URL"] = stack.url
    return subprocess.run([ML_SERVER, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def failed(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def classification(n: int = 200, seed: int = 21) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["f0", "f1", "f2"])
    frame["label"] = (frame["f0"] - frame["f1"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return frame


def regression(n: int = 200, seed: int = 22) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["price"] = frame @ np.array([3.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=n)
    return frame


def test_fit_csv_predict_to_stdout_and_status(stack: Stack, tmp_path: Path) -> None:
    frame = classification()
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    fitted = json.loads(ok(ml_server(stack, "fit", "logreg", str(path), "--target", "label", "--name", "cli-csv",
                                     "--modkwargs", '{"C": 0.5}', "--wait", "--no-progress")).stdout)
    assert fitted["status"] == "done" and fitted["version"] == 1 and fitted["rows"] == len(frame)
    key = fitted["model_key"]

    x = frame[["f0", "f1", "f2"]]
    reference = LogisticRegression(C=0.5).fit(x, frame[["label"]].to_numpy().ravel())
    features = tmp_path / "features.csv"
    x.to_csv(features, index=False)
    out = ok(ml_server(stack, "predict", "logreg", key, str(features))).stdout
    labels = pd.read_csv(io.StringIO(out))
    assert list(labels.columns) == ["label"] and len(labels) == len(x)
    np.testing.assert_array_equal(labels["label"].to_numpy(), reference.predict(x))

    proba_path = tmp_path / "proba.parquet"
    ok(ml_server(stack, "predict", "logreg", key, str(features), "--method", "predict_proba", "--version", "1",
                 "--output", str(proba_path)))
    proba = pd.read_parquet(proba_path)
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(x), rtol=1e-9)

    status = json.loads(ok(ml_server(stack, "status", "logreg", key)).stdout)
    assert status["status"] == "done" and status["model_key"] == key and status["family"] == "logreg"


def test_fit_parquet_no_wait_then_status_wait_and_predict_to_csv(stack: Stack, tmp_path: Path) -> None:
    frame = regression()
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    queued = json.loads(ok(ml_server(stack, "fit", "linreg", str(path), "--target", "price", "--name", "cli-parquet",
                                     "--no-wait")).stdout)
    assert queued["status"] in ("queued", "running", "done") and queued["version"] == 1
    key = queued["model_key"]
    done = json.loads(ok(ml_server(stack, "status", "linreg", key, "--wait", "--timeout", "60")).stdout)
    assert done["status"] == "done" and done["rows"] == len(frame)
    # --wait on fit, on the same file: the model exists, so it answers at once with it.
    again = json.loads(ok(ml_server(stack, "fit", "linreg", str(path), "--target", "price", "--name", "cli-parquet")).stdout)
    assert again["model_key"] == key and again["status"] == "done"

    x = frame[["a", "b", "c"]]
    features = tmp_path / "features.parquet"
    x.to_parquet(features)
    out_path = tmp_path / "prices.csv"
    result = ok(ml_server(stack, "predict", "linreg", key, str(features), "--output", str(out_path)))
    assert result.stdout == "" and str(out_path) in result.stderr
    got = pd.read_csv(out_path)
    expected = LinearRegression().fit(x, frame[["price"]]).predict(x)
    np.testing.assert_allclose(got["price"].to_numpy(), expected.ravel(), rtol=1e-9, atol=1e-12)


def test_errors_are_messages_and_non_zero_exits(stack: Stack, tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    assert "missing.csv: no such file" in failed(ml_server(stack, "fit", "logreg", str(missing), "--target", "y"))
    text = tmp_path / "data.txt"
    text.write_text("a,b\n1,2\n")
    assert "use a .csv or .parquet file" in failed(ml_server(stack, "fit", "logreg", str(text), "--target", "b"))

    path = tmp_path / "train.csv"
    classification(50).to_csv(path, index=False)
    err = failed(ml_server(stack, "fit", "no-such-family", str(path), "--target", "label"))
    assert "unknown model family 'no-such-family'" in err and "logreg" in err  # the gateway's message, naming what it serves
    err = failed(ml_server(stack, "fit", "logreg", str(path), "--target", "nope"))
    assert "no column 'nope'" in err and "label" in err
    err = failed(ml_server(stack, "fit", "logreg", str(path), "--target", "label", "--modkwargs", "{not json"))
    assert "--modkwargs" in err and "not valid JSON" in err
    err = failed(ml_server(stack, "fit", "logreg", str(path), "--target", "label", "--modkwargs", '{"nope": 1}'))
    assert "no parameter 'nope'" in err
    err = failed(ml_server(stack, "fit", "logreg", str(path), "--target", "label", "--name", "cli-fails",
                           "--modkwargs", '{"C": -1}'))
    assert "failed" in err and "C" in err  # the estimator's message, from the failed version
    assert "no model with model_key 'nope'" in failed(ml_server(stack, "status", "logreg", "nope"))
    assert "cannot reach the gateway" in failed(ml_server(None, "status", "logreg", "x", "--url", "http://127.0.0.1:9"))


OPTIONS = {
    "fit": ["FAMILY", "DATA", "--target", "--name", "--modkwargs", "--algkwargs", "--backend", "--retrain", "--wait",
            "--no-wait", "--timeout", "--progress", "--url", "--token"],
    "predict": ["FAMILY", "MODEL_KEY", "DATA", "--method", "--version", "--alias", "--output", "--url", "--token"],
    "status": ["FAMILY", "MODEL_KEY", "--wait", "--timeout", "--progress", "--url", "--token"],
    "alias": ["MODEL_KEY", "ALIAS", "VERSION", "--remove", "--serve", "--url", "--token"],
    "import": ["FAMILY", "FILE", "--name", "--model-key", "--features", "--types", "--url", "--token"],
}


def test_import_then_alias_promote_and_roll_back(stack: Stack, tmp_path: Path) -> None:
    import skops.io

    frame = classification(seed=31)
    x, y = frame[["f0", "f1", "f2"]], frame["label"]
    first = LogisticRegression(C=0.01).fit(x, y)
    second = LogisticRegression(C=100.0).fit(x.iloc[:60], y.iloc[:60])
    files = []
    for i, model in enumerate((first, second)):
        files.append(tmp_path / f"model-{i}.skops")
        skops.io.dump(model, files[-1])
    imported = json.loads(ok(ml_server(stack, "import", "logreg", str(files[0]), "--name", "cli-import")).stdout)
    key = imported["model_key"]
    assert imported == {"model_key": key, "status": "done", "version": 1}
    again = json.loads(ok(ml_server(stack, "import", "logreg", str(files[1]), "--model-key", key)).stdout)
    assert again["version"] == 2
    features = tmp_path / "features.csv"
    x.to_csv(features, index=False)

    def predicted(*pick: str) -> list[float]:
        out = ok(ml_server(stack, "predict", "logreg", key, str(features), "--method", "predict_proba", *pick)).stdout
        return pd.read_csv(io.StringIO(out)).iloc[:, 1].round(9).tolist()

    assert predicted() == second.predict_proba(x)[:, 1].round(9).tolist()  # no serving alias: the latest version
    model = json.loads(ok(ml_server(stack, "alias", key, "champion", "1", "--serve")).stdout)
    assert model["aliases"] == {"champion": 1} and model["serving_version"] == 1
    assert predicted() == first.predict_proba(x)[:, 1].round(9).tolist()  # the serving alias, not the latest
    ok(ml_server(stack, "alias", key, "champion", "2"))
    assert predicted("--alias", "champion") == second.predict_proba(x)[:, 1].round(9).tolist()
    rolled_back = json.loads(ok(ml_server(stack, "alias", key, "champion", "1")).stdout)
    assert rolled_back["serving_version"] == 1
    assert predicted() == first.predict_proba(x)[:, 1].round(9).tolist()  # the rollback is what predicts answer
    assert "serves" in failed(ml_server(stack, "alias", key, "champion", "--remove"))
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04" + b"\x00" * 32)
    assert "pickle and joblib files are refused" in failed(ml_server(stack, "import", "logreg", str(pickled)))
    assert "give the VERSION" in failed(ml_server(stack, "alias", key, "challenger"))


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_is_complete(command: str) -> None:
    result = ok(ml_server(None, command, "--help", timeout=60))
    text = result.stdout
    for option in OPTIONS[command]:
        assert option in text, f"{command} --help does not mention {option}"
    assert f"examples:\n  ml-server {command} " in text
    # Every argument has a help text, and the list above names every one of them.
    parser = argparse.ArgumentParser()
    client_cli.add_parsers(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        assert action.help, f"{command}: {action.option_strings or action.metavar} has no help"
        names = action.option_strings or [action.metavar]
        assert any(n in OPTIONS[command] for n in names) or action.dest == "help", f"{command}: {names} not checked"
        assert "".join(action.help.split()) in "".join(text.split()), f"{command}: help of {names} not shown"
