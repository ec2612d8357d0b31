"""Gapless yearly record numbers (DEV-2026-0007, CAPA-2026-0003)."""

from django.db import connection


def next_number(queryset, prefix: str) -> str:
    """The next `<prefix>NNNN` after the highest `number` in `queryset` starting with `prefix`.
    Call inside the transaction that saves the record: an advisory lock on the prefix makes
    concurrent callers wait, and a rolled-back caller leaves no gap."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [prefix])
    last = (
        queryset.filter(number__startswith=prefix)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )
    return f"{prefix}{int(last[len(prefix) :]) + 1 if last else 1:04d}"
