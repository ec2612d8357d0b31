"""The quick start (`make run`) with production-like settings: DEBUG off, keys generated once
under var/, pages and static files served, the project's own error pages; and the test run
stopping the servers it started."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from qms import embedded, run

BASE_DIR = Path(__file__).resolve().parents[2]
OLD_BUILT_IN_KEY = "insecure-quick-start-key-set-SECRET_KEY-in-production"
# What a developer's shell or this test run may have set; the quick start starts without them.
RUN_ONLY = (
    "DEBUG",
    "SECRET_KEY",
    "SIGNATURE_SEAL_KEY",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "EMAIL_BACKEND",
    "STATIC_MANIFEST",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "QMS_TEST_DB_SUFFIX",
    "PYTEST_XDIST_WORKER",
)


def clean_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in RUN_ONLY}
    env["QMS_VAR_DIR"] = str(var_dir)
    env.update(extra)
    return env


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def create_keys_as_make_run_does(env: dict[str, str]) -> None:
    result = python("from qms import embedded; embedded.ensure_keys()", env)
    assert result.returncode == 0, result.stderr


def settings_keys(env: dict[str, str]) -> dict:
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        "print(json.dumps({'secret': settings.SECRET_KEY, 'seal': settings.SIGNATURE_SEAL_KEY,"
        " 'debug': settings.DEBUG}))"
    )
    result = python(code, {**env, "DJANGO_SETTINGS_MODULE": "qms.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def web(tmp_path):
    """gunicorn started as `make run` starts it, with DEBUG unset."""
    env = run.child_environment("127.0.0.1", clean_env(tmp_path / "var"))
    create_keys_as_make_run_does(env)
    port = free_port()
    child = subprocess.Popen(
        run.child_commands("127.0.0.1", port)["web"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    try:
        deadline = time.monotonic() + 60
        while not run.web_answers("127.0.0.1", port):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "gunicorn did not answer in 60 s"
            time.sleep(0.2)
        yield port
    finally:
        child.terminate()
        child.wait(timeout=30)
        child.stderr.close()


def assert_nothing_internal(body: str) -> None:
    for leak in ("Traceback", "SECRET_KEY", "DATABASES", "settings.py", "Django Version"):
        assert leak not in body


def test_quick_start_serves_the_login_page_and_its_css_with_debug_off(web):
    status, _, body = get(web, "/accounts/login/")

    assert status == 200
    assert 'href="/static/css/qms.css"' in body
    assert get(web, "/static/css/qms.css")[0] == 200
    assert get(web, "/static/admin/css/base.css")[0] == 200
    assert_nothing_internal(body)


def test_missing_page_answers_the_projects_own_404_page(web):
    status, content_type, body = get(web, "/no-such-page/")

    assert status == 404
    assert content_type.startswith("text/html")
    assert "<h1>Not found</h1>" in body
    assert "No such page or record, or not yours to see." in body
    assert_nothing_internal(body)


def test_missing_api_route_answers_error_and_detail_json(web):
    status, content_type, body = get(web, "/api/v1/no-such-route/")

    assert status == 404
    assert content_type == "application/json"
    assert json.loads(body) == {
        "error": "not_found",
        "detail": "No such page or record, or not yours to see.",
    }


def test_server_error_page_shows_nothing_internal(rf):
    from qms.views import handler500

    request = rf.get("/batches/B-1/")

    response = handler500(request)

    assert response.status_code == 500
    assert b"Something went wrong on our side." in response.content
    assert_nothing_internal(response.content.decode())


def test_keys_are_generated_once_kept_private_and_stable_across_starts(tmp_path):
    env = clean_env(tmp_path / "var")

    create_keys_as_make_run_does(env)
    first = settings_keys(env)
    create_keys_as_make_run_does(env)
    second = settings_keys(env)

    assert first == second
    assert first["debug"] is False
    assert first["secret"] not in (OLD_BUILT_IN_KEY, "")
    assert len(first["secret"]) >= 50
    assert first["seal"] != first["secret"]
    for name, key in (("secret_key", first["secret"]), ("signature_seal_key", first["seal"])):
        path = tmp_path / "var" / name
        assert path.read_text().strip() == key
        assert path.stat().st_mode & 0o777 == 0o600


def test_settings_refuse_to_start_without_a_key_when_debug_is_off(tmp_path):
    env = clean_env(tmp_path / "var", DJANGO_SETTINGS_MODULE="qms.settings")

    result = python("from django.conf import settings; settings.SECRET_KEY", env)

    assert result.returncode != 0
    assert "SECRET_KEY is not set: set it in the environment, or run `make run` once" in (
        result.stderr
    )
    assert not (tmp_path / "var" / "secret_key").exists()


def test_debug_settings_without_a_key_generate_one_rather_than_use_a_constant(tmp_path):
    env = clean_env(tmp_path / "var", DEBUG="1")

    keys = settings_keys(env)

    assert keys["secret"] == (tmp_path / "var" / "secret_key").read_text().strip()
    assert keys["secret"] != OLD_BUILT_IN_KEY
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_make_run_serves_plain_http_on_loopback_with_debug_off():
    env = run.child_environment("127.0.0.1", {})

    assert "DEBUG" not in env
    assert env["ALLOWED_HOSTS"] == "127.0.0.1,localhost"
    assert env["SECURE_SSL_REDIRECT"] == "0"
    assert env["SECURE_HSTS_SECONDS"] == "0"
    assert env["SESSION_COOKIE_SECURE"] == env["CSRF_COOKIE_SECURE"] == "0"


def test_make_run_keeps_https_settings_when_serving_beyond_loopback_or_told_so():
    public = run.child_environment("0.0.0.0", {"ALLOWED_HOSTS": "qms.example.com"})  # noqa: S104
    explicit = run.child_environment("127.0.0.1", {"SECURE_SSL_REDIRECT": "1"})

    assert public["ALLOWED_HOSTS"] == "qms.example.com"
    assert "SECURE_SSL_REDIRECT" not in public
    assert explicit["SECURE_SSL_REDIRECT"] == "1"


TINY_TEST = textwrap.dedent(
    """
    def test_nothing():
        pass
    """
)


@pytest.fixture
def pg_var_dir():
    """A scratch var/ for an embedded PostgreSQL, beside the project's var/: the server runs as
    its own user when the tests run as root, and must reach the directory."""
    var_dir = Path(tempfile.mkdtemp(prefix="test-scratch-", dir=embedded.VAR_DIR))
    var_dir.chmod(0o755)
    yield var_dir
    shutil.rmtree(var_dir, ignore_errors=True)


def postmaster_is_live(var_dir: Path) -> bool:
    try:
        pid = int((var_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, psutil.Error):
        return False


def run_tiny_pytest(tmp_path: Path, var_dir: Path) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_tiny.py"
    test_file.write_text(TINY_TEST)
    env = clean_env(var_dir)
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(BASE_DIR / "pyproject.toml"),
            "--rootdir",
            str(BASE_DIR),
            "-p",
            "no:xdist",
            "-q",
            str(test_file),
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_test_run_stops_the_servers_it_started(tmp_path, pg_var_dir):
    var_dir = pg_var_dir

    result = run_tiny_pytest(tmp_path, var_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (var_dir / "pg").is_dir()
    assert not postmaster_is_live(var_dir)
    assert not list((var_dir / "redis").glob("test-*.rdb*"))


def test_test_run_leaves_running_a_server_that_was_running_before(tmp_path, pg_var_dir):
    var_dir = pg_var_dir
    env = clean_env(var_dir)
    started = python("from qms import embedded; embedded.ensure_postgres()", env)
    assert started.returncode == 0, started.stderr
    try:
        result = run_tiny_pytest(tmp_path, var_dir)

        assert result.returncode == 0, result.stdout + result.stderr
        assert postmaster_is_live(var_dir)
    finally:
        python("from qms import embedded; embedded.stop_postgres()", env)
    assert not postmaster_is_live(var_dir)
