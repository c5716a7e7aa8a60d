"""The route table: every HTTP route the gateway serves, one row each (see `routing.Route`).

Order matters where paths overlap: the seed's `/{family}` matches any
one-segment path, so it comes last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import paths
from contracts.searches import SearchParams
from contracts.schemas import (
    EventsQuery,
    FeedQuery,
    FitParams,
    HistoryQuery,
    ImportParams,
    KeyParams,
    ModelsQuery,
    PredictParams,
    UpdateParams,
    VersionsQuery,
)

from . import asyncapi, dashboard, events, openapi, operations, resources, routes, searches, v2, v2_openapi
from .routing import BINARY, TEXT, Answer, Handler, Route, Scope, Table, frames, json, ref

OPEN, READ, WRITE = Scope.OPEN, Scope.READ, Scope.WRITE
DATA_ERRORS = (401, 403, 404, 413, 415, 422, 503)
READ_ERRORS = (401, 404, 422, 503)
WRITE_ERRORS = (401, 403, 404, 422, 503)

PREDICTION = Answer(
    "the prediction, one row per row of x, labelled like x: `{data, orient}`, or Parquet when `Accept` names "
    "application/vnd.apache.parquet",
    frames("PredictResponse"),
)
HTML = {"text/html": TEXT}
MODEL_FILE = {"application/octet-stream": BINARY}
MODEL_FILE_IS = "a skops file (`skops.io.dump`) or an ONNX model; pickle and joblib files are refused (415)"
IMPORT_ERRORS = (401, 403, 404, 409, 413, 415, 422, 503, 504)


def ok(description: str, schema: str) -> Answer:
    return Answer(description, json(schema))


def V2Route(method: str, path: str, handler: Handler, scope: Scope, summary: str, answers: dict[int, Answer],
            errors: Sequence[int] = (), **more: Any) -> Route:
    """A route of the Open Inference Protocol: its tag, its path parameters and its `{"error": message}` bodies."""
    return Route(method, path, handler, scope, "v2", summary, answers, errors, parameters=v2_openapi.PARAMETERS,
                 error_answer=Answer("`{\"error\": message}`", json("V2Error")), **more)


V2_METADATA = {200: ok("inputs and outputs from the version's recorded input schema", "V2ModelMetadata")}
V2_MODEL_READY = {200: ok("ready", "V2ModelReady"), 400: ok("not ready", "V2ModelReady")}
V2_INFER_IS = "predict: JSON tensors, or JSON and binary tensors (Triton's extension); outputs named after methods"
V2_INFERENCE = {200: Answer("the outputs; with binary outputs, the JSON's length in `Inference-Header-Content-Length`",
                            {**json("V2InferenceResponse"), "application/octet-stream": BINARY})}
V2_INFER_BODY = {**json("V2InferenceRequest"), "application/octet-stream": BINARY}
V2_INFER_ERRORS = (400, 401, 404, 409, 413, 503, 504)
V2_REPOSITORY_BODY = json({"type": "object", "properties": {"parameters": {"type": "object", "additionalProperties": True}}})


ROUTES = Table(
    [
        # ---- operations ----------------------------------------------------------------------------------
        Route("GET", paths.HEALTHZ, operations.healthz, OPEN, "operations", "the gateway process is up",
              {200: ok("the gateway process is up", "HealthResponse")}),
        Route("GET", paths.READYZ, operations.readyz, OPEN, "operations",
              "broker and store reachable, and a consumer for every family in ML_SERVER_FAMILIES",
              {200: ok("ready", "ReadyResponse"), 503: ok("not ready: what is missing is named", "ReadyResponse")}),
        Route("GET", paths.METRICS, operations.prometheus_metrics, READ, "operations", "Prometheus metrics",
              {200: Answer("Prometheus text exposition format", {"text/plain": TEXT})}, (401,)),
        Route("GET", paths.OPENAPI, openapi.openapi_json, OPEN, "operations", "this document",
              {200: Answer("this document", json({"type": "object"}))}, operation_id="openapi"),
        Route("GET", paths.ASYNCAPI, asyncapi.asyncapi_json, OPEN, "operations",
              "the AsyncAPI 2.6 document of the AMQP message contract (publishing straight to RabbitMQ)",
              {200: Answer("the AsyncAPI document", json({"type": "object"}))}, operation_id="asyncapi"),
        Route("GET", paths.DOCS, openapi.docs, OPEN, "operations", "the API documentation page (Swagger UI, served by the gateway)",
              {200: Answer("the page", HTML)}),
        Route("GET", paths.DOCS_ASSET, openapi.docs_asset, OPEN, "operations", "a script, style sheet or icon of the docs page",
              {200: Answer("the file")}, (404,), enums={"asset": sorted(openapi.ASSETS)}),
        Route("GET", paths.UI, dashboard.page, OPEN, "operations", "the dashboard (it asks the API with the token typed into it)",
              {200: Answer("the page", HTML)}, operation_id="dashboard"),
        Route("GET", paths.UI_SLASH, dashboard.slash, OPEN, "operations", "a permanent redirect to the dashboard at /ui",
              {308: Answer("to /ui", headers={"Location": {"schema": {"type": "string"}}})}, operation_id="dashboard_slash"),
        Route("GET", paths.UI_ASSET, dashboard.asset, OPEN, "operations", "a script, style sheet or icon of the dashboard",
              {200: Answer("the file")}, (404,), operation_id="dashboard_asset", enums={"asset": sorted(dashboard.ASSETS)}),
        Route("GET", paths.FEED, events.all_events, READ, "ml-server",
              "every model's status changes: server-sent events with `Accept: text/event-stream`, else the versions "
              "queued or running now",
              {200: Answer("an event stream (`event: status` with a StatusResponse, `event: alias`) that lasts until the client "
                           "goes away; or, without `Accept: text/event-stream`, `{versions: [StatusResponse]}`",
                           {"text/event-stream": TEXT,
                            **json({"type": "object", "properties": {"versions": {"type": "array", "items": ref("StatusResponse")}}})})},
              (401, 422, 503), query=FeedQuery, operation_id="feed"),
        # ---- ml-server's own resources ---------------------------------------------------------------------
        Route("GET", paths.FAMILIES, resources.families, READ, "ml-server", "the families consumers serve, their parameters and methods",
              {200: ok("families", "FamiliesResponse")}, (401, 503)),
        Route("POST", paths.FAMILY_MODELS, resources.fit, WRITE, "ml-server",
              "fit: train a model of this family (a new version with `retrain`)",
              {202: ok("queued: the new version", "TrainResponse"), 200: ok("the model exists and no retrain: its latest version", "TrainResponse")},
              (*DATA_ERRORS, 409), label="fit", query=FitParams, parquet_query=True, body=frames("FitRequest"),
              description="JSON body in the seed's format, or a Parquet body with the other fields in the query string. "
              "409 when a model of that name exists, trained on other columns."),
        Route("POST", paths.FAMILY_IMPORT, resources.import_new, WRITE, "registry",
              "a model trained elsewhere as a new model: a skops file into the family of its estimator, an ONNX graph into `onnx`",
              {201: ok("imported: the done version", "TrainResponse"), 200: ok("the same file, imported before", "TrainResponse")},
              IMPORT_ERRORS, query=ImportParams, body=MODEL_FILE, body_description=MODEL_FILE_IS, operation_id="import_model",
              description="Checked before anything is stored: a skops file's archive against the `ML_SERVER_IMPORT_*` caps "
              "before it is inflated, every name it asks for against the server's exact lists, its trees for cycles and indices "
              "out of range; a graph for external data and sizes set by the request, then loaded by onnxruntime; both must "
              "answer a test predict. A refused file is a 422 whose `fields.file` says why. 200 (not 201) when the same file "
              "was imported before without a name."),
        Route("POST", paths.FAMILY_SEARCHES, searches.create, WRITE, "ml-server",
              "search hyperparameters: one fit job per candidate, the best refitted as a new version of `name`",
              {202: ok("the search, its candidates queued", "SearchAccepted")}, DATA_ERRORS, query=SearchParams, parquet_query=True,
              body=frames("SearchRequest"), operation_id="create_search",
              description="The training data as a fit takes it (JSON, or Parquet with the other fields in the query string); "
              "`param_grid`, or `param_distributions` with `n_iter` and `seed`; `cv` folds (scikit-learn's default splitter, not "
              "shuffled), `scoring` (a scorer name; default: the estimator's own `score`), `alias`."),
        Route("GET", paths.SEARCH, searches.read, READ, "ml-server", "a search's state and leaderboard",
              {200: ok("the search", "SearchResponse")}, (401, 404, 503), operation_id="search"),
        Route("DELETE", paths.SEARCH, searches.cancel, WRITE, "ml-server",
              "cancel a search: candidates not finished are dropped, no winner is refitted",
              {200: ok("the search, cancelled (or as it finished)", "SearchResponse")}, (401, 403, 404, 503), operation_id="cancel_search"),
        Route("GET", paths.MODELS, resources.list_models, READ, "ml-server", "models with their latest version, newest first",
              {200: ok("a page of models", "ModelsResponse")}, (401, 422, 503), query=ModelsQuery, operation_id="models"),
        Route("GET", paths.MODEL, resources.get_model, READ, "ml-server", "a model and its latest version",
              {200: ok("the model", "ModelResponse")}, READ_ERRORS, label="status", operation_id="model"),
        Route("DELETE", paths.MODEL, resources.delete_model, WRITE, "ml-server", "delete the model and all its versions",
              {200: ok("deleted", "DeleteResponse")}, WRITE_ERRORS, label="delete", operation_id="delete"),
        Route("PATCH", paths.MODEL, resources.patch_model, WRITE, "registry",
              "change the model's description, tags, or the alias predicts use by default (`serving`)",
              {200: ok("the model", "ModelResponse")}, WRITE_ERRORS, body=json("ModelPatch"), operation_id="edit_model",
              description="Only the fields given change. `serving: null`: predicts get the latest done version."),
        Route("POST", paths.MODEL_PREDICT, resources.predict, READ, "ml-server",
              "predict with the latest done version (or `version`); another method through kwargs.method",
              {200: PREDICTION}, (*DATA_ERRORS, 409, 504), label="predict", query=PredictParams, parquet_query=True,
              body=frames("PredictRequest")),
        Route("POST", paths.MODEL_UPDATE, resources.update, WRITE, "ml-server",
              "update (partial_fit) the latest done version, making a new one",
              {202: ok("queued: the new version", "TrainResponse")}, (*DATA_ERRORS, 409), label="update",
              query=UpdateParams, parquet_query=True, body=frames("UpdateRequest")),
        Route("POST", paths.MODEL_IMPORT, resources.import_version, WRITE, "registry",
              "a model file as the next version of this model (same family)",
              {201: ok("imported: the done version", "TrainResponse")}, IMPORT_ERRORS, query=ImportParams, body=MODEL_FILE,
              body_description=MODEL_FILE_IS),
        Route("GET", paths.MODEL_VERSIONS, resources.list_versions, READ, "ml-server",
              "every version of a model, newest first, with its metadata",
              {200: ok("a page of versions", "VersionsResponse")}, READ_ERRORS, query=VersionsQuery, operation_id="versions"),
        Route("GET", paths.MODEL_VERSION, resources.get_version, READ, "ml-server", "one version of a model, with its metadata",
              {200: ok("the version", "VersionResponse")}, READ_ERRORS, operation_id="version"),
        Route("PATCH", paths.MODEL_VERSION, resources.patch_version, WRITE, "registry", "change a version's description or tags",
              {200: ok("the version", "VersionResponse")}, WRITE_ERRORS, body=json("VersionPatch"), operation_id="edit_version"),
        Route("GET", paths.MODEL_EVENTS, events.events, READ, "ml-server", "the model's status events as server-sent events",
              {200: Answer("an event stream: one `data:` line of JSON (StatusResponse) per status change", {"text/event-stream": TEXT})},
              (401, 404, 503), query=EventsQuery),
        Route("GET", paths.MODEL_HISTORY, resources.history, READ, "registry", "who did what to the model and its versions, newest first",
              {200: ok("the history", "HistoryResponse")}, READ_ERRORS, query=HistoryQuery),
        Route("PUT", paths.MODEL_ALIAS, resources.set_alias, WRITE, "registry",
              "point an alias at a done version (moving it back is a rollback)",
              {200: ok("the alias", "AliasResponse")}, (*WRITE_ERRORS, 409), body=json("AliasRequest")),
        Route("DELETE", paths.MODEL_ALIAS, resources.remove_alias, WRITE, "registry", "remove an alias (409 for the one the model serves)",
              {200: ok("removed: `version` null", "AliasResponse")}, (*WRITE_ERRORS, 409)),
        # ---- the Open Inference Protocol (KServe V2) ------------------------------------------------------------
        V2Route("GET", paths.V2_SERVER, v2.server_metadata, READ, "the server's name, version and protocol extensions",
                {200: ok("the server", "V2ServerMetadata")}, (401,), operation_id="v2_server"),
        V2Route("GET", paths.V2_LIVE, v2.live, OPEN, "the process is up", {200: ok("live", "V2Live")}, operation_id="v2_live"),
        V2Route("GET", paths.V2_READY, v2.ready, OPEN, "ready as /readyz is (400 when not)",
                {200: ok("ready", "V2Ready"), 400: ok("not ready", "V2Ready")}, operation_id="v2_ready"),
        V2Route("GET", paths.V2_MODEL, v2.model_metadata, READ, "a model's metadata (its default version's)", V2_METADATA,
                (400, 401, 404, 409, 503), operation_id="v2_model"),
        V2Route("GET", paths.V2_MODEL_VERSION, v2.model_metadata, READ, "a version's metadata", V2_METADATA,
                (400, 401, 404, 409, 503), operation_id="v2_model_version"),
        V2Route("GET", paths.V2_MODEL_READY, v2.model_ready, READ, "whether the default version can answer", V2_MODEL_READY,
                (401, 404, 503), operation_id="v2_model_ready"),
        V2Route("GET", paths.V2_MODEL_VERSION_READY, v2.model_ready, READ, "whether the version can answer", V2_MODEL_READY,
                (401, 404, 503), operation_id="v2_model_version_ready"),
        V2Route("POST", paths.V2_INFER, v2.infer, READ, V2_INFER_IS, V2_INFERENCE, V2_INFER_ERRORS, label="predict",
                body=V2_INFER_BODY, headers=(v2_openapi.BINARY_LENGTH,), operation_id="v2_infer"),
        V2Route("POST", paths.V2_VERSION_INFER, v2.infer, READ, V2_INFER_IS, V2_INFERENCE, V2_INFER_ERRORS, label="predict",
                body=V2_INFER_BODY, headers=(v2_openapi.BINARY_LENGTH,), operation_id="v2_version_infer"),
        V2Route("POST", paths.V2_INDEX, v2.index, READ, "every model's versions, READY or UNAVAILABLE (and why)",
                {200: ok("the index", "V2RepositoryIndex")}, (400, 401, 503), operation_id="v2_index", body_required=False,
                body=json({"type": "object", "properties": {"ready": {"type": "boolean"}}})),
        V2Route("POST", paths.V2_LOAD, v2.load, WRITE, "load the model's default version into its consumers' caches",
                {200: ok("asked of the consumers", "V2RepositoryChange")}, (400, 401, 403, 404, 409, 503), operation_id="v2_load",
                body=V2_REPOSITORY_BODY, body_required=False),
        V2Route("POST", paths.V2_UNLOAD, v2.unload, WRITE, "drop the model from its consumers' caches; nothing is deleted",
                {200: ok("asked of the consumers", "V2RepositoryChange")}, (400, 401, 403, 404, 409, 503), operation_id="v2_unload",
                body=V2_REPOSITORY_BODY, body_required=False),
        # ---- the seed's contract, exactly as the seed answered it ---------------------------------------------
        Route("PUT", paths.SEED, routes.fit, WRITE, "seed", "fit: train a model (a new version with `retrain`)",
              {200: ok("`{status, model_key}`, the seed's status names", "SeedTrainResponse")}, (*DATA_ERRORS, 409), label="fit",
              query=FitParams, parquet_query=True, body=frames("FitRequest"), operation_id="seed_fit",
              description="JSON body in the seed's format, or a Parquet body with the other fields in the query string. Always "
              "`200 {status, model_key}`: the version just queued (`Queued`), or the model as it is when it exists and no "
              "retrain was asked for (409 when that model was trained on other columns)."),
        Route("POST", paths.SEED, routes.predict, READ, "seed", "predict (or another method through kwargs.method)",
              {200: PREDICTION}, (*DATA_ERRORS, 409, 504), label="predict", query=PredictParams, parquet_query=True,
              body=frames("PredictRequest"), operation_id="seed_predict"),
        Route("PATCH", paths.SEED, routes.update, WRITE, "seed", "update (partial_fit) the latest version, making a new one",
              {200: ok("`{status, model_key}` of the queued version", "SeedTrainResponse")}, (*DATA_ERRORS, 409), label="update",
              query=UpdateParams, parquet_query=True, body=frames("UpdateRequest"), operation_id="seed_update"),
        Route("GET", paths.SEED, routes.status, READ, "seed", "status of the model's latest training session",
              {200: ok("`{status}`, the seed's status names", "SeedStatusResponse")}, READ_ERRORS, label="status",
              query=KeyParams, operation_id="seed_status"),
        Route("DELETE", paths.SEED, routes.remove, WRITE, "seed", "delete the model and all its versions",
              {200: ok("deleted: `{}`", "SeedDeleteResponse")}, WRITE_ERRORS, label="delete", query=KeyParams, operation_id="seed_delete"),
    ]
)
