"""Loaded by pytest before Django: points the run at the embedded servers unless DATABASE_URL
and REDIS_URL are set, so `pytest` alone works like `make test`, and stops at the end of the run
the servers the run started."""

import os
import secrets

from qms import embedded

# xdist workers inherit the controller's environment; only the controller starts and stops.
IS_CONTROLLER = "PYTEST_XDIST_WORKER" not in os.environ
holds_postgres = False
started_redis = False

if IS_CONTROLLER:
    # Keys of this run's own; the suite runs on the development settings (pytest-django still
    # turns DEBUG off while the tests run).
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("SIGNATURE_SEAL_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DEBUG", "1")
    holds_postgres = not os.environ.get("DATABASE_URL")
    started_redis = not os.environ.get("REDIS_URL")
    # A Redis of this run's own, so overlapping runs (or `make run`) never stop each other's.
    embedded.ensure_env(
        redis_rdb=embedded.VAR_DIR / "redis" / f"test-{os.getpid()}.rdb",
        hold_postgres=holds_postgres,
    )
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# One test database per run (xdist workers add their own suffix), so runs can overlap.
os.environ.setdefault("QMS_TEST_DB_SUFFIX", str(os.getpid()))


def pytest_unconfigure(config) -> None:
    """Stop this run's Redis, and the embedded PostgreSQL when this run started it and no other
    run (or `make run`) still holds it."""
    global holds_postgres, started_redis
    if started_redis:
        started_redis = False
        embedded.stop_redis(delete_data=True)
    if holds_postgres:
        holds_postgres = False
        embedded.postgres_release()
