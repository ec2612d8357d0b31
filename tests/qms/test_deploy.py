"""Production configuration: Django's deployment checks, the compose stack and the beat schedule."""

import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import yaml
from celery.schedules import crontab
from celery.schedules import schedule as celery_schedule
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker", "beat")


def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def app_environment(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in compose()["services"][service]["environment"].items()}


def command_text(service: str) -> str:
    command = compose()["services"][service]["command"]
    return command if isinstance(command, str) else " ".join(command)


def seconds_between_runs(entry_schedule) -> float:
    if isinstance(entry_schedule, int | float):
        return float(entry_schedule)
    if isinstance(entry_schedule, timedelta):
        return entry_schedule.total_seconds()
    if isinstance(entry_schedule, crontab):
        every_minute = entry_schedule.minute == set(range(60))
        every_hour_and_day = entry_schedule.hour == set(range(24))
        return 60.0 if every_minute and every_hour_and_day else float("inf")
    if isinstance(entry_schedule, celery_schedule):
        return entry_schedule.run_every.total_seconds()
    raise AssertionError(f"unknown schedule type {entry_schedule!r}")


def test_deploy_check_passes_without_warnings_in_production_settings():
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "SIGNATURE_SEAL_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "qms.example.com",
    }
    test_only = ("DJANGO_ALLOW_ASYNC_UNSAFE",)
    https = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE")
    for name in (*https, "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS", *test_only):
        env.pop(name, None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in result.stdout, output
    assert "WARNINGS" not in output


def test_compose_defines_the_production_services():
    services = compose()["services"]

    assert set(services) >= {"postgres", "redis", "web", "worker", "beat"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["postgres"]
    assert services["redis"]["image"].startswith("redis:7")


def test_compose_app_services_read_urls_and_secret_key_from_the_environment():
    for service in APP_SERVICES:
        env = app_environment(service)

        assert "${" in env["DATABASE_URL"], service
        assert "${" in env["REDIS_URL"], service
        assert env["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}", service
        assert env["SIGNATURE_SEAL_KEY"] == "${SIGNATURE_SEAL_KEY:?set SIGNATURE_SEAL_KEY}"


def test_compose_keeps_https_redirect_hsts_and_secure_cookies_on():
    for service in APP_SERVICES:
        env = app_environment(service)

        assert env["SECURE_SSL_REDIRECT"] == "${SECURE_SSL_REDIRECT:-1}", service
        assert env["SECURE_HSTS_SECONDS"] == "${SECURE_HSTS_SECONDS:-31536000}", service
        assert env["SESSION_COOKIE_SECURE"] == "1", service
        assert env["CSRF_COOKIE_SECURE"] == "1", service


def test_compose_app_services_run_with_debug_off():
    for service in APP_SERVICES:
        assert app_environment(service)["DEBUG"] == "0", service


def test_compose_web_migrates_before_starting_gunicorn():
    command = command_text("web")

    assert "manage.py migrate --noinput" in command
    assert command.index("migrate") < command.index("gunicorn qms.wsgi:application")


def test_compose_worker_and_beat_run_celery():
    assert "celery -A qms worker" in command_text("worker")
    assert "celery -A qms beat" in command_text("beat")


def test_beat_sends_due_notifications_every_minute():
    entries = [
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "qms.tasks.send_due_notifications"
    ]

    assert len(entries) == 1
    assert seconds_between_runs(entries[0]["schedule"]) == 60.0
