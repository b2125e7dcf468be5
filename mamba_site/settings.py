"""Settings, read from the environment and a .env file (MAMBA_* names; see .env.example)."""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _int_or_none(value: str) -> int | None:
    return int(value) if value.strip() else None


env = environ.FileAwareEnv()
env.prefix = "MAMBA_"

# A `.env` file in the checkout fills in what the environment does not set (the environment
# wins). MAMBA_DOTENV names another file, or none when empty (the tests set it so). The image
# has no .env (.dockerignore).
DOTENV = env.str("DOTENV", default=None)
if DOTENV is None:
    if (BASE_DIR / ".env").is_file():
        env.read_env(BASE_DIR / ".env")
elif DOTENV:
    if not Path(DOTENV).is_file():
        raise ImproperlyConfigured(f"MAMBA_DOTENV={DOTENV}: there is no such file.")
    env.read_env(DOTENV)

DEBUG = env.bool("DEBUG", default=False)
# A development key only when DEBUG is on; production must set MAMBA_SECRET_KEY (or _FILE).
try:
    SECRET_KEY = env.str(
        "SECRET_KEY", default="django-insecure-mamba-dev-only" if DEBUG else environ.Env.NOTSET
    )
except ImproperlyConfigured:
    raise ImproperlyConfigured(
        "Set MAMBA_SECRET_KEY (or MAMBA_SECRET_KEY_FILE): it is required with MAMBA_DEBUG off. "
        "In development, `make run` and `make manage ARGS=...` turn MAMBA_DEBUG on."
    ) from None
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # ServeStatic's configuration checks (its middleware warns at start-up without them).
    "servestatic",
    "corsheaders",
    "mamba_site",
    "agents",
    "chat",
    "health",
]

MIDDLEWARE = [
    "mamba_site.middleware.RequestIdMiddleware",
    "mamba_site.middleware.HostValidationMiddleware",
    "mamba_site.middleware.AccessLogMiddleware",
    # Finds the registered frontend of the request's Origin, for CORS and the auth that follow.
    "mamba_site.middleware.FrontendOriginMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # HTTPS redirect and security headers (Django's SecurityMiddleware, async; see checks.py).
    "mamba_site.security.SecurityMiddleware",
    # Serves the admin's static files under daphne, also with DEBUG off (async-capable).
    "servestatic.middleware.ServeStaticMiddleware",
    # Sessions, users, CSRF and messages serve the admin only: API requests skip them.
    "mamba_site.middleware.AdminSessionMiddleware",
    "mamba_site.middleware.AdminCommonMiddleware",
    "mamba_site.middleware.AdminCsrfViewMiddleware",
    "mamba_site.middleware.AdminAuthenticationMiddleware",
    "mamba_site.middleware.ApiAuthMiddleware",
    "mamba_site.middleware.AdminMessageMiddleware",
    "mamba_site.middleware.AdminXFrameOptionsMiddleware",
]

# Django's deploy checks for these three look for its own middleware by name; ours stand in
# for them, and mamba_site/checks.py checks ours (installed, and the same settings).
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "mamba_site.urls"
ASGI_APPLICATION = "mamba_site.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Connections are not kept per thread (async views use many); PostgreSQL gets a psycopg pool.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Every database call of the API and of background work (mamba_site/db.py) runs on one of this
# many threads of its own, and is given up after the timeout (its connection is then cut).
DATABASE_THREADS = env.int("DATABASE__THREADS", default=8)
DATABASE_TIMEOUT_SECONDS = env.float("DATABASE__TIMEOUT_SECONDS", default=3.0)
# PostgreSQL: the longest a query may run (the server cancels it; the service cuts the
# connection itself when the server does not answer by then). 0: no limit (migrations).
DATABASE_STATEMENT_TIMEOUT_SECONDS = env.float("DATABASE__STATEMENT_TIMEOUT_SECONDS", default=15.0)
# How long the in-process copies of the API keys and the agents are served while the database
# cannot be read (stale-if-error); beyond it, requests that need them get a 503.
DATABASE_STALE_IF_ERROR_SECONDS = env.float("DATABASE__STALE_IF_ERROR_SECONDS", default=900.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    # Every wait on the server has a bound: connecting (libpq counts whole seconds, at least
    # 2), a peer that vanished (keepalives; unacknowledged data: tcp_user_timeout, ms), and
    # each statement (server-side).
    _options.setdefault("connect_timeout", env.int("DATABASE__CONNECT_TIMEOUT_SECONDS", default=3))
    _options.setdefault("keepalives", 1)
    _options.setdefault("keepalives_idle", 10)
    _options.setdefault("keepalives_interval", 5)
    _options.setdefault("keepalives_count", 3)
    _options.setdefault("tcp_user_timeout", 15_000)
    if DATABASE_STATEMENT_TIMEOUT_SECONDS > 0:
        _statement_ms = round(DATABASE_STATEMENT_TIMEOUT_SECONDS * 1000)
        _options["options"] = f"{_options.get('options', '')} -c statement_timeout={_statement_ms}"
    if env.bool("DATABASE__POOL", default=True):
        # mamba_site/db.py adds the pool's connection check (apps.py), which heals the pool
        # after an outage without failing a request.
        _options["pool"] = {
            "min_size": env.int("DATABASE__POOL_MIN_SIZE", default=1),
            "max_size": env.int("DATABASE__POOL_MAX_SIZE", default=10),
            "timeout": env.float(
                "DATABASE__POOL_TIMEOUT_SECONDS", default=DATABASE_TIMEOUT_SECONDS
            ),
            # psycopg_pool retries a failed connection with growing waits (1, 2, 4... s, up
            # to 5 minutes): once the database is back, a call would wait for the next try.
            # Given up after 2 s instead, the next call starts a new try at once.
            "reconnect_timeout": 2.0,
        }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: WAL lets readers go on while a write commits, and a commit is a
    # write to the log instead of an fsync of the database (still durable across a crash of
    # the process; the last commits may be lost if the machine itself goes down).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis, when set, holds the rate-limit counters shared by every replica. No CACHES: nothing
# uses Django's cache (sessions are in the database; agents and keys have their own caches).
REDIS_URL = os.environ.get("REDIS_URL", "")
# Connect and socket timeout of each Redis call (seconds); a call that fails is retried once on
# a fresh connection when the connection broke.
REDIS_TIMEOUT_SECONDS = env.float("REDIS__TIMEOUT_SECONDS", default=0.5)
# After a failure, Redis is asked again after this long (one request asks; the others do not
# wait for it). Meanwhile the limits are counted in this process, or refused (closed).
REDIS_RETRY_SECONDS = env.float("REDIS__RETRY_SECONDS", default=5.0)

# Behind a TLS-terminating ingress: trust its X-Forwarded-Proto, redirect plain HTTP (but not
# the probes and the metrics scrape, which reach the pod directly), secure cookies, HSTS.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("SECURE__PROXY_SSL_HEADER", default=True)
    else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE__SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE__HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE__HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE__COOKIES", default=not DEBUG)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# Without `collectstatic` (development, tests) files are found in the apps directly.
SERVESTATIC_USE_FINDERS = env.bool("STATIC__USE_FINDERS", default=True)

# CORS: the frontend runs on another origin and sends only content-type (and an auth header).
# Besides these, every enabled frontend's origins (the registry, in the admin) are allowed.
CORS_ALLOWED_ORIGINS = env.list(
    "CORS__ALLOWED_ORIGINS", default=["http://localhost:3000", "http://127.0.0.1:3000"]
)
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "x-api-key", "x-request-id")
# A page may read when to try again after a 429, and Mamba's timing.
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "server-timing",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)
CORS_PREFLIGHT_MAX_AGE = 600

# Authentication of every API route but /health, /metrics and /admin/ (which has its login):
# none (development only), or any of api_key, jwt and origin, comma separated (api_key,jwt:
# either credential; origin: a request without credentials from a registered frontend's origin).
AUTH_MODE = env.str("AUTH__MODE", default="none" if DEBUG else "api_key")
AUTH_ALLOW_NONE_IN_PRODUCTION = env.bool("AUTH__ALLOW_NONE_IN_PRODUCTION", default=False)
# How stale the in-process copy of the API keys may be (a revocation elsewhere takes this long).
AUTH_KEY_CACHE_SECONDS = env.float("AUTH__KEY_CACHE_SECONDS", default=5.0)
AUTH_JWT_ALGORITHMS = env.list("AUTH__JWT__ALGORITHMS", default=["RS256"])
AUTH_JWT_SECRET = env.str("AUTH__JWT__SECRET", default="")
AUTH_JWT_PUBLIC_KEY = env.str("AUTH__JWT__PUBLIC_KEY", default="")
AUTH_JWT_JWKS_URL = env.str("AUTH__JWT__JWKS_URL", default="")
AUTH_JWT_JWKS_REFRESH_SECONDS = env.float("AUTH__JWT__JWKS_REFRESH_SECONDS", default=300.0)
# The key set is fetched again at most this often, whatever tokens arrive (an unknown key id,
# a rotation); after failures the interval doubles, up to 5 minutes.
AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = env.float("AUTH__JWT__JWKS_MIN_INTERVAL_SECONDS", default=10.0)
AUTH_JWT_ISSUER = env.str("AUTH__JWT__ISSUER", default="")
AUTH_JWT_AUDIENCE = env.str("AUTH__JWT__AUDIENCE", default="")
AUTH_JWT_LEEWAY_SECONDS = env.int("AUTH__JWT__LEEWAY_SECONDS", default=30)
# Claims that narrow what a token may use, as lists of agent slugs and model names (absent or
# empty: everything), like an API key's scopes.
AUTH_JWT_AGENTS_CLAIM = env.str("AUTH__JWT__AGENTS_CLAIM", default="mamba_agents")
AUTH_JWT_MODELS_CLAIM = env.str("AUTH__JWT__MODELS_CLAIM", default="mamba_models")
# Limits of each JWT subject (API keys carry their own, set in the admin); empty: none.
AUTH_JWT_REQUESTS_PER_MINUTE = _int_or_none(env.str("AUTH__JWT__REQUESTS_PER_MINUTE", default=""))
AUTH_JWT_CONCURRENT_STREAMS = _int_or_none(env.str("AUTH__JWT__CONCURRENT_STREAMS", default=""))
AUTH_JWT_TOKENS_PER_DAY = _int_or_none(env.str("AUTH__JWT__TOKENS_PER_DAY", default=""))

# Who may set X-Forwarded-For: empty (nobody: the peer's address is the client's), a number of
# proxies in front (1: one ingress), or their networks (CIDRs). The client's address keys the
# per-client limits of frontends.
TRUSTED_PROXIES = env.str("TRUSTED_PROXIES", default="")

# The window of the requests-per-minute limits (a constant; tests shorten it).
RATE_LIMIT_WINDOW_SECONDS = 60
# While Redis fails: local (count the same limits in this process: the service stays up, abuse
# stays bounded per replica) or closed (refuse limited requests: 503 RATE_LIMIT_UNAVAILABLE).
LIMITS_ON_REDIS_ERROR = env.str("LIMITS__ON_REDIS_ERROR", default="local")
# A stream's slot is a lease of this many seconds, renewed every quarter of it while the stream
# lives: a process that dies, or a release that fails, frees the slot within this time.
LIMITS_STREAM_LEASE_SECONDS = env.float("LIMITS__STREAM_LEASE_SECONDS", default=60.0)
# Usage records wait in memory (up to this many) while the database cannot take them; they are
# retried with backoff (up to the maximum interval) and flushed at shutdown.
USAGE_BUFFER_RECORDS = env.int("USAGE__BUFFER_RECORDS", default=10_000)
USAGE_RETRY_MAX_SECONDS = env.float("USAGE__RETRY_MAX_SECONDS", default=10.0)
# Records are written this long after the first of them, with those that arrive meanwhile: one
# transaction per moment, not per request (at low load, most of what a request cost).
USAGE_WRITE_DELAY_SECONDS = env.float("USAGE__WRITE_DELAY_SECONDS", default=0.5)


# Providers and model routes: a TOML file (a Kubernetes ConfigMap) naming several
# OpenAI-compatible providers, the targets of each model name and their fallbacks; see the
# README. Without it, the MAMBA_OPENAI__* settings below are one provider named "openai".
PROVIDERS_FILE = env.str("PROVIDERS_FILE", default="")

# The upstream: any OpenAI-compatible Chat Completions API.
OPENAI_API_KEY = env.str("OPENAI__API_KEY", default="") or os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env.str("OPENAI__BASE_URL", default="https://api.openai.com/v1")
OPENAI_DEFAULT_MODEL = env.str("OPENAI__DEFAULT_MODEL", default="gpt-4o")
OPENAI_TIMEOUT_SECONDS = env.float("OPENAI__TIMEOUT_SECONDS", default=60.0)
OPENAI_CONNECT_TIMEOUT_SECONDS = env.float("OPENAI__CONNECT_TIMEOUT_SECONDS", default=10.0)
# How long one attempt may wait for the provider to start answering (the chat's first-byte
# deadline bounds all attempts together).
OPENAI_FIRST_BYTE_TIMEOUT_SECONDS = env.float("OPENAI__FIRST_BYTE_TIMEOUT_SECONDS", default=10.0)
# Retries of the provider before the reply starts (Mamba's loop, within the first-byte deadline;
# the openai SDK's own retries are off).
OPENAI_MAX_RETRIES = env.int("OPENAI__MAX_RETRIES", default=2)
OPENAI_MAX_CONNECTIONS = env.int("OPENAI__MAX_CONNECTIONS", default=200)
# The connection pool under the openai SDK: aiohttp (default; cheaper per request at high
# concurrency) or httpx (httpcore's pool).
OPENAI_HTTP_CLIENT = env.str("OPENAI__HTTP_CLIENT", default="aiohttp")
# Ask for token usage in the stream (`stream_options.include_usage`); turn off for servers
# that reject the option (usage then reads 0).
OPENAI_STREAM_USAGE = env.bool("OPENAI__STREAM_USAGE", default=True)
# The name of the output-token limit: max_tokens (most OpenAI-compatible servers) or
# max_completion_tokens (OpenAI's reasoning models accept only this one).
OPENAI_MAX_TOKENS_PARAM = env.str("OPENAI__MAX_TOKENS_PARAM", default="max_tokens")

# The offline model answers without any key; on by default only in development without a key.
MOCK_MODEL_ENABLED = env.bool("MOCK_MODEL__ENABLED", default=DEBUG and not OPENAI_API_KEY)

# Models: the catalog GET /models lists, and an optional allowlist (empty: any name is passed on).
MODELS_CATALOG = env.json("MODELS__CATALOG", default=[])
MODELS_ALLOWED = env.list("MODELS__ALLOWED", default=[])

# How stale an agent may be on a replica that did not save it (seconds).
AGENTS_CACHE_SECONDS = env.float("AGENTS__CACHE_SECONDS", default=5.0)
# Server tools (search_notes, analyze_complexity): time and output size limits per call.
TOOLS_TIMEOUT_SECONDS = env.float("TOOLS__TIMEOUT_SECONDS", default=10.0)
TOOLS_MAX_OUTPUT_BYTES = env.int("TOOLS__MAX_OUTPUT_BYTES", default=32 * 1024)

CHAT_MAX_STEPS = env.int("CHAT__MAX_STEPS", default=5)
# Any request body over this many bytes is refused with 413 as it arrives (every route).
CHAT_MAX_BODY_BYTES = env.int("CHAT__MAX_BODY_BYTES", default=8 * 1024 * 1024)
# What one JSON body may hold: values and keys (what parsing costs: 413 before parsing), then
# (422) messages, parts per message, characters of text and reasoning in all messages, and how
# deep tool inputs, tool outputs and data parts nest.
CHAT_MAX_JSON_VALUES = env.int("CHAT__MAX_JSON_VALUES", default=100_000)
CHAT_MAX_MESSAGES = env.int("CHAT__MAX_MESSAGES", default=1000)
CHAT_MAX_PARTS_PER_MESSAGE = env.int("CHAT__MAX_PARTS_PER_MESSAGE", default=200)
CHAT_MAX_TEXT_CHARS = env.int("CHAT__MAX_TEXT_CHARS", default=2_000_000)
CHAT_MAX_JSON_DEPTH = env.int("CHAT__MAX_JSON_DEPTH", default=32)
CHAT_IDLE_TIMEOUT_SECONDS = env.float("CHAT__IDLE_TIMEOUT_SECONDS", default=60.0)
CHAT_TOTAL_TIMEOUT_SECONDS = env.float("CHAT__TOTAL_TIMEOUT_SECONDS", default=300.0)
CHAT_KEEPALIVE_SECONDS = env.float("CHAT__KEEPALIVE_SECONDS", default=15.0)
# Every attempt to open a model call (retries, failover, fallbacks) shares this deadline: the
# longest a client waits for the response to start, or for a failed step to find a new target.
CHAT_FIRST_BYTE_TIMEOUT_SECONDS = env.float("CHAT__FIRST_BYTE_TIMEOUT_SECONDS", default=15.0)
# After content was shown, a provider that fails ends the stream with an error; with this on,
# Mamba sends `reset-step` and replays the step on the next target. Needs clients on
# ai >= 7.0.70 (ai 6 rejects the chunk): requests that say they run an older ai never get it.
CHAT_REPLAY_STEP = env.bool("CHAT__REPLAY_STEP", default=False)

# Request bodies above the chat limit are refused with 413 before they are parsed; those below
# stay in memory, never in a temporary file (the pod's /tmp is small).
DATA_UPLOAD_MAX_MEMORY_SIZE = CHAT_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = CHAT_MAX_BODY_BYTES

TITLE_MAX_LENGTH = env.int("TITLE__MAX_LENGTH", default=50)
TITLE_TIMEOUT_MS = env.int("TITLE__TIMEOUT_MS", default=5000)
TITLE_MODEL = env.str("TITLE__MODEL", default="gpt-4o-mini")

LOGGING_LEVEL = env.str("LOGGING__LEVEL", default="INFO").upper()
# json: one object per line (production); text: for reading in a terminal (development).
LOGGING_FORMAT = env.str("LOGGING__FORMAT", default="text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "mamba_site.logs.RequestIdLogFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOGGING_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOGGING_LEVEL},
    "loggers": {
        # Configured here, Django's logger loses its own handlers: with DEBUG on they printed
        # each of its lines a second time, unformatted. Its lines reach the root's handler.
        "django": {"level": "INFO"},
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# GET /metrics (Prometheus): with a token, scrapers send `Authorization: Bearer <token>`;
# without one it is open, so keep the port private (a NetworkPolicy; see k8s/).
METRICS_TOKEN = env.str("METRICS__TOKEN", default="")

# --- Operations: health probes and deployment ---
# /health/ready and /health check the database (every alias), migrations and Redis within
# this timeout each; the upstream (GET {OPENAI_BASE_URL}/models) is checked in the background
# every interval and only its cached result is read. An upstream outage degrades, never fails.
HEALTH_OPENAI_CHECK_ENABLED = env.bool("HEALTH__OPENAI_CHECK_ENABLED", default=True)
HEALTH_CHECK_INTERVAL_SECONDS = env.float("HEALTH__CHECK_INTERVAL_SECONDS", default=30.0)
HEALTH_TIMEOUT_SECONDS = env.float("HEALTH__TIMEOUT_SECONDS", default=3.0)
# /health is public: only with this on does it show the version and why a check failed (the
# upstream's error tells whether the provider takes the gateway's key). The probes stay as is.
HEALTH_DETAILS = env.bool("HEALTH__DETAILS", default=False)
# The version /health reports; empty: the one in pyproject.toml.
VERSION = env.str("VERSION", default="")
# Kubernetes sets the pod's IP (downward API) so that scrapes by pod IP pass the Host check.
POD_IP = env.str("POD_IP", default="")
if POD_IP:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, POD_IP]
# On SIGTERM `python -m mamba_site.serve` stops accepting connections and lets requests (and
# streams) finish for up to this long before it cancels what is left and exits.
SERVER_SHUTDOWN_GRACE_SECONDS = env.float("SERVER__SHUTDOWN_GRACE_SECONDS", default=25.0)
# The request bodies one server process holds at once (received and not yet answered); a
# request whose body goes past it is answered 503 SERVER_BUSY with Retry-After. At least
# CHAT__MAX_BODY_BYTES; 0: no limit.
SERVER_MAX_BODY_BYTES_HELD = env.int("SERVER__MAX_BODY_BYTES_HELD", default=64 * 1024 * 1024)
# A request's head (request line and headers) must arrive within this long of its first byte,
# its body within the second figure of its head; else `408 REQUEST_TIMEOUT` and the connection
# is closed. The connection's idle timeout (60 s) is reset by every byte: a client sending a
# byte at a time would hold a connection, and a body's memory, for as long as it liked.
SERVER_REQUEST_HEAD_TIMEOUT_SECONDS = env.float(
    "SERVER__REQUEST_HEAD_TIMEOUT_SECONDS", default=20.0
)
SERVER_REQUEST_BODY_TIMEOUT_SECONDS = env.float(
    "SERVER__REQUEST_BODY_TIMEOUT_SECONDS", default=60.0
)
# Server processes `python -m mamba_site.serve` starts on the shared socket (one core each);
# `--workers` wins. The Kubernetes Deployment sets it from the container's CPU limit.
SERVER_WORKERS = env.int("SERVER__WORKERS", default=1)
