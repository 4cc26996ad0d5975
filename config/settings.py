"""The one settings module. Everything an operator may change comes from the environment.

With nothing set, the platform runs on a laptop: SQLite and a Celery broker on the
file system (kombu's ``filesystem://`` transport), both under ``IQA_DATA_DIR``.
Set ``DATABASE_URL`` and ``CELERY_BROKER_URL`` for PostgreSQL and Redis.
"""

import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url

from config.storage import default_storage_from_env

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("IQA_DATA_DIR", BASE_DIR / "var")).resolve()


def _secret_key() -> str:
    # No secret lives in the code: an operator sets DJANGO_SECRET_KEY; a laptop gets a
    # random key kept in the data folder so sessions survive a restart.
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Production is a deployment given its secret key (DJANGO_SECRET_KEY) without DEBUG: then
# HTTPS is required (`manage.py check --deploy` is clean; tests/config/test_settings.py)
# and importing the settings writes no file. A laptop (`make run`: no key set) keeps
# plain HTTP on 127.0.0.1. Each setting can be overridden on its own.
PRODUCTION = bool(os.environ.get("DJANGO_SECRET_KEY")) and not DEBUG
# Behind a proxy that terminates TLS: the header it sets, e.g. "X-Forwarded-Proto=https"
# (only when the proxy always sets or overwrites it: a client could send it otherwise).
if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER"):
    _header, _, _value = os.environ["DJANGO_SECURE_PROXY_SSL_HEADER"].partition("=")
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _header.strip().upper().replace("-", "_"),
        _value.strip() or "https",
    )
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
# The health check of a load balancer or of docker compose asks over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", PRODUCTION)
# HTTP Strict Transport Security: browsers refuse plain HTTP to this host (and, with
# INCLUDE_SUBDOMAINS, its subdomains) for this many seconds once they have seen it.
SECURE_HSTS_SECONDS = int(
    os.environ.get("DJANGO_SECURE_HSTS_SECONDS", str(365 * 24 * 3600 if PRODUCTION else 0))
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Asking for the browsers' preload list commits the whole domain to HTTPS for a long time:
# off unless the operator means it (so its check, security.W021, is silenced while off).
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Browsers take scripts and styles only with their declared type; other sites get no
# Referer from here (the annotator page's address carries recruiters' worker ids); no
# page may be framed but the annotator page (MTurk frames it; its view says so, and the
# Content-Security-Policy's frame-ancestors names the MTurk hosts).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens stored as digests, shown once (django-rest-knox).
    "knox",
    # Failed logins counted per username and address, in the database (django-axes).
    "axes",
    "drf_spectacular",
    "annotation",
    "scoring",
    "analysis",
    "dataset",
    "frontend",
    "workspace",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (core/csp.py; views may widen it).
    "core.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers a locked-out login (the login page, the admin's, POST auth/token) with 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if os.environ.get("DATABASE_URL"):
    DATABASES = {
        # A reused connection is checked before each request's first query, so a
        # restarted database costs one failed check, not a failed request per thread.
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"],
            conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
            conn_health_checks=True,
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
        "DB_PREPARED_STATEMENTS", True
    ):
        # Django's own queries bind on the client and are never prepared; this lets the
        # annotator hot path (annotation/services/statements.py) prepare its statements
        # explicitly, so PostgreSQL plans them once per connection. Turn it off behind a
        # pooler in transaction mode that cannot carry prepared statements.
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 10**9)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            # The web server and the worker share one SQLite file; wait for locks.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The researchers' pages log in on the platform's own page (not the admin's).
LOGIN_URL = "workspace:login"
LOGIN_REDIRECT_URL = "workspace:study-list"
LOGOUT_REDIRECT_URL = "workspace:login"

# The platform's address as researchers reach it (``https://iqa.lab.example``): the links
# of password e-mails and invitations use it rather than the request's Host header.
IQA_BASE_URL = os.environ.get("IQA_BASE_URL", "").rstrip("/")

# Password links (reset by e-mail, ``create_researcher --invite``) work once, this long.
PASSWORD_RESET_TIMEOUT = int(float(os.environ.get("IQA_PASSWORD_LINK_DAYS", "3")) * 86400)

# E-mail (password reset links). Without EMAIL_HOST the messages are printed on the web
# process's console (``make run``); with it, sent over SMTP with the EMAIL_* variables.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
# Port 465 is TLS from the start (SSL); any other port STARTTLS unless turned off.
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True) and not EMAIL_USE_SSL
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "iqa-platform@localhost")

# Django's four validators, at least 12 characters (the password change form, reset,
# createsuperuser).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Logins: every authenticate() goes through django-axes first, which counts failures per
# username and client address together: a flood of wrong passwords from one address
# locks that username out from that address only, never the right password from another.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("IQA_LOGIN_FAILURES", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("IQA_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "annotation.throttles.client_address"
AXES_LOCKOUT_CALLABLE = "workspace.access.login_locked_out"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# WhiteNoise serves the apps' static files (the annotator page's ES modules and CSS) from
# where they live as well as from STATIC_ROOT, so a server works without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", DATA_DIR / "static"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("IQA_MEDIA_ROOT", DATA_DIR / "media"))
# The web process serves the image store at MEDIA_URL (set 0 behind a proxy that does).
IQA_SERVE_MEDIA = env_bool("IQA_SERVE_MEDIA", True)
# The files' store: the file system under MEDIA_ROOT, or an S3-compatible bucket with
# IQA_STORAGE_URL=s3://BUCKET/PREFIX (config/storage.py names the variables).
STORAGES = {
    "default": default_storage_from_env(os.environ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Images with more pixels than this are refused at import (decompression bombs).
IQA_MAX_IMAGE_PIXELS = int(os.environ.get("IQA_MAX_IMAGE_PIXELS", str(50_000_000)))
# Imports with at least this many images show a progress bar.
IQA_IMPORT_PROGRESS_MIN = int(os.environ.get("IQA_IMPORT_PROGRESS_MIN", "100"))
# Studies created in the browser or through POST /api/v1/studies: the uploaded zip streams
# to a file in IQA_UPLOAD_DIR (shared by the web server and the workers) and is refused,
# while it streams, above IQA_UPLOAD_MAX_BYTES. A worker unpacks it in IQA_SCRATCH_DIR
# (by default the system's temporary folder, not the data folder with the database: put
# it on a disk of its own), refused above IQA_UPLOAD_MAX_UNCOMPRESSED bytes or
# IQA_UPLOAD_MAX_RATIO times the zip's size, or IQA_UPLOAD_MAX_MEMBERS members (zip
# bombs). Staff may import a folder on the server instead, under IQA_IMPORT_ROOT (unset:
# the option is off).
IQA_UPLOAD_DIR = Path(os.environ.get("IQA_UPLOAD_DIR", DATA_DIR / "uploads"))
IQA_SCRATCH_DIR = Path(
    os.environ.get("IQA_SCRATCH_DIR", Path(tempfile.gettempdir()) / "iqa-scratch")
)
IQA_UPLOAD_MAX_BYTES = int(os.environ.get("IQA_UPLOAD_MAX_BYTES", str(2 * 1024**3)))
IQA_UPLOAD_MAX_UNCOMPRESSED = int(os.environ.get("IQA_UPLOAD_MAX_UNCOMPRESSED", str(4 * 1024**3)))
IQA_UPLOAD_MAX_RATIO = float(os.environ.get("IQA_UPLOAD_MAX_RATIO", "20"))
IQA_UPLOAD_MAX_MEMBERS = int(os.environ.get("IQA_UPLOAD_MAX_MEMBERS", "200000"))
# Background jobs: imports and exports queued or running per researcher (more are
# refused, 429), and the queue imports go to, served by workers of their own, so that
# an export or a report never waits behind another researcher's import ("" : the default
# queue, as one worker serves everything).
IQA_JOBS_PER_RESEARCHER = int(os.environ.get("IQA_JOBS_PER_RESEARCHER", "2"))
IQA_IMPORT_QUEUE = os.environ.get("IQA_IMPORT_QUEUE", "imports")
IQA_IMPORT_ROOT = (
    Path(os.environ["IQA_IMPORT_ROOT"]).resolve() if os.environ.get("IQA_IMPORT_ROOT") else None
)
# Finished export zips (one per export job, <job id>.zip), written by the workers and
# served to those with access to the study: shared by the web server and the workers.
IQA_EXPORT_DIR = Path(os.environ.get("IQA_EXPORT_DIR", DATA_DIR / "exports"))
# Days a finished export's zip is kept; the jobs sweep then removes it (and any zip whose
# job is gone with its study).
IQA_EXPORT_KEEP_DAYS = float(os.environ.get("IQA_EXPORT_KEEP_DAYS", "7"))

# Annotator API: bodies above this size are refused (413); votes per session token.
IQA_API_MAX_BODY_BYTES = int(os.environ.get("IQA_API_MAX_BODY_BYTES", "8192"))
IQA_VOTE_RATE = os.environ.get("IQA_VOTE_RATE", "120/min")
# The public study link: sessions opened and next-trial requests per client address
# (annotation/throttles.py; 429 with Retry-After past them). Only per address: a limit per
# study is one that a few addresses could use up for everyone.
IQA_SESSION_RATE = os.environ.get("IQA_SESSION_RATE", "30/min")
IQA_TRIAL_RATE = os.environ.get("IQA_TRIAL_RATE", "1800/min")
# Password reset e-mails asked for per client address (a flood of them to one inbox).
IQA_PASSWORD_RESET_RATE = os.environ.get("IQA_PASSWORD_RESET_RATE", "5/h")
# Assignment rules 12 and 13 (annotation/services/assignment.py): the sessions of one
# address that may hold pairs before answering (per study, per hold_seconds), and the
# counted answers after which a session holds its pairs whatever its address.
IQA_SHIELDS_PER_ADDRESS = int(os.environ.get("IQA_SHIELDS_PER_ADDRESS", "2"))
# A new study's min_response_ms (assignment rule 14): answers sooner than this after their
# trial's issue, by the server's clock, are kept but not counted.
IQA_MIN_RESPONSE_MS = int(os.environ.get("IQA_MIN_RESPONSE_MS", "400"))
IQA_PROVEN_ANSWERS = int(os.environ.get("IQA_PROVEN_ANSWERS", "5"))
# Reverse proxies in front of the web server that append the client's address to
# X-Forwarded-For (0: none; the client address is REMOTE_ADDR). Throttles count the address
# the outermost trusted proxy saw, never one a client wrote into the header itself.
IQA_TRUSTED_PROXY_COUNT = int(os.environ.get("IQA_TRUSTED_PROXY_COUNT", "0"))
# The study dashboard's vote counts: recomputed when older than REFRESH seconds and votes
# came in since; kept up to HOLD seconds while none did (workspace/dashboard.py).
IQA_DASHBOARD_REFRESH_SECONDS = float(os.environ.get("IQA_DASHBOARD_REFRESH_SECONDS", "10"))
IQA_DASHBOARD_HOLD_SECONDS = float(os.environ.get("IQA_DASHBOARD_HOLD_SECONDS", "120"))

# The throttles count in this cache. Per process by default; with several web
# processes set IQA_CACHE_URL=redis://... so they share one count.
if os.environ.get("IQA_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": os.environ["IQA_CACHE_URL"],
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every throttle's client address (the login's too): see IQA_TRUSTED_PROXY_COUNT.
    "NUM_PROXIES": IQA_TRUSTED_PROXY_COUNT,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # JSON nested at most 64 levels and only storable text (config/parsers.py), forms,
    # and the multipart upload of a study's zip.
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.CheckedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Pages and their scripts use the login session; scripts and notebooks send
        # "Authorization: Token <token>" (created on the account page or POST auth/token;
        # stored as its digest). No HTTP basic auth: a password on every request would
        # be a login that nothing counts.
        "rest_framework.authentication.SessionAuthentication",
        "knox.auth.TokenAuthentication",
    ],
}
# One token per researcher, until replaced or revoked (no expiry).
REST_KNOX = {"TOKEN_TTL": None, "AUTH_HEADER_PREFIX": "Token"}
SPECTACULAR_SETTINGS = {
    "TITLE": "IQA preference annotation API",
    "VERSION": "1",
    # The schema describes the API, not the view that serves the schema.
    "SERVE_INCLUDE_SCHEMA": False,
    # Two "status" choice sets (a study's, a background job's): each its own named enum.
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "annotation.study_settings.StudyStatus",
        "JobStatusEnum": "workspace.models.Job.Status",
    },
}

# Celery. The embedded default needs no server: kombu's file-system transport.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
    }
else:
    # Longer than the longest task, so a slow task is not handed to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(6 * 3600)))
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The database is the source of truth for results; no result backend is needed.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "default")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Publishing fails loudly when the broker is down instead of hanging a request.
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("CELERY_BROKER_CONNECTION_TIMEOUT", "4"))
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Scoring. Pretrained weights live in one folder (PyTorch's TORCH_HOME for the workers);
# nothing is downloaded at run time.
IQA_WEIGHTS_DIR = Path(os.environ.get("IQA_WEIGHTS_DIR", DATA_DIR / "weights"))
# Plug-in metrics: dotted paths to objects with the registry's interface, or paths of
# fusion model files (``manage.py fusion_train``, ending in .json).
IQA_METRIC_PLUGINS = env_list("IQA_METRIC_PLUGINS", "")
# The queue scoring tasks go to ("gpu" where GPU workers serve it); empty: the default queue.
IQA_SCORING_QUEUE = os.environ.get("IQA_SCORING_QUEUE", "")
# Items (images, or image/reference pairs) per scoring task, and per forward pass.
IQA_SCORE_BATCH_ITEMS = int(os.environ.get("IQA_SCORE_BATCH_ITEMS", "64"))
IQA_SCORE_FORWARD_BATCH = int(os.environ.get("IQA_SCORE_FORWARD_BATCH", "16"))
# The memory (MB) a forward pass may add to the worker and the seconds it may take: the
# pass size follows from what the worker's passes of the metric on that image size
# measured, the first one item alone (scoring.engine.pass_size; aims: one item that costs
# more still runs). Each pass's scores are stored when it ends: progress moves that often.
IQA_SCORE_PASS_MEMORY_MB = int(os.environ.get("IQA_SCORE_PASS_MEMORY_MB", "1024"))
IQA_SCORE_PASS_SECONDS = float(os.environ.get("IQA_SCORE_PASS_SECONDS", "5"))
# Metric models a worker process keeps loaded (least recently used ones are dropped).
IQA_WORKER_MAX_MODELS = int(os.environ.get("IQA_WORKER_MAX_MODELS", "4"))
# A worker's images from a bucket are kept in a local cache of at most this many MB,
# least recently used evicted (scoring/image_cache.py); the file system needs none.
IQA_WORKER_CACHE_DIR = Path(os.environ.get("IQA_WORKER_CACHE_DIR", IQA_SCRATCH_DIR / "images"))
IQA_WORKER_CACHE_MB = int(os.environ.get("IQA_WORKER_CACHE_MB", "2048"))
# A batch whose metric a worker cannot run (missing weights, CUDA out of memory, a driver
# error) is retried this many times, waiting BACKOFF, 2 x BACKOFF, ... seconds (at most
# BACKOFF_MAX, with jitter), then marked failed to run (score_study --retry-failed).
IQA_SCORE_MAX_RETRIES = int(os.environ.get("IQA_SCORE_MAX_RETRIES", "5"))
IQA_SCORE_RETRY_BACKOFF = int(os.environ.get("IQA_SCORE_RETRY_BACKOFF", "30"))
IQA_SCORE_RETRY_BACKOFF_MAX = int(os.environ.get("IQA_SCORE_RETRY_BACKOFF_MAX", "600"))
# A batch still pending this long after it was sent is sent again by the sweep.
IQA_SCORE_STALE_SECONDS = int(os.environ.get("IQA_SCORE_STALE_SECONDS", "1800"))
# A running import or export job silent this long has lost its worker: it is failed.
IQA_JOB_STALE_SECONDS = int(os.environ.get("IQA_JOB_STALE_SECONDS", "1800"))
# A running job's worker touches it this often (its sign of life for the sweep).
IQA_JOB_HEARTBEAT_SECONDS = float(os.environ.get("IQA_JOB_HEARTBEAT_SECONDS", "60"))
# An export whose worker stopped this many times is failed, not run again.
IQA_JOB_MAX_ATTEMPTS = int(os.environ.get("IQA_JOB_MAX_ATTEMPTS", "3"))
CELERY_BEAT_SCHEDULE = {
    "scores-sweep": {
        "task": "scoring.sweep",
        "schedule": float(os.environ.get("IQA_SWEEP_EVERY", "300")),
    },
    # Expired trial leases back to the pool; next-trial also sweeps (at most once a
    # second), so this matters when no annotator is asking (annotation/services/assignment.py).
    "leases-sweep": {
        "task": "annotation.leases_sweep",
        "schedule": float(os.environ.get("IQA_LEASE_SWEEP_EVERY", "30")),
    },
    # The throttles' expired counting windows, when they count in the database
    # (annotation/throttles.py).
    "rate-windows-sweep": {
        "task": "annotation.rate_windows_sweep",
        "schedule": float(os.environ.get("IQA_RATE_WINDOW_SWEEP_EVERY", "300")),
    },
    # Files a refused import left in the image store while another import held them
    # (annotation/services/file_claims.py).
    "store-leftovers-sweep": {
        "task": "annotation.store_leftovers_sweep",
        "schedule": float(os.environ.get("IQA_STORE_SWEEP_EVERY", "300")),
    },
    # Import and export jobs whose worker stopped are failed, saying so (workspace/jobs.py).
    "workspace-jobs-sweep": {
        "task": "workspace.jobs_sweep",
        "schedule": float(os.environ.get("IQA_JOB_SWEEP_EVERY", "300")),
    },
    # Active sampling: every actively sampled scene with budget left planned again
    # (plans also follow every sampling_every counted votes: annotation/services/sampling.py).
    "sampling-plans-sweep": {
        "task": "analysis.sampling_plans_sweep",
        "schedule": float(os.environ.get("IQA_SAMPLING_PLAN_EVERY", "30")),
    },
    # Stale agreement snapshots refreshed when nobody has the report page open to ask.
    "agreement-snapshots-sweep": {
        "task": "analysis.agreement_snapshots_sweep",
        "schedule": float(os.environ.get("IQA_AGREEMENT_SWEEP_EVERY", "10")),
    },
}
# The live agreement report: a stale snapshot is refreshed at most once per this many
# seconds (readers and the sweep queue the refresh; a worker computes it).
IQA_AGREEMENT_DEBOUNCE_SECONDS = float(os.environ.get("IQA_AGREEMENT_DEBOUNCE_SECONDS", "2"))
# How often the report page asks for a newer snapshot (a conditional request).
IQA_AGREEMENT_POLL_SECONDS = float(os.environ.get("IQA_AGREEMENT_POLL_SECONDS", "3"))
# While votes arrive the snapshot is the incremental one: point estimates every refresh,
# bootstrap intervals redrawn when this many seconds passed or the votes grew by this
# share since they were drawn (the exact report follows once the votes stop).
IQA_AGREEMENT_INTERVALS_SECONDS = float(os.environ.get("IQA_AGREEMENT_INTERVALS_SECONDS", "60"))
IQA_AGREEMENT_INTERVALS_GROWTH = float(os.environ.get("IQA_AGREEMENT_INTERVALS_GROWTH", "0.05"))
# Bounds on a worker child's leaks (prefork pool): tasks and resident KiB per child.
CELERY_WORKER_MAX_TASKS_PER_CHILD = int(os.environ.get("CELERY_WORKER_MAX_TASKS_PER_CHILD", "500"))
CELERY_WORKER_MAX_MEMORY_PER_CHILD = int(
    os.environ.get("CELERY_WORKER_MAX_MEMORY_PER_CHILD", str(12 * 1024 * 1024))
)
