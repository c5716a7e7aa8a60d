"""Settings, read once from the environment at a process's entry point.

`Settings.from_env()` is the only place that reads `os.environ`; a malformed
value fails at start with the variable's name. The table in the README lists
every variable; `SETTINGS` below is that table, in code.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .archives import ArchiveLimits
from .families import NAME as FAMILY_NAME


# The shortest signing key accepted, from ML_SERVER_SECRET or the secret file alike.
MIN_SECRET_BYTES = 16


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _str(name: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{name} is set but empty")
    return raw.strip()


def _tokens(name: str, raw: str) -> tuple[tuple[str, str, str], ...]:
    """`scope:sha256hex[:name]` entries, comma-separated; scopes are `read` and `write`. The name says
    who holds the token (recorded in a model's history); without one, `<scope>-<first 8 hex digits>`."""
    entries = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        scope, _, rest = item.partition(":")
        digest, _, holder = rest.partition(":")
        if scope not in ("read", "write") or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise SettingsError(f"{name}: {item[:12]}… is not `read:<sha256 hex>` or `write:<sha256 hex>` (see `ml-server token`)")
        if holder and not _HOLDER.match(holder):
            raise SettingsError(f"{name}: the name {holder[:40]!r} of a token may hold letters, digits and . _ @ - only")
        entries.append((scope, digest.lower(), holder or f"{scope}-{digest[:8].lower()}"))
    return tuple(entries)


_HOLDER = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def _level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"{name}={raw!r} is not a log level")
    return level


def _log_format(name: str, raw: str) -> str:
    fmt = raw.strip().lower()
    if fmt not in ("text", "json"):
        raise SettingsError(f"{name}={raw!r} is not a log format (use text or json)")
    return fmt


def _names(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated family names (`logreg,nn`); empty: none."""
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    bad = [n for n in names if not FAMILY_NAME.match(n)]
    if bad:
        raise SettingsError(f"{name}: {bad[0]!r} is not a family name (lower-case letters, digits, - and _)")
    return names


def _broker_urls(name: str, raw: str) -> str:
    """One AMQP URL, or several (the nodes of a cluster), comma-separated."""
    from .brokers import BrokerURLError, split

    try:
        return ",".join(split(raw))
    except BrokerURLError as e:
        raise SettingsError(f"{name}: {e}") from None


def _choice(*values: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in values:
            raise SettingsError(f"{name}={raw!r} is not one of {', '.join(values)}")
        return value

    return parse


def _port(name: str, raw: str) -> int:
    value = _int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name}={raw!r} is not a port number")
    return value


# attribute: (environment variable, parser, default as text or None, description)
SETTINGS: dict[str, tuple[str, Callable[[str, str], Any], str | None, str]] = {
    "data_dir": ("ML_SERVER_DATA_DIR", _str, "./data", "folder for the SQLite store and the generated secret"),
    "broker_url": (
        "ML_SERVER_BROKER_URL",
        _broker_urls,
        "amqp://localhost:5672/",
        "RabbitMQ URL (credentials go here); for a cluster, its nodes' URLs comma-separated: a process connects to "
        "the first that answers and moves to the next when its node is lost",
    ),
    "predict_queue_type": (
        "ML_SERVER_PREDICT_QUEUE_TYPE",
        _choice("auto", "classic", "quorum"),
        "auto",
        "type of the predict queues (train queues are always quorum): `quorum` replicates them over a cluster, "
        "`classic` is the fastest on one node; `auto`: quorum when ML_SERVER_BROKER_URL lists several nodes "
        "(all processes of a deployment must agree)",
    ),
    "database_url": (
        "ML_SERVER_DATABASE_URL",
        _str,
        None,
        "SQLAlchemy URL of the store; default `sqlite:///<data dir>/ml-server.db`; `postgresql://…` for a shared one",
    ),
    "namespace": ("ML_SERVER_NAMESPACE", _str, "ml-server", "prefix of every exchange and queue name"),
    "host": ("ML_SERVER_HOST", _str, "127.0.0.1", "gateway bind address"),
    "port": ("ML_SERVER_PORT", _int, "8080", "gateway port"),
    "max_body": ("ML_SERVER_MAX_BODY", _int, str(256 * 2**20), "largest fit/update body in bytes (413 above)"),
    "max_predict_body": (
        "ML_SERVER_MAX_PREDICT_BODY",
        _int,
        str(64 * 2**20),
        "largest predict body in bytes (413 above); status and delete bodies are capped at 1 MiB",
    ),
    "max_columns": (
        "ML_SERVER_MAX_COLUMNS",
        _int,
        "10000",
        "widest frame accepted, in columns (422 above, refused before the frame is built)",
    ),
    "inline_limit": (
        "ML_SERVER_INLINE_LIMIT",
        _int,
        str(15 * 2**20),
        "training data above this many bytes goes through the store, the message carries its id "
        "(RabbitMQ 4 refuses messages over 16 MiB by default)",
    ),
    "max_train_queue": (
        "ML_SERVER_MAX_TRAIN_QUEUE",
        _int,
        "10000",
        "fit/update jobs a family's train queue holds; beyond it fits get 503 (all consumers of a family must agree)",
    ),
    "max_predict_queue": (
        "ML_SERVER_MAX_PREDICT_QUEUE",
        _int,
        "10000",
        "predicts a family's predict queue holds; beyond it predicts get 503 (all consumers of a family must agree)",
    ),
    "import_max_members": (
        "ML_SERVER_IMPORT_MAX_MEMBERS",
        _int,
        "10000",
        "members an imported skops file (a zip archive) may hold (422 above, refused before one is read)",
    ),
    "import_max_member_bytes": (
        "ML_SERVER_IMPORT_MAX_MEMBER_BYTES",
        _int,
        str(512 * 2**20),
        "bytes one member of an imported skops file may inflate to, as declared and as read (422 above)",
    ),
    "import_max_total_bytes": (
        "ML_SERVER_IMPORT_MAX_TOTAL_BYTES",
        _int,
        str(1024 * 2**20),
        "bytes all members of an imported skops file may inflate to together, as declared (422 above)",
    ),
    "import_max_ratio": (
        "ML_SERVER_IMPORT_MAX_RATIO",
        _int,
        "200",
        "largest compression ratio of a member over 1 MiB in an imported skops file (422 above: a zip bomb)",
    ),
    "import_max_loop_trips": (
        "ML_SERVER_IMPORT_MAX_LOOP_TRIPS",
        _int,
        "100000",
        "iterations a Loop of an imported ONNX graph may run; its trip count must be a constant (422 otherwise)",
    ),
    "import_max_elements": (
        "ML_SERVER_IMPORT_MAX_ELEMENTS",
        _int,
        "10000000",
        "elements (or times the input) an Expand, Tile, ConstantOfShape, Range or OneHot of an imported ONNX graph "
        "may make; their sizes must be constants (422 otherwise)",
    ),
    "predict_timeout": ("ML_SERVER_PREDICT_TIMEOUT", _float, "30", "seconds a predict waits for a consumer (504 after)"),
    "publish_timeout": ("ML_SERVER_PUBLISH_TIMEOUT", _float, "5", "seconds to get a publish confirmed (503 after)"),
    "predict_prefetch": ("ML_SERVER_PREDICT_PREFETCH", _int, "32", "predict messages a consumer takes at once, per family"),
    "families": (
        "ML_SERVER_FAMILIES",
        _names,
        None,
        "families the deployment serves, comma-separated: the gateway's `/readyz` waits for a consumer of each, and "
        "accepts fits for them while their consumers start (`ml-server run` sets it)",
    ),
    "fit_processes": (
        "ML_SERVER_FIT_PROCESSES",
        _int,
        "0",
        "fits a consumer process runs at once, each in a process of its own (0: one per family it serves)",
    ),
    "fit_pool_warm": (
        "ML_SERVER_FIT_POOL_WARM",
        _bool,
        "false",
        "fork a consumer's first fit process as the consumer starts instead of at its first fit (`ml-server run` sets it)",
    ),
    "handover_after": (
        "ML_SERVER_HANDOVER_AFTER",
        _float,
        "900",
        "seconds a fit runs before its consumer makes the job durable in the store, acks the message and holds a "
        "lease instead (keep it well below RabbitMQ's consumer_timeout, 30 min by default)",
    ),
    "lease_seconds": (
        "ML_SERVER_LEASE_SECONDS",
        _float,
        "60",
        "lease of a handed-over fit, renewed every third of it; when it runs out (its consumer died) another "
        "consumer of the family publishes the job again",
    ),
    "batch_max_rows": (
        "ML_SERVER_BATCH_MAX_ROWS",
        _int,
        "10000",
        "the gateway coalesces concurrent predicts for one model into messages of up to this many rows (0 or 1: no coalescing)",
    ),
    "batch_max_wait": (
        "ML_SERVER_BATCH_MAX_WAIT",
        _float,
        "0.005",
        "seconds a predict waits for the model's messages in flight before it is sent anyway",
    ),
    "batch_inflight": (
        "ML_SERVER_BATCH_INFLIGHT",
        _int,
        "2",
        "predict messages per model in flight before further predicts queue up to go together",
    ),
    "predict_deadline": (
        "ML_SERVER_PREDICT_DEADLINE",
        _float,
        "10",
        "seconds an imported model's predict may run in its predict process before that process is killed and the "
        "caller gets a 504 naming the model (keep it below ML_SERVER_PREDICT_TIMEOUT)",
    ),
    "quarantine_after": (
        "ML_SERVER_QUARANTINE_AFTER",
        _int,
        "3",
        "an imported model version whose predicts overran the deadline this many times in a row on one consumer is "
        "quarantined: marked failed, with a history entry, and no longer served (0: never)",
    ),
    "predict_processes": (
        "ML_SERVER_PREDICT_PROCESSES",
        _int,
        "2",
        "processes a consumer runs imported models' predicts in, started with the first such predict",
    ),
    "max_rows": (
        "ML_SERVER_MAX_ROWS",
        _int,
        "10000000",
        "most rows a Parquet body may declare in its footer (413 above, refused before it is decoded)",
    ),
    "max_frame_bytes": (
        "ML_SERVER_MAX_FRAME_BYTES",
        _int,
        str(2**30),
        "most bytes a Parquet body may decode to, from its footer's uncompressed sizes and its rows times the "
        "widths of its fixed-width columns (413 above, refused before it is decoded)",
    ),
    "max_json_frame": (
        "ML_SERVER_MAX_JSON_FRAME",
        _int,
        str(64 * 2**20),
        "longest JSON text of a frame sent as a string inside the JSON body (the seed's `x`), in bytes (413 above, "
        "refused before it is parsed)",
    ),
    "decode_budget": (
        "ML_SERVER_DECODE_BUDGET",
        _int,
        str(512 * 2**20),
        "request body bytes a gateway process reads and decodes at once; requests beyond it get 503 with Retry-After",
    ),
    "max_streams": (
        "ML_SERVER_MAX_STREAMS",
        _int,
        "1000",
        "event streams a gateway process keeps open at once (503 with Retry-After beyond it)",
    ),
    "max_streams_per_client": (
        "ML_SERVER_MAX_STREAMS_PER_CLIENT",
        _int,
        "20",
        "event streams open at once per bearer token (per client address without tokens); 429 beyond it",
    ),
    "stream_queue": (
        "ML_SERVER_STREAM_QUEUE",
        _int,
        "256",
        "events waiting for one stream's reader; a reader that falls this far behind is dropped with a final "
        "`event: dropped` saying why",
    ),
    "secret": (
        "ML_SERVER_SECRET",
        _str,
        None,
        "key that signs stored pickles; required by consumers unless ML_SERVER_SECRET_FILE is set",
    ),
    "secret_file": ("ML_SERVER_SECRET_FILE", _str, None, "file holding the signing key (`make run` generates one)"),
    "log_level": ("ML_SERVER_LOG_LEVEL", _level, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    "log_format": ("ML_SERVER_LOG_FORMAT", _log_format, "text", "`text` lines, or `json`: one JSON object per line"),
    "metrics_port": (
        "ML_SERVER_METRICS_PORT",
        _port,
        "9464",
        "port of a consumer process's Prometheus /metrics (0: none); with `ml-server run --process-per-family` "
        "its consumers get this port + 0, 1, 2, …",
    ),
    "metrics_host": ("ML_SERVER_METRICS_HOST", _str, "127.0.0.1", "bind address of a consumer's /metrics"),
    "tokens": (
        "ML_SERVER_TOKENS",
        _tokens,
        None,
        "bearer tokens the gateway accepts, as `scope:sha256(token)[:name]` entries, comma-separated (`ml-server token` "
        "makes one); the name is recorded in models' history",
    ),
    "allow_unauthenticated": (
        "ML_SERVER_ALLOW_UNAUTHENTICATED",
        _bool,
        "false",
        "let the gateway bind a non-loopback address without tokens",
    ),
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    broker_url: str
    database_url: str
    namespace: str = "ml-server"
    predict_queue_type: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 256 * 2**20
    max_predict_body: int = 64 * 2**20
    max_columns: int = 10_000
    inline_limit: int = 15 * 2**20
    max_train_queue: int = 10_000
    max_predict_queue: int = 10_000
    import_max_members: int = 10_000
    import_max_member_bytes: int = 512 * 2**20
    import_max_total_bytes: int = 1024 * 2**20
    import_max_ratio: int = 200
    import_max_loop_trips: int = 100_000
    import_max_elements: int = 10_000_000
    predict_timeout: float = 30.0
    publish_timeout: float = 5.0
    predict_prefetch: int = 32
    families: tuple[str, ...] = ()
    fit_processes: int = 0
    fit_pool_warm: bool = False
    handover_after: float = 900.0
    lease_seconds: float = 60.0
    batch_max_rows: int = 10_000
    batch_max_wait: float = 0.005
    batch_inflight: int = 2
    predict_deadline: float = 10.0
    quarantine_after: int = 3
    predict_processes: int = 2
    max_rows: int = 10_000_000
    max_frame_bytes: int = 2**30
    max_json_frame: int = 64 * 2**20
    decode_budget: int = 512 * 2**20
    max_streams: int = 1000
    max_streams_per_client: int = 20
    stream_queue: int = 256
    secret: str | None = field(default=None, repr=False)
    secret_file: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    tokens: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)  # (scope, sha256, holder's name)
    allow_unauthenticated: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for attr, (name, parse, default, _) in SETTINGS.items():
            raw = env.get(name, default)
            if raw is not None:
                values[attr] = parse(name, raw)
        secret = values.get("secret")
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(f"ML_SERVER_SECRET is shorter than {MIN_SECRET_BYTES} bytes (a signing key that short can be guessed)")
        data_dir = Path(values.pop("data_dir")).expanduser().resolve()
        database_url = values.pop("database_url", None) or f"sqlite:///{data_dir / 'ml-server.db'}"
        return cls(data_dir=data_dir, database_url=database_url, **values)

    def archive_limits(self) -> ArchiveLimits:
        """The caps on an imported skops file's archive (checked by the gateway and again by the consumer)."""
        return ArchiveLimits(self.import_max_members, self.import_max_member_bytes, self.import_max_total_bytes, self.import_max_ratio)

    def signing_key(self) -> bytes:
        """The key that signs stored pickles; there is no default."""
        if self.secret:
            return self.secret.encode()
        if self.secret_file:
            try:
                key = Path(self.secret_file).read_bytes().strip()
            except OSError as e:
                raise SettingsError(f"ML_SERVER_SECRET_FILE={self.secret_file!r} cannot be read: {e}") from e
            if len(key) < MIN_SECRET_BYTES:
                raise SettingsError(f"ML_SERVER_SECRET_FILE={self.secret_file!r} holds fewer than {MIN_SECRET_BYTES} bytes")
            return key
        raise SettingsError("ML_SERVER_SECRET or ML_SERVER_SECRET_FILE must be set (the key that signs stored models)")


def ensure_secret_file(path: Path) -> Path:
    """Create a random signing key at `path` (mode 0600) unless one is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path
