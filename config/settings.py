"""The one settings module. Everything an operator may change comes from the environment.

With nothing set, the platform runs on a laptop: SQLite and a Celery broker on the
file system (kombu's ``filesystem://`` transport), both under ``IQA_DATA_DIR``.
Set ``DATABASE_URL`` and ``CELERY_BROKER_URL`` for PostgreSQL and Redis.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

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

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
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
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60"))
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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

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
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Images with more pixels than this are refused at import (decompression bombs).
IQA_MAX_IMAGE_PIXELS = int(os.environ.get("IQA_MAX_IMAGE_PIXELS", str(50_000_000)))
# Imports with at least this many images show a progress bar.
IQA_IMPORT_PROGRESS_MIN = int(os.environ.get("IQA_IMPORT_PROGRESS_MIN", "100"))

# Annotator API: bodies above this size are refused (413); votes per session token.
IQA_API_MAX_BODY_BYTES = int(os.environ.get("IQA_API_MAX_BODY_BYTES", "8192"))
IQA_VOTE_RATE = os.environ.get("IQA_VOTE_RATE", "120/min")

# The vote throttle counts in this cache. Per process by default; with several web
# processes set IQA_CACHE_URL=redis://... so they share one count.
if os.environ.get("IQA_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["IQA_CACHE_URL"],
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Pages and their scripts use the login session; scripts and notebooks send
        # "Authorization: Token <token>" (created on the account page or POST auth/token).
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "IQA preference annotation API",
    "VERSION": "1",
    # The schema describes the API, not the view that serves the schema.
    "SERVE_INCLUDE_SCHEMA": False,
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
# Plug-in metrics: dotted paths to objects with the registry's interface.
IQA_METRIC_PLUGINS = env_list("IQA_METRIC_PLUGINS", "")
# The queue scoring tasks go to ("gpu" where GPU workers serve it); empty: the default queue.
IQA_SCORING_QUEUE = os.environ.get("IQA_SCORING_QUEUE", "")
# Items (images, or image/reference pairs) per scoring task, and per forward pass.
IQA_SCORE_BATCH_ITEMS = int(os.environ.get("IQA_SCORE_BATCH_ITEMS", "64"))
IQA_SCORE_FORWARD_BATCH = int(os.environ.get("IQA_SCORE_FORWARD_BATCH", "16"))
# Metric models a worker process keeps loaded (least recently used ones are dropped).
IQA_WORKER_MAX_MODELS = int(os.environ.get("IQA_WORKER_MAX_MODELS", "4"))
# A batch still pending this long after it was sent is sent again by the sweep.
IQA_SCORE_STALE_SECONDS = int(os.environ.get("IQA_SCORE_STALE_SECONDS", "1800"))
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
}
# Bounds on a worker child's leaks (prefork pool): tasks and resident KiB per child.
CELERY_WORKER_MAX_TASKS_PER_CHILD = int(os.environ.get("CELERY_WORKER_MAX_TASKS_PER_CHILD", "500"))
CELERY_WORKER_MAX_MEMORY_PER_CHILD = int(
    os.environ.get("CELERY_WORKER_MAX_MEMORY_PER_CHILD", str(12 * 1024 * 1024))
)
