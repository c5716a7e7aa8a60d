"""The checks an imported model file goes through, on files crafted here, without a stack (pure logic,
run in this process; `test_hostile_imports` sends the same files through the real gateway and consumer)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from contracts import archives
from contracts.columns import Column, InputSchema, Kind
from consumers import imports, input_kinds, onnx_checks, onnx_models, tree_checks

from . import crafted

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
WHERE = ["initializer", "sparse", "constant", "if", "loop", "function"]


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins().dropna().reset_index(drop=True)


def refused(family: str, blob: bytes, fmt: str = "skops", **kwargs: object) -> str:
    with pytest.raises(imports.ImportRefused) as caught:
        imports.import_model(family, blob, fmt, None, None, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# ---- ONNX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_external_data_anywhere_in_a_graph_is_refused_before_it_is_read(where: str) -> None:
    blob = crafted.onnx_external(where)
    message = refused("onnx", blob, "onnx")
    assert "stored as external data" in message, message
    assert crafted.TARGET not in message


def test_a_session_can_not_load_external_data_even_when_the_check_is_bypassed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / crafted.TARGET).write_bytes(b"\x00\x00\x80\x3f secret")  # 1.0 as a float, then the rest
    blob = crafted.onnx_external("initializer")
    # onnxruntime's default: the location resolves against the working directory, and the bytes are read.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # (folding needs a model path)
    default = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    (out,) = default.run(None, {"X": np.zeros((1, 1), np.float32)})
    assert out.tolist() == [[1.0]]
    with pytest.raises(Exception, match="External data path validation failed"):
        onnx_models.session(blob)


def test_loop_trip_counts_must_be_constants_within_the_cap() -> None:
    crafted.check_model(crafted.onnx_loop(10**12))
    assert "ML_SERVER_IMPORT_MAX_LOOP_TRIPS" in refused("onnx", crafted.onnx_loop(10**12), "onnx")
    assert "computed at predict time" in refused("onnx", crafted.onnx_loop(None), "onnx")
    small = crafted.onnx_loop(3)
    onnx_checks.check(onnx.load_model_from_string(small), 100_000, 10**7)
    done = imports.import_model("onnx", small, "onnx", None, None)
    assert done.meta["features"] == ["X"]  # a one-column input is a column named by the input
    limits = imports.ImportLimits(max_loop_trips=2)
    assert "ML_SERVER_IMPORT_MAX_LOOP_TRIPS=2" in refused("onnx", small, "onnx", limits=limits)


# ---- trees -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["cycle", "out-of-range", "feature"])
def test_broken_trees_are_refused_before_the_model_predicts(penguins: pd.DataFrame, how: str) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    forest = crafted.broken_tree(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), how)
    message = refused("forest", crafted.dumps(forest))
    assert "a tree in the file is broken" in message and "estimators_[0].tree_" in message, message
    # A decision tree inside a pipeline: the pipeline is not a forest family's model, the tree check still runs first.
    tree = crafted.broken_tree(make_pipeline(StandardScaler(), DecisionTreeClassifier(random_state=0)).fit(x, y), how)
    with pytest.raises(tree_checks.TreeRefused):
        tree_checks.check(tree)


def test_a_gradient_boosting_predictor_pointing_back_is_refused(penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, y)
    assert imports.import_model("gbm", crafted.dumps(model), "skops", None, None).meta["features"] == NUMBERS
    model._predictors[0][0].nodes["left"][0] = 0
    assert "cycle" in refused("gbm", crafted.dumps(model))
    model._predictors[0][0].nodes["left"][0] = 1
    model._predictors[0][0].nodes["feature_idx"][0] = 40
    assert "feature 40" in refused("gbm", crafted.dumps(model))


# ---- skops names -----------------------------------------------------------------------------------


def test_skops_names_are_matched_exactly_for_every_loader(penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    blob = crafted.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y))

    def rename(loader: str, module: str, cls: str) -> bytes:
        def edit(schema: dict) -> None:
            node = crafted.nodes(schema, loader)[0]
            node["__module__"], node["__class__"] = module, cls

        return crafted.rewrite_skops(blob, edit)

    for loader, module, cls in [
        ("NdArrayNode", "os", "system"),  # NdArrayNode calls its type on the array
        ("ObjectNode", "sklearn._loss.loss", "PinballLoss"),  # under sklearn._loss., not on the list
        ("ListNode", "collections", "UserList"),
        ("DictNode", "collections", "Counter"),
    ]:
        message = refused("logreg", rename(loader, module, cls))
        assert f"{module}.{cls} ({loader})" in message, message
    # The SGD family's own losses are on the list by name.
    sgd = SGDClassifier(loss="hinge", max_iter=50).fit((x - x.mean()) / x.std(), y)
    assert imports.import_model("sgd", crafted.dumps(sgd), "skops", None, None).backend == "skops"


def test_a_random_generator_naming_a_function_as_its_bit_generator_is_refused(penguins: pd.DataFrame) -> None:
    x, y = penguins[NUMBERS], penguins["species"]
    model = HistGradientBoostingClassifier(max_iter=3, early_stopping=True).fit(x, y)  # keeps a numpy Generator
    blob = crafted.dumps(model)
    assert imports.import_model("gbm", blob, "skops", None, None).backend == "skops"

    def edit(schema: dict) -> None:
        node = crafted.nodes(schema, "RandomGeneratorNode")[0]
        node["content"]["bit_generator"]["content"]["bit_generator"]["content"] = '"seed"'

    assert "numpy.random.seed" in refused("gbm", crafted.rewrite_skops(blob, edit))


# ---- archives --------------------------------------------------------------------------------------


def test_archives_are_checked_from_declared_sizes_and_read_with_a_cap() -> None:
    limits = archives.ArchiveLimits()
    honest = crafted.zip_bomb(2**30 + 2**20)
    assert len(honest) < 2 * 2**20
    with pytest.raises(archives.ArchiveRefused, match="ML_SERVER_IMPORT_MAX_MEMBER_BYTES"):
        archives.check(honest, limits)
    with pytest.raises(archives.ArchiveRefused, match="ML_SERVER_IMPORT_MAX_RATIO"):
        archives.check(crafted.zip_bomb(64 * 2**20), limits)
    liar = crafted.zip_bomb(2**30 + 2**20, declared=100)
    with archives.check(liar, limits) as archive, pytest.raises(archives.ArchiveRefused, match="can't be read"):
        archives.read(archive, "schema.json", limits)
    liar = crafted.zip_bomb(2**30 + 2**20, declared=8 * 2**20)
    small = archives.ArchiveLimits(max_member_bytes=2**20)
    with archives.check(liar, limits) as archive, pytest.raises(archives.ArchiveRefused, match=f"past ML_SERVER_IMPORT_MAX_MEMBER_BYTES={2**20}"):
        archives.read(archive, "schema.json", small)  # the reader's cap holds below what the header says
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(30):
            z.writestr(f"{i}.npy", b"")
    with pytest.raises(archives.ArchiveRefused, match="ML_SERVER_IMPORT_MAX_MEMBERS=20"):
        archives.check(many.getvalue(), archives.ArchiveLimits(max_members=20))
    assert "ML_SERVER_IMPORT_MAX_MEMBER_BYTES" in refused("logreg", honest)


# ---- honest mistakes and messages --------------------------------------------------------------------


def test_text_columns_are_read_from_the_pipeline_or_named(penguins: pd.DataFrame) -> None:
    x, y = penguins[["island", "sex", *NUMBERS]], penguins["species"]
    encode = ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"])], remainder="passthrough")
    model = make_pipeline(encode, RandomForestClassifier(n_estimators=5, random_state=0)).fit(x, y)
    done = imports.import_model("forest", crafted.dumps(model), "skops", None, None)
    assert [c["kind"] for c in done.meta["schema"]] == ["string", "string", "number", "number", "number", "number"]
    numeric = InputSchema(tuple(Column(n, Kind.NUMBER) for n in x.columns))
    assert input_kinds.needing_text(model, numeric) == ["island", "sex"]


def test_messages_never_name_a_path_on_the_server() -> None:
    text = imports._scrub(f"FileNotFoundError: [Errno 2] No such file or directory: '{os.getcwd()}/data/secret' and /etc/passwd")
    assert "/data/secret" not in text and "/etc/passwd" not in text and "<path>" in text
    assert imports._scrub("ML_SERVER_IMPORT_MAX_RATIO=200, a/b") == "ML_SERVER_IMPORT_MAX_RATIO=200, a/b"


def test_nested_loops_multiply_and_sizes_come_from_constants() -> None:
    assert "300 times each" not in refused("onnx", crafted.onnx_nested_loops(1000, 1000), "onnx")
    assert "1000000 times" in refused("onnx", crafted.onnx_nested_loops(1000, 1000), "onnx")
    assert imports.import_model("onnx", crafted.onnx_nested_loops(30, 30), "onnx", None, None).backend == "onnx"
    assert "ML_SERVER_IMPORT_MAX_ELEMENTS" in refused("onnx", crafted.onnx_expand([1, 10**9]), "onnx")
    assert "computed at predict time" in refused("onnx", crafted.onnx_expand(None), "onnx")
    assert imports.import_model("onnx", crafted.onnx_expand([1, 5]), "onnx", None, None).backend == "onnx"


def test_a_tree_ensemble_graph_whose_branch_points_back_is_refused(penguins: pd.DataFrame) -> None:
    from skl2onnx import to_onnx

    x = penguins[NUMBERS].to_numpy(dtype=np.float32)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, penguins["species"])
    graph = to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}).SerializeToString()
    assert imports.import_model("onnx", graph, "onnx", NUMBERS, None).backend == "onnx"
    assert "not a later node of its tree" in refused("onnx", crafted.onnx_tree_cycle(graph), "onnx")


def test_every_kind_of_tree_ensemble_is_walked(penguins: pd.DataFrame) -> None:
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingClassifier

    x, y = penguins[NUMBERS], penguins["species"]
    boosted = GradientBoostingClassifier(n_estimators=3, random_state=0).fit(x, y)  # estimators_: an array of trees
    extra = make_pipeline(StandardScaler(), ExtraTreesRegressor(n_estimators=3, random_state=0)).fit(x, penguins["body_mass_g"])
    assert tree_checks.check(boosted) == 9 and tree_checks.check(extra) == 3
    tree = boosted.estimators_[2, 1].tree_
    tree.children_right[int(np.flatnonzero(tree.children_left != -1)[-1])] = 1  # back to an earlier node
    with pytest.raises(tree_checks.TreeRefused, match=r"estimators_\[7\]"):
        tree_checks.check(boosted)
    crafted.broken_tree(extra, "feature")
    with pytest.raises(tree_checks.TreeRefused, match="outside the model's 4 features"):
        tree_checks.check(extra)
