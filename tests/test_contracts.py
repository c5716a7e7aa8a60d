"""Pure logic: codecs, schemas, settings, signed artifacts, families (no broker, no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from marshmallow import ValidationError
from sklearn.linear_model import LogisticRegression

from consumers import backends
from consumers.families import BUILTIN, FamilyError, load_family
from contracts.errors import DecodeError, NotFound, from_wire
from contracts.frames import ParquetCodec, decode_training, encode_training, normalize
from contracts.pandas_json import JsonCodec
from contracts.schemas import FitRequest
from contracts.messages import PredictHeaders, TrainHeaders
from contracts.settings import Settings, SettingsError
from contracts.status import Backend, JobKind


def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]}, index=[10, 11, 12])


def test_parquet_round_trip_keeps_index_columns_and_dtypes() -> None:
    back = ParquetCodec.decode(ParquetCodec.encode(frame()))
    pd.testing.assert_frame_equal(back, frame(), check_dtype=False)
    assert back["a"].dtype == np.float64


@pytest.mark.parametrize("orient", ["split", "records", "index", "columns", "values", "table"])
def test_json_round_trip_every_orient(orient: str) -> None:
    f = pd.DataFrame(np.arange(6.0).reshape(3, 2), columns=["p", "q"])
    back = JsonCodec.decode(JsonCodec.encode(f, orient), orient)
    np.testing.assert_allclose(back.to_numpy(dtype=float), f.to_numpy())


def test_bad_bytes_raise_one_decode_error() -> None:
    with pytest.raises(DecodeError, match="Parquet"):
        ParquetCodec.decode(b"definitely not parquet")
    with pytest.raises(DecodeError, match="orient 'split'"):
        JsonCodec.decode('{"a": [1, 2]}', "split")


def test_duplicate_and_empty_frames_are_refused() -> None:
    with pytest.raises(DecodeError, match="duplicate"):
        normalize(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(DecodeError, match="duplicate"):  # 1 and "1" are the same name on the server
        normalize(pd.DataFrame([[1, 2]], columns=[1, "1"]))
    with pytest.raises(DecodeError, match="empty"):
        ParquetCodec.decode(ParquetCodec.encode(pd.DataFrame({"a": []})))


def test_training_file_names_targets_and_survives_name_collisions() -> None:
    x = pd.DataFrame(np.ones((4, 2)), columns=["0", "1"])
    y = pd.DataFrame({"0": [0, 1, 0, 1]})
    bx, by = decode_training(encode_training(x, y))
    assert list(bx.columns) == ["0", "1"] and by is not None and list(by.columns) == ["0"]
    assert by["0"].tolist() == [0, 1, 0, 1]
    assert decode_training(encode_training(x, None))[1] is None
    with pytest.raises(DecodeError, match="rows"):
        encode_training(x, y.head(2))


def test_fit_schema_names_the_bad_fields() -> None:
    with pytest.raises(ValidationError) as e:
        FitRequest().load({"orient": "sideways", "retrain": "maybe", "nope": 1})
    assert {"x", "orient", "retrain", "nope"} <= set(e.value.messages)
    with pytest.raises(ValidationError) as e:
        FitRequest().load({"x": "[[1,", "orient": "values"})
    assert "x" in e.value.messages
    ok = FitRequest().load({"x": frame().to_json()})
    assert ok["orient"] == "columns" and ok["modkwargs"] == {} and ok["retrain"] is False and ok["y"] is None


def test_headers_round_trip_through_the_same_schema() -> None:
    job = {"job_id": 3, "model_key": "logreg-abc", "family": "logreg", "version": 2, "kind": JobKind.UPDATE, "modkwargs": {"C": 1}, "algkwargs": {}, "backend": Backend.ONNX}
    loaded = TrainHeaders().load(TrainHeaders().dump(job))
    assert {k: getattr(loaded, k) for k in job} == job  # fields left out come back as their defaults
    with pytest.raises(ValidationError) as e:
        PredictHeaders().load({"x-model-key": "../../etc"})
    assert "x-model-key" in e.value.messages


def test_settings_defaults_and_named_failures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Settings.from_env({"ML_SERVER_DATA_DIR": str(tmp_path)})
    assert s.port == 8080 and s.database_url == f"sqlite:///{tmp_path / 'ml-server.db'}"
    with pytest.raises(SettingsError, match="ML_SERVER_PORT"):
        Settings.from_env({"ML_SERVER_PORT": "eighty"})
    with pytest.raises(SettingsError, match="ML_SERVER_PREDICT_TIMEOUT"):
        Settings.from_env({"ML_SERVER_PREDICT_TIMEOUT": "-1"})
    with pytest.raises(SettingsError, match="ML_SERVER_SECRET"):
        s.signing_key()


def test_artifacts_are_signed_and_tampering_is_refused() -> None:
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    blob = backends.dump(model, b"k" * 32)
    assert backends.load(blob, b"k" * 32).predict([[1.0]])[0] == 1
    with pytest.raises(backends.ArtifactError, match="signature"):
        backends.load(blob, b"other-key-other-key")
    with pytest.raises(backends.ArtifactError, match="signature"):
        backends.load(blob[:-1] + bytes([blob[-1] ^ 1]), b"k" * 32)
    with pytest.raises(backends.ArtifactError, match="not signed"):
        backends.load(blob[40:], b"k" * 32)


def test_families_resolve_by_name_and_by_module_attribute() -> None:
    assert load_family("logreg") is BUILTIN["logreg"]
    assert load_family("tests.families_for_tests:slow").name == "slow"
    assert "C" in BUILTIN["logreg"].parameters()
    with pytest.raises(FamilyError, match="unknown family"):
        load_family("no-such-family")
    with pytest.raises(FamilyError, match="cannot load"):
        load_family("tests.families_for_tests:missing")


def test_errors_cross_the_wire_as_data() -> None:
    err = NotFound("gone", fields={"model_key": ["unknown"]})
    back = from_wire(**err.to_wire())
    assert type(back) is NotFound and back.status == 404 and back.fields == {"model_key": ["unknown"]}


def test_families_are_found_through_the_entry_point_group(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # What `pip install` of a package declaring [project.entry-points."ml_server.families"] leaves on sys.path.
    dist = tmp_path / "my_models-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ml_server.families]\nslow = tests.families_for_tests:slow\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    family = load_family("slow")
    assert family.name == "slow" and "delay" in family.parameters()


def test_readme_settings_table_lists_every_setting_with_its_default() -> None:
    """Every setting has one row, with its default: in docs/operations.md's table, or in the table of the page
    of its topic (docs/security.md: the limits)."""
    from pathlib import Path

    from contracts.settings import SETTINGS

    docs = Path(__file__).resolve().parent.parent / "docs"
    rows: dict[str, str] = {}
    for page in ("operations.md", "security.md"):
        for line in (docs / page).read_text().splitlines():
            if line.startswith("| `ML_SERVER_"):
                cells = [c.strip() for c in line.strip("|").split("|")]
                assert cells[0].strip("`") not in rows, f"{cells[0]} has two rows"
                rows[cells[0].strip("`")] = cells[1]
    for name, _, default, _ in SETTINGS.values():
        assert name in rows, f"{name} is missing from the settings tables of docs/operations.md and docs/security.md"
        if default is not None:
            assert f"`{default}`" in rows[name], (name, default, rows[name])
