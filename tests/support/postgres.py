"""A real PostgreSQL server for the tests, from Debian's packages, in a temporary folder.

``PostgresServer.start`` runs ``initdb`` and ``pg_ctl start`` as an unprivileged user (the
packages' ``postgres`` when the tests run as root), listening on a free port of 127.0.0.1
only, with durability off unless asked for (``durable``: no acknowledged commit lost to an
immediate stop); ``stop`` is ``pg_ctl stop -m fast``. Each test takes a database of its own
(``fresh_database``), dropped when it ends.

Where no server binaries are installed the PostgreSQL tests are skipped, except under CI
(``CI=true``) or with ``LLAMACTL_TEST_POSTGRES=required``, where that is a failure:
``.ci/run`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.net import free_port

__all__ = ["PostgresServer", "find_bindir", "postgres_required"]

USER = "llamactl"  # the server's superuser, trusted on loopback
_RUN_AS = "postgres"  # the packages' system user, when the tests run as root
_START_TIMEOUT = 60


def postgres_required() -> bool:
    """Whether a missing server is a failure rather than a skip."""
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("LLAMACTL_TEST_POSTGRES") == "required"
    )


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb``, or where
    ``pg_ctl`` is on ``PATH``."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@dataclass
class PostgresServer:
    """One server; see the module docstring."""

    root: Path
    bindir: Path
    port: int = 0
    # Commits acknowledged only once their WAL is written, so that a ``pause`` (an
    # immediate stop) loses no acknowledged commit; off, the last ~200 ms may be lost.
    durable: bool = False
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The libpq connection string of ``database`` (for psycopg used directly)."""
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def start(self) -> None:
        self._hand_over(self.root)
        self._run(
            self.bindir / "initdb",
            "-D", str(self.data), "-U", USER, "-A", "trust",
            "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync",
        )  # fmt: skip
        self.port = free_port()
        self.resume()

    def resume(self) -> None:
        """Start the (initialised) server on its port."""
        options = " ".join(
            [
                f"-h 127.0.0.1 -p {self.port} -k {self.root}",
                "-c fsync=off -c full_page_writes=off",
                f"-c synchronous_commit={'on' if self.durable else 'off'}",
                "-c max_connections=200",
            ]
        )
        self._run(
            self.bindir / "pg_ctl",
            "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-w", "-t", str(_START_TIMEOUT), "-o", options, "start",
        )  # fmt: skip

    def pause(self) -> None:
        """Stop the server at once (``-m immediate``: every connection drops, as when its
        machine goes away), keeping its data for ``resume``."""
        self._run(self.bindir / "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(self.bindir / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new, empty database for one test; its name. Dropped afterwards (the
        connections still open to it with it)."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            with psycopg.connect(self.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _hand_over(self, path: Path) -> None:
        """Let the unprivileged user own ``path`` when we are root (``path``'s parent must
        be reachable by it, as ``/tmp`` is)."""
        if os.geteuid() != 0:
            return
        account = pwd.getpwnam(_RUN_AS)
        os.chown(path, account.pw_uid, account.pw_gid)

    def _run(self, program: Path, *args: str) -> None:
        command = [str(program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _RUN_AS, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{self.log()}"
            )


def start_server(*, durable: bool = False) -> PostgresServer:
    """A started server in a new temporary folder; skips (or fails, see ``postgres_required``) when
    there are no server binaries."""
    bindir = find_bindir()
    if bindir is None:
        message = "no PostgreSQL server binaries (Debian: apt-get install postgresql)"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_RUN_AS)
        except KeyError:
            pytest.fail(f"running as root and there is no {_RUN_AS!r} user to run PostgreSQL as")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="llamactl-pg-")), bindir, durable=durable)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
