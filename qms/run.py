"""`make run`: generate the keys under var/ once, start the embedded servers, migrate, load the
demo data, then supervise the Celery worker, Celery beat and gunicorn until Ctrl-C or SIGTERM.
DEBUG is off unless DEBUG=1."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

from qms import embedded

SPONSOR_CODES = ("acme", "borealis", "cygnus", "draco", "eos")
STOP_TIMEOUT = 20.0
READY_TIMEOUT = 60.0


class SupervisorError(Exception):
    pass


def port_is_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def web_answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("HEAD", "/admin/login/")
        connection.getresponse()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def manage(*args: str) -> list[str]:
    return [sys.executable, str(embedded.BASE_DIR / "manage.py"), *args]


def child_commands(host: str, port: int) -> dict[str, list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "qms"]
    return {
        "worker": [*celery, "worker", "--loglevel=INFO", "--concurrency=2"],
        "beat": [
            *celery,
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(embedded.VAR_DIR / "celerybeat-schedule"),
        ],
        "web": [
            sys.executable,
            "-m",
            "gunicorn",
            "qms.wsgi:application",
            "--bind",
            f"{host}:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--graceful-timeout",
            "10",
            "--access-logfile",
            "-",
        ],
    }


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 (names, not a bind)
# Plain HTTP on a loopback address: no HTTPS redirect, HSTS or secure-only cookies, and mail to
# the console; production (docker-compose.yml) keeps the settings' defaults.
LOCAL_QUICK_START_ENV = {
    "SECURE_SSL_REDIRECT": "0",
    "SECURE_HSTS_SECONDS": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
}


def child_environment(host: str, base: dict[str, str]) -> dict[str, str]:
    """The environment of the manage.py steps, the Celery worker and beat and gunicorn: `base`
    with the hosts the quick start serves and, on a loopback address, the plain-HTTP defaults.
    Variables already set in `base` win. DEBUG stays off unless `base` sets DEBUG=1; the keys
    are read from var/ (see `embedded.ensure_keys`)."""
    env = dict(base)
    env.setdefault("DJANGO_SETTINGS_MODULE", "qms.settings")
    served = ["127.0.0.1", "localhost"]
    if host not in (*WILDCARD_HOSTS, *served):
        served.append(f"[{host}]" if ":" in host else host)
    if not env.get("ALLOWED_HOSTS"):
        env["ALLOWED_HOSTS"] = ",".join(served)
    if host in LOOPBACK_HOSTS:
        for name, value in LOCAL_QUICK_START_ENV.items():
            if not env.get(name):
                env[name] = value
    return env


def banner(url: str, password: str, seconds: float) -> str:
    auditors = ", ".join(f"{code}-auditor" for code in SPONSOR_CODES)
    approvers = ", ".join(f"{code}-approver" for code in SPONSOR_CODES)
    return "\n".join(
        [
            "",
            "=" * 72,
            f"QMS is running at {url}  (ready in {seconds:.1f} s)",
            f"  admin: {url}admin/    sponsor portal: {url}portal/",
            f"Demo logins, password {password!r}:",
            "  CMO staff:          admin, qa, qa-approver, operator",
            f"  sponsor auditors:   {auditors}",
            f"  sponsor approvers:  {approvers}",
            f"Data stays in {embedded.VAR_DIR}. Ctrl-C stops everything.",
            "=" * 72,
            "",
        ]
    )


class Supervisor:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen] = {}
        self.stop_signal: int | None = None

    def on_signal(self, signum: int, frame: object) -> None:
        self.stop_signal = signum

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.children[name] = subprocess.Popen(
            args,
            env=env,
            cwd=embedded.BASE_DIR,
            process_group=0,
            preexec_fn=embedded.set_parent_death_signal,
        )

    def check_children(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise SupervisorError(
                    f"{name} exited unexpectedly with code {child.returncode}; stopping the others"
                )

    def wait_until_web_answers(self, host: str, port: int) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while self.stop_signal is None:
            self.check_children()
            if web_answers(host, port):
                return True
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"web does not answer on {host}:{port} after {READY_TIMEOUT:.0f} s"
                )
            time.sleep(0.2)
        return False

    def wait_for_signal(self) -> None:
        while self.stop_signal is None:
            self.check_children()
            time.sleep(0.5)

    def stop_children(self) -> None:
        running = {name: child for name, child in self.children.items() if child.poll() is None}
        for child in running.values():
            child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, child in running.items():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(
                    f"qms.run: {name} did not stop in {STOP_TIMEOUT:.0f} s, killing it", flush=True
                )
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def main() -> int:
    supervisor = Supervisor()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    started = time.monotonic()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    password = os.environ.get("DEMO_PASSWORD") or "demo-password"
    url = f"http://{host}:{port}/"
    holds_postgres = False
    exit_code = 0
    try:
        if port_is_open(host, port):
            raise SupervisorError(f"{host}:{port} is already in use; set PORT to another port")
        embedded.ensure_keys()
        holds_postgres = not os.environ.get("DATABASE_URL")
        embedded.ensure_env(hold_postgres=holds_postgres)
        env = child_environment(host, dict(os.environ))
        steps = (
            manage("migrate", "--noinput"),
            manage("seed_demo"),
            # anchor the audit chain outside the database before anyone works (beat keeps it)
            manage("audit_checkpoint", "--if-moved"),
        )
        for step in steps:
            if supervisor.stop_signal is not None:
                return 0
            embedded.run_checked(step, env)
        for name, args in child_commands(host, port).items():
            supervisor.start(name, args, env)
        if supervisor.wait_until_web_answers(host, port):
            print(banner(url, password, time.monotonic() - started), flush=True)
            supervisor.wait_for_signal()
        print(f"\nqms.run: {signal.Signals(supervisor.stop_signal).name}, stopping", flush=True)
    except SupervisorError as error:
        print(f"qms.run: {error}", file=sys.stderr, flush=True)
        exit_code = 1
    except subprocess.CalledProcessError as error:
        if supervisor.stop_signal is None:
            print(f"qms.run: {' '.join(error.cmd[1:])} failed", file=sys.stderr, flush=True)
            exit_code = 1
    finally:
        if supervisor.children or holds_postgres:
            stopping = time.monotonic()
            supervisor.stop_children()
            if holds_postgres:
                embedded.postgres_release()
            print(f"qms.run: stopped in {time.monotonic() - stopping:.1f} s", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
