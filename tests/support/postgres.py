"""A real PostgreSQL server for tests: initdb in a temp dir as an unprivileged user, listening on a loopback port.

Debian's `postgresql` package provides the binaries (scripts/install-system-deps.sh installs it). PostgreSQL
refuses to run as root, so when the tests run as root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import ServerProcess, free_port


def pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return []
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh database `kagiya` on a private server; stop and delete it after."""
    with postgres_server_process() as (url, _server):
        yield url


@contextmanager
def postgres_server_process() -> Iterator[tuple[str, ServerProcess]]:
    """Like postgres_server, also yielding the server process so a test can stop() and start() it (an outage)."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/install-system-deps.sh")
    base = Path(tempfile.mkdtemp(prefix="kagiya-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix = _run_as()
    if prefix:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "kagiya", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, env=env,
    )
    port = free_port()
    server = ServerProcess(
        [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sock),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=100"],
        port=port, env=env, log_path=base / "postgres.log",
    )
    server.start()
    try:
        for attempt in range(20):  # the port may open before the server accepts sessions ("starting up")
            done = subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "kagiya", "kagiya"],
                capture_output=True, env=env,
            )
            if done.returncode == 0:
                break
            if attempt == 19:
                done.check_returncode()
            time.sleep(0.1)
        yield f"postgresql+psycopg://kagiya@127.0.0.1:{port}/kagiya", server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def stop_postgres(server: ServerProcess) -> None:
    """Stop the server for real (fast shutdown: sessions are cut, as in an outage) and wait until it is gone;
    `server.start()` brings it back on the same port and data."""
    bindir = pg_bindir()
    assert bindir is not None
    data = server.argv[server.argv.index("-D") + 1]
    subprocess.run([*_run_as(), str(bindir / "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w"],
                   check=True, capture_output=True)
    server.stop()


def reset_database(url: str) -> None:
    """Empty the database at `url` (drop and recreate the public schema), so a test starts from no tables."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
