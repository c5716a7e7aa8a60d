"""Every HTTP path the gateway serves, spelled once.

The gateway's route table, auth scopes, metrics labels and OpenAPI document,
the Python client and the dashboard (through the generated `/ui/paths.js`)
all take their paths from here. `fill` puts values into a path's
`{placeholders}`, quoted for a URL.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# operations
HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
OPENAPI = "/openapi.json"
ASYNCAPI = "/asyncapi.json"
DOCS = "/docs"
DOCS_ASSET = "/docs/{asset}"
UI = "/ui"
UI_SLASH = "/ui/"
UI_ASSET = "/ui/{asset}"
FEED = "/events"

# ml-server's own resources
FAMILIES = "/families"
FAMILY_MODELS = "/families/{family}/models"
FAMILY_IMPORT = "/families/{family}/models/import"
FAMILY_SEARCHES = "/families/{family}/searches"
SEARCH = "/searches/{id}"
MODELS = "/models"
MODEL = "/models/{model_key}"
MODEL_PREDICT = "/models/{model_key}/predict"
MODEL_UPDATE = "/models/{model_key}/update"
MODEL_IMPORT = "/models/{model_key}/import"
MODEL_VERSIONS = "/models/{model_key}/versions"
MODEL_VERSION = "/models/{model_key}/versions/{version}"
MODEL_EVENTS = "/models/{model_key}/events"
MODEL_HISTORY = "/models/{model_key}/history"
MODEL_ALIAS = "/models/{model_key}/aliases/{alias}"

# the Open Inference Protocol (KServe V2)
V2_SERVER = "/v2"
V2_LIVE = "/v2/health/live"
V2_READY = "/v2/health/ready"
V2_MODEL = "/v2/models/{model}"
V2_MODEL_VERSION = "/v2/models/{model}/versions/{version}"
V2_MODEL_READY = "/v2/models/{model}/ready"
V2_MODEL_VERSION_READY = "/v2/models/{model}/versions/{version}/ready"
V2_INFER = "/v2/models/{model}/infer"
V2_VERSION_INFER = "/v2/models/{model}/versions/{version}/infer"
V2_INDEX = "/v2/repository/index"
V2_LOAD = "/v2/repository/models/{model}/load"
V2_UNLOAD = "/v2/repository/models/{model}/unload"

# the seed's contract: five verbs on one path per family (registered last: it matches any one-segment path)
SEED = "/{family}"

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def placeholders(path: str) -> list[str]:
    """The names of a path's `{placeholders}`, in order."""
    return _PLACEHOLDER.findall(path)


def fill(path: str, **values: object) -> str:
    """The path with each `{name}` replaced by its value, quoted for a URL (`/` included)."""
    missing = set(placeholders(path)) - set(values)
    if missing:
        raise KeyError(f"{path} needs {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: quote(str(values[m.group(1)]), safe=""), path)


def constants() -> dict[str, str]:
    """Every path by its constant's name (what the dashboard's generated module exports)."""
    return {k: v for k, v in globals().items() if k.isupper() and isinstance(v, str) and v.startswith("/")}
