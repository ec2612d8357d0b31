"""A real Celery worker for tests, on the configured Redis broker."""

from contextlib import contextmanager

from celery.contrib.testing.worker import start_worker

from qms.celery import app as celery_app


@contextmanager
def running_worker(queue):
    with start_worker(
        celery_app, queues=[queue], perform_ping_check=True, shutdown_timeout=30
    ) as worker:
        yield worker
