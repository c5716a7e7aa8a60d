"""`ml-server fit | predict | status | alias | import`: the Python client on the command line.

Data files are CSV or Parquet, told apart by their extension. The gateway's
URL comes from `--url` or `ML_SERVER_URL`, a token from `--token` or
`ML_SERVER_TOKEN`. Errors print the gateway's message and exit with 1 (2 for
a bad command line), never a traceback.

The parsers are built without importing pandas or requests, so the server
commands of `ml-server` start as fast as before; the commands import them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("fit", "predict", "status", "alias", "import")
DEFAULT_URL = "http://127.0.0.1:8080"  # the gateway's default ML_SERVER_HOST and ML_SERVER_PORT
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
BACKENDS = ("joblib", "skops", "onnx")


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions and help as usual; keeps the examples in an epilog line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class CommandError(Exception):
    """A problem with the command's input (a file, a column): printed, exit 1."""


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"C\": 0.5}'")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _gateway_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway")
    group.add_argument(
        "--url",
        default=None,
        help=f"the gateway's base URL (default: $ML_SERVER_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=None,
        help="bearer token, when the gateway has ML_SERVER_TOKENS set (default: $ML_SERVER_TOKEN)",
    )


def _wait_options(parser: argparse.ArgumentParser, wait_default: bool, wait_help: str) -> None:
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=wait_default, help=wait_help)
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=3600.0,
        help="seconds to wait at most before giving up with exit code 1 (default: 3600)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr while waiting (default: only when stderr is a terminal)",
    )


def add_parsers(sub: Any) -> None:
    """Add `fit`, `predict` and `status` to `ml-server`'s subcommands."""
    formatter = _Formatter
    fit = sub.add_parser(
        "fit",
        help="train a model on a CSV or Parquet file",
        description="Train a new model (or a new version, with --retrain) of FAMILY on the rows of DATA: the "
        "--target columns are y, every other column is x. Prints the gateway's answer as JSON: with --wait "
        "(the default) the status once training is done, with --no-wait the queued version.",
        epilog="examples:\n"
        "  ml-server fit logreg churn.csv --target churned --name churn --modkwargs '{\"C\": 0.5}'\n"
        "  ml-server fit kmeans points.parquet --modkwargs '{\"n_clusters\": 3}' --no-wait\n"
        "  ML_SERVER_URL=http://models:8080 ml-server fit linreg prices.parquet --target price --backend onnx",
        formatter_class=formatter,
    )
    fit.add_argument("family", metavar="FAMILY", help="the model family, e.g. logreg, linreg, nn (see GET /families)")
    fit.add_argument("data", metavar="DATA", type=Path, help="training data: a .csv or .parquet file")
    fit.add_argument(
        "--target",
        action="append",
        default=None,
        metavar="COL",
        help="a target (y) column; repeat for several; leave out for unsupervised families such as kmeans",
    )
    fit.add_argument("--name", default=None, help="name the model: its model_key derives from the name instead of the data")
    fit.add_argument(
        "--modkwargs", type=_json_object, default=None, metavar="JSON", help="the estimator's constructor arguments, a JSON object"
    )
    fit.add_argument(
        "--algkwargs", type=_json_object, default=None, metavar="JSON", help="arguments to the estimator's fit, a JSON object"
    )
    fit.add_argument("--backend", choices=BACKENDS, default=None, help="how the model is stored and served (default: the family's)")
    fit.add_argument("--retrain", action="store_true", help="train a new version even if a model with this key exists")
    _wait_options(fit, True, "wait until training is done and exit 1 if it failed (default), or return once it is queued")
    _gateway_options(fit)

    predict = sub.add_parser(
        "predict",
        help="predict with a trained model on a CSV or Parquet file",
        description="Predict with model MODEL_KEY of FAMILY on the rows of DATA (the columns it was trained on). "
        "Writes the predictions as CSV to stdout, or to --output (CSV or Parquet, by its extension).",
        epilog="examples:\n"
        "  ml-server predict logreg logreg-9c1f0e2ab3d4c5e6f7a8b9c0 new-customers.csv\n"
        "  ml-server predict logreg logreg-9c1f0e2ab3d4c5e6f7a8b9c0 new.parquet --method predict_proba --output proba.parquet\n"
        "  ml-server predict linreg linreg-3f2a9c41d7e0b6a85c1f2e90 houses.csv --version 2 --output prices.csv",
        formatter_class=formatter,
    )
    predict.add_argument("family", metavar="FAMILY", help="the model family, e.g. logreg")
    predict.add_argument("model_key", metavar="MODEL_KEY", help="the model's key, as printed by `ml-server fit`")
    predict.add_argument("data", metavar="DATA", type=Path, help="features: a .csv or .parquet file")
    predict.add_argument(
        "--method", default="predict", help="what to call: predict (default), predict_proba, decision_function, ... (see GET /families)"
    )
    which = predict.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="the version to use (default: the serving alias's, else the latest done one)")
    which.add_argument("--alias", default=None, help="the version an alias points at, e.g. champion")
    predict.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write to FILE (.csv or .parquet) instead of CSV on stdout"
    )
    _gateway_options(predict)

    status = sub.add_parser(
        "status",
        help="show a model's latest version and its status",
        description="Print the status of model MODEL_KEY's latest version as JSON (status, version, error, "
        "rows, timings). With --wait, first wait until that version is done; exit 1 if it failed.",
        epilog="examples:\n"
        "  ml-server status logreg logreg-9c1f0e2ab3d4c5e6f7a8b9c0\n"
        "  ml-server status logreg logreg-3f2a9c41d7e0b6a85c1f2e90 --wait --timeout 600",
        formatter_class=formatter,
    )
    status.add_argument("family", metavar="FAMILY", help="the model family, e.g. logreg")
    status.add_argument("model_key", metavar="MODEL_KEY", help="the model's key, as printed by `ml-server fit`")
    _wait_options(status, False, "wait until the latest version is done (default: answer at once)")
    _gateway_options(status)


    alias = sub.add_parser(
        "alias",
        help="point an alias at a version, remove it, or make the model serve it",
        description="Point ALIAS of model MODEL_KEY at VERSION (moving it back to an earlier version is a "
        "rollback), remove it with --remove, and with --serve make predicts that name no version use it. "
        "Prints the model as JSON, with its aliases and the version it serves.",
        epilog="examples:\n"
        "  ml-server alias logreg-9c1f0e2ab3d4c5e6f7a8b9c0 champion 3 --serve\n"
        "  ml-server alias logreg-9c1f0e2ab3d4c5e6f7a8b9c0 champion 2          # roll back\n"
        "  ml-server alias logreg-9c1f0e2ab3d4c5e6f7a8b9c0 challenger --remove",
        formatter_class=formatter,
    )
    alias.add_argument("model_key", metavar="MODEL_KEY", help="the model's key")
    alias.add_argument("alias", metavar="ALIAS", help="a lower-case name: a letter, then letters, digits, _ . -")
    alias.add_argument("version", metavar="VERSION", type=int, nargs="?", default=None, help="a done version of the model")
    alias.add_argument("--remove", action="store_true", help="remove the alias instead")
    alias.add_argument("--serve", action="store_true", help="make the model serve this alias by default")
    _gateway_options(alias)

    imp = sub.add_parser(
        "import",
        help="serve a model trained elsewhere: a skops file or an ONNX graph",
        description="Import FILE, a skops file (skops.io.dump) of a scikit-learn estimator or pipeline, into "
        "the family of its estimator, or an ONNX model into the onnx family, as a new model (or, with "
        "--model-key, as that model's next version). Pickle and joblib files are refused. Prints "
        "{model_key, status, version} as JSON.",
        epilog="examples:\n"
        "  ml-server import logreg churn.skops --name churn\n"
        "  ml-server import onnx fraud.onnx --features '[\"amount\", \"age\"]'\n"
        "  ml-server import logreg churn-v2.skops --model-key logreg-9c1f0e2ab3d4c5e6f7a8b9c0",
        formatter_class=formatter,
    )
    imp.add_argument("family", metavar="FAMILY", help="the family of the model's estimator (logreg, forest, ...), or onnx")
    imp.add_argument("file", metavar="FILE", type=Path, help="a .skops or .onnx file")
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--name", default=None, help="name the model: its model_key derives from the name instead of the file")
    target.add_argument("--model-key", default=None, help="import as the next version of this model")
    imp.add_argument("--features", type=_json_list, default=None, metavar="JSON", help="column names, when the file has none")
    imp.add_argument(
        "--types", type=_json_object, default=None, metavar="JSON", help="kinds of columns that are not numbers, e.g. '{\"city\": \"string\"}'"
    )
    _gateway_options(imp)


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError('must be a JSON list, e.g. \'["a", "b"]\'')
    return value


def run(args: argparse.Namespace) -> int:
    """Run one of COMMANDS; the error's message on stderr and 1 when it fails."""
    import requests

    from contracts.errors import MLServerError

    url = args.url or os.environ.get("ML_SERVER_URL") or DEFAULT_URL
    token = args.token or os.environ.get("ML_SERVER_TOKEN") or None
    try:
        from client.models import ModelClient

        with ModelClient(url, token=token) as client:
            commands = {"fit": _fit, "predict": _predict, "status": _status, "alias": _alias, "import": _import}
            return commands[args.command](client, args)
    except MLServerError as e:
        print(f"ml-server {args.command}: {e.message}", file=sys.stderr)
    except TimeoutError as e:
        print(f"ml-server {args.command}: {e}", file=sys.stderr)
    except CommandError as e:
        print(f"ml-server {args.command}: {e}", file=sys.stderr)
    except requests.RequestException as e:
        print(f"ml-server {args.command}: cannot reach the gateway at {url}: {e}", file=sys.stderr)
    return 1


def _kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CommandError(f"{path}: unknown file type {path.suffix!r}; use a .csv or .parquet file")
    return kind


def _read(path: Path) -> Any:
    import pandas as pd

    kind = _kind(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        return pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except Exception as e:  # whatever the reader raises, the user needs its message
        raise CommandError(f"{path}: cannot read it as {kind.upper()}: {e}") from e


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _fit(client: Any, args: argparse.Namespace) -> int:
    frame = _read(args.data)
    targets = [c for spec in args.target or [] for c in spec.split(",") if c]
    missing = [c for c in targets if c not in frame.columns]
    if missing:
        raise CommandError(f"{args.data}: no column {', '.join(map(repr, missing))}; its columns are {', '.join(map(str, frame.columns))}")
    x = frame.drop(columns=targets)
    y = frame[targets] if targets else None
    state = client.fit(
        args.family,
        x,
        y,
        name=args.name,
        modkwargs=args.modkwargs,
        algkwargs=args.algkwargs,
        retrain=args.retrain,
        backend=args.backend,
        wait=args.wait,
        wait_timeout=args.timeout,
        progress=args.progress,
    )
    _print_json(state)
    return 0


def _predict(client: Any, args: argparse.Namespace) -> int:
    out_kind = _kind(args.output) if args.output is not None else "csv"
    frame = _read(args.data)
    prediction = client.predict(args.family, args.model_key, frame, method=args.method, version=args.version, alias=args.alias)
    if args.output is None:
        prediction.to_csv(sys.stdout, index=False)
    elif out_kind == "csv":
        prediction.to_csv(args.output, index=False)
    else:
        prediction.to_parquet(args.output)
    if args.output is not None:
        print(f"ml-server predict: {len(prediction)} rows written to {args.output}", file=sys.stderr)
    return 0


def _status(client: Any, args: argparse.Namespace) -> int:
    if args.wait:
        state = client.wait(args.family, args.model_key, timeout=args.timeout, progress=args.progress)
    else:
        state = client.status(args.family, args.model_key)
    _print_json(state)
    return 0


def _alias(client: Any, args: argparse.Namespace) -> int:
    if args.remove:
        if args.version is not None or args.serve:
            raise CommandError("--remove takes no VERSION and no --serve")
        client.remove_alias(args.model_key, args.alias)
    elif args.version is not None:
        client.set_alias(args.model_key, args.alias, args.version)
    elif not args.serve:
        raise CommandError("give the VERSION to point the alias at, --serve, or --remove")
    _print_json(client.edit_model(args.model_key, serving=args.alias) if args.serve else client.model(args.model_key))
    return 0


def _import(client: Any, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CommandError(f"{args.file}: no such file")
    blob = args.file.read_bytes()
    if args.model_key is not None:
        answer = client.import_version(args.model_key, blob, features=args.features, types=args.types)
    else:
        answer = client.import_model(args.family, blob, name=args.name, features=args.features, types=args.types)
    _print_json(answer)
    return 0
