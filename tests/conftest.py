import uuid

import pytest
from django.core.cache import cache

from qms.celery import app as celery_app
from sponsors.models import Role
from tests.factories import PASSWORD, ProductFactory, SponsorFactory, make_user


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def password():
    return PASSWORD


@pytest.fixture
def sponsor_a(db):
    return SponsorFactory(code="alpha", name="Alpha Therapeutics")


@pytest.fixture
def sponsor_b(db):
    return SponsorFactory(code="zzother", name="ZZOTHER Biologics")


@pytest.fixture
def product_a(sponsor_a):
    return ProductFactory(sponsor=sponsor_a, code="ALP-100", name="Alphacillin 100 mg")


@pytest.fixture
def product_b(sponsor_b):
    return ProductFactory(sponsor=sponsor_b, code="ZZOTHER-1", name="ZZOTHER secret product")


@pytest.fixture
def cmo_staff(sponsor_a):
    return make_user(sponsor=sponsor_a, role=Role.CMO_STAFF, username="staff-a")


@pytest.fixture
def qa_approver(sponsor_a):
    return make_user(sponsor=sponsor_a, role=Role.CMO_QA_APPROVER, username="approver-a")


@pytest.fixture
def auditor_a(sponsor_a):
    return make_user(sponsor=sponsor_a, role=Role.SPONSOR_AUDITOR, username="auditor-a")


@pytest.fixture
def sponsor_approver_a(sponsor_a):
    return make_user(sponsor=sponsor_a, role=Role.SPONSOR_APPROVER, username="sp-approver-a")


@pytest.fixture
def superuser(db):
    return make_user(username="root", is_superuser=True, is_staff=True)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _audit_checkpoints_in_tmp(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "audit-checkpoints"


@pytest.fixture
def celery_queue(transactional_db):
    """A queue of its own on the configured Redis broker, so parallel test processes and a
    running `make run` never take each other's tasks."""
    import celery.contrib.testing.tasks  # noqa: F401 (registers celery.ping for the ping check)

    queue = f"qms-test-{uuid.uuid4().hex[:12]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.conf.task_default_queue = previous
        with celery_app.connection_for_write() as conn:
            bound = celery_app.amqp.queues[queue].bind(conn.default_channel)
            bound.declare()
            bound.delete()
