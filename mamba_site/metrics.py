"""Prometheus metrics. Labels carry routes, model, agent and frontend names and codes: never a key's
secret or any user text; model names outside the catalog count as "other"."""

import functools

from django.conf import settings
from django.urls import Resolver404, resolve
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)

http_requests = Counter(
    "mamba_http_requests_total", "HTTP requests by route, method and status.",
    ("route", "method", "status"),
)  # fmt: skip
http_duration = Histogram(
    "mamba_http_request_duration_seconds",
    "Time until the response started (streams: until the first byte).",
    ("route", "method"),
)
active_streams = Gauge("mamba_active_streams", "Chat streams in progress.")
request_body_bytes_held = Gauge(
    "mamba_request_body_bytes_held",
    "Bytes of request bodies the server process holds, received and not yet answered.",
)
time_to_first_token = Histogram(
    "mamba_time_to_first_token_seconds", "From the request to the model's first output.",
    ("model", "agent"), buckets=LATENCY_BUCKETS,
)  # fmt: skip
stream_duration = Histogram(
    "mamba_stream_duration_seconds", "Whole chat streams.", ("model", "agent", "outcome"),
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
tokens = Counter(
    "mamba_tokens_total", "Tokens by model, agent and direction.", ("model", "agent", "kind")
)
upstream_errors = Counter(
    "mamba_upstream_errors_total", "Failures of the model provider, by our error code.", ("code",)
)
client_disconnects = Counter(
    "mamba_client_disconnects_total", "Streams the client left before the end."
)
rate_limit_rejections = Counter(
    "mamba_rate_limit_rejections_total", "Requests refused by a limit.", ("limit",)
)
auth_failures = Counter("mamba_auth_failures_total", "Failed authentications.", ("reason",))
upstream_requests = Counter(
    "mamba_upstream_requests_total", "Attempts to open a model call, by provider and target.",
    ("provider", "target"),
)  # fmt: skip
upstream_failures = Counter(
    "mamba_upstream_failures_total",
    "Failed model calls by provider, target and kind (status_429, timeout, truncated, ...).",
    ("provider", "target", "kind"),
)
upstream_first_token = Histogram(
    "mamba_upstream_first_token_seconds", "From opening a model call to its first content.",
    ("provider", "target"), buckets=LATENCY_BUCKETS,
)  # fmt: skip
upstream_cooldowns = Counter(
    "mamba_upstream_cooldowns_total", "Times a target was taken out of rotation.",
    ("provider", "target"),
)  # fmt: skip
frontend_requests = Counter(
    "mamba_frontend_requests_total",
    "Requests admitted by a registered frontend's origin, by frontend name and status.",
    ("frontend", "status"),
)
frontend_tokens = Counter(
    "mamba_frontend_tokens_total", "Tokens used by frontends' clients, by frontend name and kind.",
    ("frontend", "kind"),
)  # fmt: skip

# -- Dependencies (Redis, the database) and what the service does while one fails --
dependency_up = Gauge(
    "mamba_dependency_up",
    "1 while this process reaches the dependency; 0 from a failed call until one succeeds.",
    ("dependency",),
)
dependency_errors = Counter(
    "mamba_dependency_errors_total", "Failed calls to a dependency, by operation.",
    ("dependency", "operation"),
)  # fmt: skip
rate_limit_fallbacks = Counter(
    "mamba_rate_limit_fallbacks_total",
    "Limit checks Redis could not answer: counted in this process (local) or refused (closed).",
    ("limit", "mode"),
)
database_calls = Counter(
    "mamba_database_calls_total", "Database calls of the API and background work, by outcome.",
    ("operation", "outcome"),
)  # fmt: skip
database_connections_cut = Counter(
    "mamba_database_connections_cut_total",
    "Database connections cut because a query outlived its deadline (the server did not answer).",
)
cached_table_age = Gauge(
    "mamba_cached_table_age_seconds",
    "Age of the in-process copy of a table (api_keys, agents); +Inf before the first read.",
    ("table",),
)
usage_records_pending = Gauge(
    "mamba_usage_records_pending", "Usage records kept in memory, not yet written."
)
usage_records_written = Counter(
    "mamba_usage_records_written_total", "Usage records written to the database."
)
usage_records_dropped = Counter(
    "mamba_usage_records_dropped_total",
    "Usage records lost: the buffer was full, the key was gone, or the database was down at exit.",
)


def route_of_path(path: str, urlconf: str | None = None) -> str:
    """The URL pattern that serves `path`, as metrics and logs label a request's route."""
    return _route_of_path(path, urlconf or settings.ROOT_URLCONF)


# Bounded: paths are chosen by clients; a miss costs one walk of the URL patterns.
@functools.lru_cache(maxsize=1024)
def _route_of_path(path: str, urlconf: str) -> str:
    try:
        match = resolve(path, urlconf)
    except Resolver404:
        return "unmatched"
    return "/" + match.route if match.route else "unmatched"


# The methods a metric names; any other (a client may send any token) is "other", so that
# clients cannot add series without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str | None) -> str:
    return method if method in METHODS else "other"


def count_refused(method: str, path: str, status: int) -> None:
    """A request answered before Django saw it (a body over the cap, an invalid
    Content-Length, a request not received in time or not valid HTTP), counted as the access
    log counts every other request."""
    http_requests.labels(route_of_path(path), method_label(method), status).inc()
