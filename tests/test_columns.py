"""The recorded input schema: what `infer` records of a training frame, and how `conform` reads rows against it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contracts.columns import MAX_LEVELS, InputSchema, Kind, check_target, check_update, conform, infer
from contracts.errors import InvalidInput


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "height": [1.5, np.nan, 2.0],
            "count": [1, 2, 3],
            "flag": [True, False, True],
            "city": ["london", None, "paris"],
            "tier": pd.Categorical(["a", "b", "a"]),
            "seen": pd.to_datetime(["2024-01-01", "2024-06-01", None]),
        }
    )


def test_infer_records_kinds_missing_values_and_levels_and_round_trips() -> None:
    schema = infer(frame())
    kinds = {c.name: (c.kind, c.missing, c.levels) for c in schema.columns}
    assert kinds == {
        "height": (Kind.NUMBER, True, None),
        "count": (Kind.INTEGER, False, None),
        "flag": (Kind.BOOLEAN, False, None),
        "city": (Kind.STRING, True, ("london", "paris")),
        "tier": (Kind.CATEGORY, False, ("a", "b")),
        "seen": (Kind.DATETIME, True, None),
    }
    assert InputSchema.from_list(schema.as_list()) == schema
    assert schema.text == ["city", "tier"] and not schema.numeric
    # JSON has no dates: ISO text is a datetime column; other text stays text.
    assert infer(pd.DataFrame({"d": ["2024-01-01", "2024-02-03T10:00:00Z"]})).columns[0].kind is Kind.DATETIME
    assert infer(pd.DataFrame({"d": ["2024", "tomorrow"]})).columns[0].kind is Kind.STRING


def test_conform_gives_the_model_numbers_and_text_whatever_came() -> None:
    schema = infer(frame())
    # The same rows as JSON would bring them: numbers as text, booleans as words, dates as ISO text, categories as text.
    rows = pd.DataFrame(
        {
            "seen": ["2024-01-01T00:00:00Z", None],
            "tier": ["b", "zzz"],
            "city": [None, 7],
            "flag": ["false", True],
            "count": ["4", 5],
            "height": [None, 1.25],
        },
        index=[10, 11],
    )
    got = conform(rows, schema)
    assert list(got.columns) == schema.names and list(got.index) == [10, 11]
    np.testing.assert_array_equal(got["height"].to_numpy(), [np.nan, 1.25])
    np.testing.assert_array_equal(got["count"].to_numpy(), [4.0, 5.0])
    np.testing.assert_array_equal(got["flag"].to_numpy(), [0.0, 1.0])
    assert got["city"].tolist() == ["", "7"] and got["tier"].tolist() == ["b", "zzz"]  # missing text: ""; unseen: kept
    assert got["seen"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC").timestamp() and np.isnan(got["seen"].iloc[1])


@pytest.mark.parametrize(
    ("column", "values", "words"),
    [
        ("count", ["four", 5], ["'count'", "expected numbers", "'four'"]),
        ("flag", ["maybe", True], ["'flag'", "true or false"]),
        ("seen", ["next tuesday", None], ["'seen'", "dates"]),
    ],
)
def test_conform_names_the_column_it_can_not_read(column: str, values: list[object], words: list[str]) -> None:
    rows = frame().head(2).copy()
    rows[column] = values
    with pytest.raises(InvalidInput) as e:
        conform(rows, infer(frame()))
    assert all(w in e.value.message for w in words), e.value.message
    assert "x" in (e.value.fields or {})


def test_conform_lists_the_expected_columns() -> None:
    with pytest.raises(InvalidInput, match="missing: \\['seen'\\]"):
        conform(frame().drop(columns=["seen"]), infer(frame()))


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([None, None, None], ["every value is missing"]),
        ([1, "a", 2.5], ["several kinds"]),
    ],
)
def test_infer_refuses_what_no_model_can_learn_from(values: list[object], words: list[str]) -> None:
    with pytest.raises(InvalidInput) as e:
        infer(pd.DataFrame({"bad": values, "ok": [1, 2, 3]}))
    assert "'bad'" in e.value.message and all(w in e.value.message for w in words), e.value.message


def test_text_with_too_many_levels_is_refused() -> None:
    many = pd.DataFrame({"id": [f"x{i}" for i in range(MAX_LEVELS + 1)]})
    with pytest.raises(InvalidInput, match=f"more than the {MAX_LEVELS}"):
        infer(many)
    infer(many.head(MAX_LEVELS))  # at the limit: fine


def test_target_with_missing_values_and_updates_with_new_columns_or_categories() -> None:
    with pytest.raises(InvalidInput, match="'t'.*missing"):
        check_target(pd.DataFrame({"t": [1, None, 0]}))
    schema = infer(frame())
    check_update(frame().iloc[[0, 2]], schema)
    with pytest.raises(InvalidInput, match="'tier'.*'c'"):
        check_update(frame().assign(tier=["a", "c", "b"]), schema)
    with pytest.raises(InvalidInput, match="columns of the first fit"):
        check_update(frame().assign(extra=1), schema)
