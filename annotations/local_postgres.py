"""A Postgres server of our own on loopback: for the tests, `memeui bench cluster` and
`memeui cluster up` (production points ``MEMEUI_STORE`` at a managed one instead).

Debian's ``postgresql`` package ships the server binaries; ``pg_ctl`` refuses to run as root,
so as root the server runs as the ``postgres`` user the package creates, in a folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "memeui"  # the role initdb creates (trust auth on loopback: a local throwaway)


def server_binaries() -> Path:
    """The newest installed ``…/postgresql/N/bin`` (or pg_ctl on PATH), or a message saying how
    to install one."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("no Postgres server here: `make setup` installs Debian's postgresql "
                       "(or apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalPostgres:
    """One server in ``folder`` (a new temporary one by default) on ``port`` of 127.0.0.1."""

    def __init__(self, folder: Path | None = None, port: int | None = None) -> None:
        self.bin = server_binaries()
        self.folder = Path(folder or tempfile.mkdtemp(prefix="memeui-postgres-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = self.folder / "data"
        self.port = port or free_port()
        self._as_user = _unprivileged_prefix(self.folder)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as_user, str(self.bin / tool), *args], capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> "LocalPostgres":
        """initdb once, then start and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").is_file():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER,
                      "-E", "UTF8", "--no-instructions")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"),
                  "-w", "-t", "60", "start", timeout=90)
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: as if the server crashed (it recovers
        from its write-ahead log at the next start)."""
        if (self.data / "postmaster.pid").is_file():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", timeout=90)

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()


def _unprivileged_prefix(folder: Path) -> list[str]:
    """Nothing as an ordinary user; as root, run as ``postgres`` and give it the folder."""
    if os.geteuid() != 0:
        return []
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("pg_ctl refuses root, and there is no postgres user to run it as: "
                           "install Debian's postgresql package (it creates one)") from None
    os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(0o700)
    return ["runuser", "-u", "postgres", "--"]
