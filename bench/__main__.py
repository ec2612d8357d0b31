"""`make bench`: measure audited write throughput, scoped list reads and chain verification on a
scratch database (`qms_bench`) of the configured PostgreSQL server; prints one line per figure."""

import os
import statistics
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qms.embedded import ensure_env  # noqa: E402

BENCH_DB = "qms_bench"


def _point_at_bench_database() -> str:
    ensure_env()
    parts = urlsplit(os.environ["DATABASE_URL"])
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    return admin_url


def _recreate(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(
        admin_url.replace("postgres://", "postgresql://", 1), autocommit=True
    ) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{BENCH_DB}"')


def _drop(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(
        admin_url.replace("postgres://", "postgresql://", 1), autocommit=True
    ) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def _report(label: str, value: float, unit: str) -> None:
    print(f"{label:<58} {value:>10.1f} {unit}")


def main() -> None:
    admin_url = _point_at_bench_database()
    _recreate(admin_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qms.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from qms.audit import audit_context, verify_chain
    from sponsors.models import Product, Role
    from sponsors.services import access_grant_create, sponsor_create

    try:
        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        sponsors = [sponsor_create(code=f"s{i}", name=f"Sponsor {i}") for i in range(5)]
        for sponsor in sponsors:
            access_grant_create(user=user, sponsor=sponsor, role=Role.CMO_QA_APPROVER)

        def write(n: int, offset: int) -> None:
            with audit_context(actor=user, reason="bench"):
                for i in range(n):
                    Product.objects.create(
                        sponsor=sponsors[i % 5],
                        code=f"B{offset}-{i}",
                        name=f"Bench {offset}-{i}",
                        regulatory_basis="drug",
                    )
            connections.close_all()

        n = 500
        start = time.perf_counter()
        write(n, 0)
        _report(
            "audited inserts, 1 writer (autocommit)", n / (time.perf_counter() - start), "rows/s"
        )

        threads = [threading.Thread(target=write, args=(200, t + 1)) for t in range(8)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _report("audited inserts, 8 writers", 1600 / (time.perf_counter() - start), "rows/s")

        start = time.perf_counter()
        checked, findings = verify_chain()
        elapsed = time.perf_counter() - start
        _report(f"verify_audit_trail over {checked} events", checked / elapsed, "events/s")
        assert not findings, findings

        client = Client()
        client.force_login(user)
        for url in ("/products/", "/api/v1/products/", "/", "/audit/"):
            timings = []
            for _ in range(20):
                start = time.perf_counter()
                with CaptureQueriesContext(connection) as queries:
                    response = client.get(url, HTTP_HOST="127.0.0.1")
                timings.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            _report(
                f"GET {url} ({Product.objects.count()} products, {len(queries)} queries), median",
                statistics.median(timings),
                "ms",
            )
    finally:
        connections.close_all()
        _drop(admin_url)


if __name__ == "__main__":
    main()
