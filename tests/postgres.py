"""A throwaway PostgreSQL cluster for the tests: one per test run, a fresh database per test.

The cluster lives in a private temporary directory and listens on a unix socket there only (no
TCP port to collide with anything). PostgreSQL refuses to run as root, so under root (as CI runs)
the server runs as the `postgres` user through `runuser`. Durability is off (fsync, full-page
writes): the data is thrown away at the end.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PORT = 5432  # the socket is in a private directory, so the usual port cannot collide


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: PATH, else the newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PostgresCluster:
    bindir: Path
    root: Path
    run_as: str | None  # the user the server runs as, when we are root
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def _run(self, *args: str) -> None:
        subprocess.run(self._cmd(*args), check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-k {self.socket_dir} -p {PORT} -c listen_addresses='' -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=300"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={PORT}"

    def psql(self, sql: str) -> None:
        subprocess.run(
            self._cmd(
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(PORT),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ),
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def new_database(self) -> str:
        """A fresh, empty database's URL (template0: nothing from other tests)."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)


def start_cluster() -> PostgresCluster | str:
    """A running cluster, or the reason there cannot be one (for a skip message)."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    bindir = find_bindir()
    if bindir is None:
        return "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql)"
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="animerec-pg-"))
    root.chmod(0o700)
    cluster = PostgresCluster(bindir, root, run_as)
    try:
        cluster.start()
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or cluster.log_tail()
        shutil.rmtree(root, ignore_errors=True)
        return f"PostgreSQL did not start: {exc} {detail.strip()[-500:]}"
    return cluster
