"""Request, response and message schemas (marshmallow), used on both sides of every wire.

REST JSON bodies use the seed's field names. Parquet bodies carry the frame in
the body and the other fields in the query string (`*Params` schemas). AMQP
messages and their header schemas are in `messages`.
"""

from __future__ import annotations

import json
from typing import Any, cast

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates, validates_schema

from . import families
from .columns import Kind
from .errors import DecodeError
from .pandas_json import ORIENTS, JsonCodec
from .status import Backend, Status

NAME_LENGTH = validate.Length(min=1, max=256)
MODEL_KEY = validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$", error="not a model key")
# Versions, ids and offsets end up in SQL integer columns and parameters (32-bit in PostgreSQL):
# anything bigger is refused here instead of overflowing in the driver.
SQL_INT_MAX = 2**31 - 1
POSITIVE_ID = validate.Range(min=1, max=SQL_INT_MAX)
OFFSET = validate.Range(min=0, max=SQL_INT_MAX)
FAMILY_NAME = validate.Regexp(families.NAME_PATTERN, error="not a family name")
# Aliases and tags: a letter first (so never a version number), then letters, digits, `_`, `-`, `.`.
ALIAS_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
ALIAS_NAME = validate.Regexp(ALIAS_PATTERN, error="not an alias: a lower-case letter, then up to 63 of a-z 0-9 _ . -")
TAG = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$", error="not a tag: up to 64 of A-Z a-z 0-9 _ . : / -, not starting with a sign")
DESCRIPTION = validate.Length(max=10_000)


class Text(fields.String):
    """Free text that is stored: a NUL character is refused here (PostgreSQL's text types cannot hold one)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("must not contain a NUL character")
        return text


class JsonDict(fields.Dict):
    """A dict, given as an object or (query strings, AMQP headers) as JSON text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than Python recurses
                raise ValidationError(f"not valid JSON: {e}") from e
        return cast("dict[str, Any]", super()._deserialize(value, attr, data, **kwargs))

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))


class JsonList(fields.List[Any]):
    """A list of strings, given as a list or (query strings, AMQP headers) as JSON text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.String(validate=validate.Length(min=1, max=256)), validate=validate.Length(max=100_000), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError) as e:
                raise ValidationError(f"not valid JSON: {e}") from e
        return super()._deserialize(value, attr, data, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else json.dumps(value, separators=(",", ":"))


class Frame(fields.Raw):
    """A DataFrame in pandas JSON: the `to_json` text (the seed's format) or the parsed object."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, (str, dict, list)):
            raise ValidationError("must be a DataFrame as pandas JSON (text, object or array)")
        return value


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _decode_frames(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    for name in names:
        if data.get(name) is None:
            continue
        try:
            data[name] = JsonCodec.decode(data[name], data["orient"], what=name)
        except DecodeError as e:
            errors[name] = [e.message]
    if errors:
        raise ValidationError(errors)
    return data


class FitParams(_Strict):
    orient = fields.String(load_default="columns", validate=validate.OneOf(ORIENTS))
    name = Text(load_default=None, allow_none=True, validate=NAME_LENGTH)
    modkwargs = JsonDict(load_default=dict)
    algkwargs = JsonDict(load_default=dict)
    retrain = fields.Boolean(load_default=False)
    # How the fitted model is stored and served; None: the family's default.
    backend = fields.Enum(Backend, by_value=True, load_default=None, allow_none=True)


class FitRequest(FitParams):
    x = Frame(required=True)
    y = Frame(load_default=None, allow_none=True)

    @post_load
    def frames(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _decode_frames(data, ("x", "y"))


class KeyParams(_Strict):
    model_key = fields.String(required=True, validate=MODEL_KEY)


class UpdateParams(KeyParams):
    orient = fields.String(load_default="columns", validate=validate.OneOf(ORIENTS))


class UpdateRequest(UpdateParams):
    x = Frame(required=True)
    y = Frame(load_default=None, allow_none=True)

    @post_load
    def frames(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _decode_frames(data, ("x", "y"))


class PredictParams(KeyParams):
    orient = fields.String(load_default="columns", validate=validate.OneOf(ORIENTS))
    as_array = fields.Boolean(load_default=False)
    kwargs = JsonDict(load_default=dict)
    # Which version answers: `version`, or the version `alias` points at (not both); neither: the model's
    # serving alias, or its latest done version.
    version = fields.Integer(load_default=None, allow_none=True, strict=False, validate=POSITIVE_ID)
    alias = fields.String(load_default=None, allow_none=True, validate=ALIAS_NAME)

    @validates_schema
    def one_of(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("version") is not None and data.get("alias") is not None:
            raise ValidationError("give version or alias, not both", "alias")


class PredictRequest(PredictParams):
    """A JSON predict body; x stays pandas JSON here (`pandas_json.read_rows` reads it without pandas)."""

    x = Frame(required=True)


class ModelsQuery(_Strict):
    family = fields.String(load_default=None, validate=FAMILY_NAME)
    name = Text(load_default=None, validate=NAME_LENGTH)
    status = fields.Enum(Status, by_value=True, load_default=None)
    tag = fields.String(load_default=None, validate=TAG)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=OFFSET)


class VersionsQuery(_Strict):
    status = fields.Enum(Status, by_value=True, load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=OFFSET)


class AliasRequest(_Strict):
    """`PUT /models/{model_key}/aliases/{alias}`: the version to point at."""

    version = fields.Integer(required=True, strict=True, validate=POSITIVE_ID)


class ModelPatch(_Strict):
    """`PATCH /models/{model_key}`: what to change (a field left out stays as it is)."""

    description = Text(allow_none=True, validate=DESCRIPTION)
    tags = fields.List(fields.String(validate=TAG), validate=validate.Length(max=100))
    # The alias predicts use when they name neither a version nor an alias; null: the latest done version.
    serving = fields.String(allow_none=True, validate=ALIAS_NAME)


class VersionPatch(_Strict):
    """`PATCH /models/{model_key}/versions/{version}`."""

    description = Text(allow_none=True, validate=DESCRIPTION)
    tags = fields.List(fields.String(validate=TAG), validate=validate.Length(max=100))


class HistoryQuery(_Strict):
    version = fields.Integer(load_default=None, allow_none=True, validate=POSITIVE_ID)


class ImportParams(_Strict):
    """An import's query string: the file is the body."""

    name = Text(load_default=None, allow_none=True, validate=NAME_LENGTH)
    # Told apart by the file's first bytes when not given.
    format = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("skops", "onnx")))
    features = JsonList(load_default=None, allow_none=True)
    types = JsonDict(load_default=None, allow_none=True)

    @validates("features")
    def _features(self, value: list[Any] | None, **_: Any) -> None:
        if value is not None and (not value or not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value)):
            raise ValidationError("a JSON list of distinct column names")

    @validates("types")
    def _types(self, value: dict[str, Any] | None, **_: Any) -> None:
        kinds = [k.value for k in Kind]
        bad = sorted(c for c, k in (value or {}).items() if k not in kinds)
        if bad:
            raise ValidationError(f"columns {bad}: a kind is one of {kinds}")


class EventsQuery(_Strict):
    """`GET /models/{model_key}/events`: the version whose end closes the stream (default: the latest)."""

    version = fields.Integer(load_default=None, allow_none=True, validate=POSITIVE_ID)


class FeedQuery(_Strict):
    """`GET /events`: every model's events, or (`family`) those of one family."""

    family = fields.String(load_default=None, validate=FAMILY_NAME)
