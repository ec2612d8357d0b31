"""Read-only means read-only: sponsor auditors (and anyone whose grant lapsed) are refused every
write, on every route and with every method, on their own sponsor's records and the other's,
before their input is read; nothing is written and no refusal shows the other sponsor's data.
The routes are those of the isolation matrix, which covers the whole URLconf."""

import pytest
from django.db import transaction
from django.db.models import Max
from django.urls import reverse

from qms.models import AuditEvent
from tests.test_isolation import (  # noqa: F401 (the module-scoped world fixture)
    AUDITOR,
    AUDITOR_EXPIRED,
    OTHER,
    OWN,
    ROUTES,
    _client,
    leaks,
    world,
)

READ_ONLY_ACTORS = (AUDITOR, AUDITOR_EXPIRED)
WRITE_METHODS = ("post", "put", "patch", "delete")
# Signing in and out, and marking one's own notification read, change no record; everything
# else refuses a read-only user.
EXEMPT = {"login", "logout", "api:token", "api:logout", "api:logoutall", "notification-read"}
REFUSED = {403, 404, 405}


def _head() -> int:
    return AuditEvent.objects.aggregate(head=Max("seq"))["head"] or 0


@pytest.mark.parametrize("name", sorted(set(ROUTES) - EXEMPT))
@pytest.mark.django_db
def test_read_only_users_are_refused_every_write(name, world):  # noqa: F811
    route = ROUTES[name]
    failures = []
    for actor in READ_ONLY_ACTORS:
        client = _client(world, actor)
        for side in (OWN, OTHER) if route.args else (OWN,):
            url = reverse(name, args=route.args(world, side, actor) if route.args else [])
            for method in WRITE_METHODS:
                with transaction.atomic():
                    before = _head()
                    response = getattr(client, method)(url, "{}", content_type="application/json")
                    written = _head() != before
                    transaction.set_rollback(True)
                if response.status_code not in REFUSED or written:
                    failures.append(
                        f"{actor} {method.upper()} {url}: {response.status_code}"
                        + (" and the audit trail grew" if written else "")
                    )
                elif leaks(response):
                    failures.append(
                        f"{actor} {method.upper()} {url}: the refusal shows another sponsor's data"
                    )
    assert not failures, "\n".join(failures)
