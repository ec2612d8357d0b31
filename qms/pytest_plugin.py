"""Loaded by pytest before Django: points the run at the embedded servers unless DATABASE_URL
and REDIS_URL are set, so `pytest` alone works like `make test`."""

import os

from qms.embedded import VAR_DIR, ensure_env

# A Redis of this run's own, so overlapping runs (or `make run`) never stop each other's.
ensure_env(redis_rdb=VAR_DIR / "redis" / f"test-{os.getpid()}.rdb")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# One test database per run (xdist workers add their own suffix), so runs can overlap.
os.environ.setdefault("QMS_TEST_DB_SUFFIX", str(os.getpid()))
