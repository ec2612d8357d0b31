"""The world the API fuzz runs against: the isolation matrix's two sponsors with records in
every app, built once per module and rolled back at its end, and an API token per actor."""

from dataclasses import dataclass

import pytest
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from knox.models import AuthToken

from tests.test_isolation import AUDITOR, QA_APPROVER, _build_world

ANONYMOUS = "anonymous"
ACTORS = (ANONYMOUS, QA_APPROVER, AUDITOR)


class InProcessApplication:
    """`qms.wsgi.application` called in the test's own thread and transaction. Django's
    per-request connection housekeeping would close the connection that holds the test
    transaction, so it is held off for the call (Django's test client does the same); an
    unhandled exception is kept so that a 500 comes with its traceback."""

    def __init__(self):
        from qms.wsgi import application

        self.application = application
        self.exceptions = []

    def _record(self, sender, request=None, **kwargs):
        import sys
        import traceback

        self.exceptions.append("".join(traceback.format_exception(*sys.exc_info())))

    def __call__(self, environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        got_request_exception.connect(self._record)
        try:
            response = self.application(environ, start_response)
            try:
                body = b"".join(response)
            finally:
                response.close()
        finally:
            got_request_exception.disconnect(self._record)
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return [body]


@dataclass
class FuzzWorld:
    world: object
    tokens: dict
    path_keys: dict


def _path_keys(world) -> dict:
    """Real values for path parameters, per collection: (collection, parameter) -> values."""
    from batches.models import (
        Batch,
        CleaningRecord,
        Equipment,
        EquipmentUse,
        Lot,
        MasterBatchRecord,
        Material,
        MbrStep,
        Shipment,
    )
    from changecontrol.models import ChangeRequest
    from deviations.models import Capa, Deviation
    from documents.models import Document, DocumentVersion, TrainingRecord
    from qms.models import AuditEvent, Notification
    from sponsors.models import Product, QualityAgreement, Sponsor

    def values(queryset, field, limit=4):
        return [str(v) for v in queryset.order_by("pk").values_list(field, flat=True)[:limit]]

    lots = values(Lot.objects.all(), "lot_number", 6)
    sponsors = values(Sponsor.objects.all(), "code")
    return {
        ("audit-events", "seq"): values(AuditEvent.objects.all(), "seq"),
        ("batches", "number"): values(Batch.objects.all(), "number"),
        ("batches", "use_id"): values(EquipmentUse.objects.all(), "pk"),
        ("batches", "sequence"): sorted(set(values(MbrStep.objects.all(), "sequence"))),
        ("capas", "number"): values(Capa.objects.all(), "number"),
        ("change-requests", "number"): values(ChangeRequest.objects.all(), "number"),
        ("change-requests", "sponsor_code"): sponsors,
        ("deviations", "number"): values(Deviation.objects.all(), "number"),
        ("document-versions", "id"): values(DocumentVersion.objects.all(), "pk"),
        ("documents", "number"): values(Document.objects.all(), "number"),
        ("epcis", "lot_number"): lots,
        ("equipment", "code"): values(Equipment.objects.all(), "code"),
        ("equipment", "cleaning_id"): values(CleaningRecord.objects.all(), "pk"),
        ("lots", "lot_number"): lots,
        ("master-batch-records", "id"): values(MasterBatchRecord.objects.all(), "pk"),
        ("materials", "code"): values(Material.objects.all(), "code"),
        ("notifications", "id"): values(Notification.objects.all(), "pk"),
        ("products", "id"): values(Product.objects.all(), "pk"),
        ("quality-agreements", "id"): values(QualityAgreement.objects.all(), "pk"),
        ("shipments", "id"): values(Shipment.objects.all(), "pk"),
        ("sponsors", "code"): sponsors,
        ("training-records", "id"): values(TrainingRecord.objects.all(), "pk"),
    }


@pytest.fixture(scope="module")
def fuzz_world(django_db_setup, django_db_blocker):
    """Built once per module inside a transaction rolled back at the end; each example runs
    in a savepoint inside it."""
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=fast):
        with transaction.atomic():
            world = _build_world()
            tokens = {
                actor: AuthToken.objects.create(world.users[actor])[1]
                for actor in ACTORS
                if actor != ANONYMOUS
            }
            yield FuzzWorld(world, tokens, _path_keys(world))
            transaction.set_rollback(True)


@pytest.fixture(scope="module")
def in_process_application():
    return InProcessApplication()
