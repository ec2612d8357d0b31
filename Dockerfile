# The production image: gunicorn by default; docker-compose.yml runs the Celery worker and beat
# from the same image. Static files are collected here and served by WhiteNoise under hashed names
# (STATIC_MANIFEST=1).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    WEB_CONCURRENCY=2 \
    STATIC_MANIFEST=1

# WeasyPrint needs Pango (with HarfBuzz subsetting) and at least one font.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin qms

WORKDIR /app
COPY . .
# PYTHONPATH=/app makes the code run from /app, where settings find templates/, static/ and var/;
# the install brings the dependencies.
RUN --mount=type=cache,target=/root/.cache/pip pip install . && rm -rf build *.egg-info

RUN DEBUG=0 \
    SECRET_KEY=build-only-collectstatic-key-not-used-at-run-time-0123456789 \
    SIGNATURE_SEAL_KEY=build-only-collectstatic-key-not-used-at-run-time-0123456789 \
    DATABASE_URL=postgres://build@localhost/build \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput \
    && mkdir -p var/media var/audit-checkpoints \
    && chown -R qms:qms var

USER qms
EXPOSE 8000
CMD ["gunicorn", "qms.wsgi:application", "--bind", "0.0.0.0:8000", "--threads", "4", \
     "--access-logfile", "-"]
