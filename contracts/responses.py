"""What the gateway answers, as schemas: handlers dump through them, the OpenAPI document is built from them.

Two contracts side by side:

- the seed's, on `/{family}`: exactly the fields the seed's own client reads,
  with its status names (`Queued`, `Running`, `Done`, `Failed`). Its client
  loads these with schemas that raise on any other field, so nothing is added;
- ml-server's own, under `/models` and `/families`: everything there is to
  know, with the lower-case `Status`.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from .status import JobKind, SeedStatus, Status

# ---- the seed's contract: `/{family}` ------------------------------------------------------


class SeedTrainResponse(Schema):
    """`PUT` (fit) and `PATCH` (update) on `/{family}`."""

    status = fields.Enum(SeedStatus, by_value=True, required=True)
    model_key = fields.String(required=True)


class SeedStatusResponse(Schema):
    """`GET /{family}?model_key=`: the latest training session's status."""

    status = fields.Enum(SeedStatus, by_value=True, required=True)


class PredictResponse(Schema):
    """`POST /{family}` (and a JSON answer of `POST /models/{model_key}/predict`)."""

    data = fields.String(
        required=True,
        metadata={"description": "the prediction as pandas JSON text in `orient` (`DataFrame.to_json`), or a JSON array as text with `as_array`"},
    )
    orient = fields.String(required=True)


class SeedDeleteResponse(Schema):
    """`DELETE /{family}?model_key=`: an empty object."""


# ---- ml-server's own: `/models`, `/families` -------------------------------------------------


class VersionResponse(Schema):
    version = fields.Integer()
    kind = fields.Enum(JobKind, by_value=True)
    status = fields.Enum(Status, by_value=True)
    base_version = fields.Integer(allow_none=True)
    params = fields.Dict()
    rows = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    worker = fields.String(allow_none=True)
    attempts = fields.Integer()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    backend = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    digest = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    scores = fields.Dict(
        allow_none=True,
        metadata={
            "description": "held-out scores of the fit (`metadata.scores`): method (holdout or cv), metrics (means), "
            "std and fold_scores per metric; null when none were made"
        },
    )
    description = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    aliases = fields.List(fields.String(), metadata={"description": "the aliases pointing at this version"})
    actor = fields.String(allow_none=True, metadata={"description": "who asked for this version (the bearer token's name)"})


class ModelResponse(Schema):
    """A model and its latest version (`GET /models/{model_key}`, and each item of `GET /models`)."""

    model_key = fields.String()
    family = fields.String()
    name = fields.String(allow_none=True)
    created_at = fields.DateTime()
    description = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    aliases = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "alias -> version"})
    serving = fields.String(allow_none=True, metadata={"description": "the alias predicts use by default; null: the latest done version"})
    serving_version = fields.Integer(allow_none=True, metadata={"description": "the version predicts without a version or alias get now"})
    latest = fields.Nested(VersionResponse, allow_none=True)


class TrainResponse(Schema):
    """A fit or update accepted (`202`), or an existing model returned (`200`)."""

    model_key = fields.String()
    status = fields.Enum(Status, by_value=True)
    version = fields.Integer()


class StatusResponse(TrainResponse):
    """One version's status, flat: the `data` of every event of `GET /models/{model_key}/events`."""

    family = fields.String()
    name = fields.String(allow_none=True)
    kind = fields.Enum(JobKind, by_value=True)
    base_version = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    rows = fields.Integer(allow_none=True)
    attempts = fields.Integer()
    worker = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class AliasResponse(Schema):
    model_key = fields.String()
    alias = fields.String()
    version = fields.Integer(allow_none=True, metadata={"description": "null once removed"})


class HistoryEntry(Schema):
    version = fields.Integer(allow_none=True)
    action = fields.String(metadata={"description": "fit, update, import, alias, unalias, serving, describe, tag, delete"})
    actor = fields.String(allow_none=True)
    at = fields.DateTime()
    detail = fields.Dict()


class HistoryResponse(Schema):
    model_key = fields.String(required=True)
    history = fields.List(fields.Nested(HistoryEntry), required=True)


class DeleteResponse(Schema):
    model_key = fields.String()
    deleted = fields.Integer(metadata={"description": "how many versions were deleted"})


class ModelsResponse(Schema):
    models = fields.List(fields.Nested(ModelResponse), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class VersionsResponse(Schema):
    model_key = fields.String(required=True)
    family = fields.String(required=True)
    name = fields.String(allow_none=True)
    versions = fields.List(fields.Nested(VersionResponse), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class FamilyResponse(Schema):
    name = fields.String(required=True)
    supervised = fields.Boolean(required=True)
    supports_update = fields.Boolean(required=True)
    params = fields.List(fields.String(), required=True)
    methods = fields.List(fields.String(), required=True)
    fits = fields.Boolean(metadata={"description": "false: the family serves imported models only"})


class FamiliesResponse(Schema):
    families = fields.List(fields.Nested(FamilyResponse), required=True)


# ---- operations and errors ---------------------------------------------------------------------


class HealthResponse(Schema):
    status = fields.String(required=True)


class ReadyResponse(Schema):
    status = fields.String(required=True, metadata={"description": "`ok` or `unavailable`"})
    broker = fields.String(required=True)
    store = fields.String(required=True)
    families = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "each family in ML_SERVER_FAMILIES: `ok`, or `no consumer`"},
    )


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable error code, e.g. `invalid_input`"})
    message = fields.String(required=True, metadata={"description": "what was wrong, naming the field"})
    fields_ = fields.Dict(data_key="fields", attribute="fields", metadata={"description": "the offending fields and what was wrong with each"})


class ErrorResponse(Schema):
    error = fields.Nested(ErrorDetail, required=True)
