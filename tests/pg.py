"""A throw-away PostgreSQL server for tests, from the binaries installed on the machine.

``PgServer`` runs ``initdb`` in a fresh temporary directory and starts the server with
``pg_ctl`` on a free loopback port, its unix socket inside that directory, trust authentication
(loopback only), ``pg_stat_statements`` preloaded and ``fsync`` off (the data survive a crash of
the server process, ``stop("immediate")``, not of the machine). PostgreSQL refuses to run as
root, which these machines are: then the server runs as the ``postgres`` system user (created
as ``hft-pg-test`` when missing) through ``runuser``, with the directory handed to it. Clients
(asyncpg, ``psql``) connect as the superuser role ``postgres`` over TCP.

Two test runs on one machine do not collide: ports are picked free (and a start that loses the
race for one retries on another), directories are unique, and every server is stopped when the
process exits, even on failure. A directory left by a process that died without cleaning up
(``kill -9``) is swept by the next ``PgServer``: its owner file names a pid that no longer runs.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PREFIX = "hft-pg-"
SUPERUSER = "postgres"
_LIVE: set[PgServer] = set()


class PgUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine."""


def find_bindir() -> Path:
    """``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin, else /usr/local/bin."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout
            if out.strip():
                candidates.append(Path(out.strip()))

    def version(p: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", Path(p).parent.name)) or (0,)

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    candidates.append(Path("/usr/local/bin"))
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c.resolve() if (c / "postgres").exists() else Path(os.path.realpath(c / "initdb")).parent
    raise PgUnavailable("PostgreSQL binaries (initdb, pg_ctl) not found: install Debian's postgresql package")


def server_user() -> str | None:
    """The OS user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "hft-pg-test"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "hft-pg-test"],
        check=True,
        capture_output=True,
    )
    return "hft-pg-test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PgServer:
    """One PostgreSQL cluster in a temporary directory; ``start()`` before use, ``cleanup()`` after."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.user = server_user()
        _sweep(self.bindir, self.user)
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner").write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.logfile = self.root / "server.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.running = False
        self._initialised = False
        if self.user:
            pw = pwd.getpwnam(self.user)
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o755)  # the owner file stays readable; data/ itself is 0700
        _LIVE.add(self)

    # --- commands ----------------------------------------------------------------------------------
    def _cmd(self, args: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _initdb(self) -> None:
        self._cmd(["initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sock}'",
            "shared_preload_libraries": "'pg_stat_statements'",
            # fsync off only survives a process crash (stop("immediate")), which is what tests do;
            # synchronous_commit stays on: off would lose acknowledged commits in such a crash
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# tests/pg.py\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        self._initialised = True

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> PgServer:
        """Start (initialising on first use); keeps its port across restarts once it has one."""
        if self.running:
            return self
        if not self._initialised:
            self._initdb()
        keep = bool(self.port)
        last = ""
        for _ in range(1 if keep else 5):
            port = self.port if keep else free_port()
            proc = self._cmd(
                [
                    "pg_ctl",
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.logfile),
                    "-o",
                    f"-p {port}",
                ],
                check=False,
            )
            if proc.returncode == 0:
                self.port = port
                self.running = True
                return self
            last = self.log_tail() or proc.stderr
            if "could not bind" not in last and "in use" not in last:
                break  # not a port race: retrying will not help
        raise RuntimeError(f"PostgreSQL did not start: {last.strip()[-800:]}")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (roll back sessions, clean shutdown) or ``immediate`` (like a crash)."""
        if not self.running:
            return
        self._cmd(["pg_ctl", "stop", "-w", "-t", "60", "-D", str(self.data), "-m", mode], check=False)
        self.running = False

    def restart(self) -> None:
        self.stop("fast")
        self.start()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        _LIVE.discard(self)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # --- clients ---------------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres", check: bool = True) -> subprocess.CompletedProcess[str]:
        """``psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p PORT -U postgres -d DB -c SQL`` (as ourselves)."""
        argv = [str(self.bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port)]
        argv += ["-U", SUPERUSER, "-d", dbname, "-c", sql]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc

    def create_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __hash__(self) -> int:
        return id(self)


def _sweep(bindir: Path, user: str | None) -> None:
    """Stop and remove servers whose owning process died without cleaning up."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*")):
        root = Path(d)
        try:
            owner = int((root / "owner").read_text().strip())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        if (root / "data" / "postmaster.pid").exists():
            argv = [str(bindir / "pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate", "-w", "-t", "30"]
            if user:
                argv = ["runuser", "-u", user, "--", *argv]
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(argv, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.cleanup()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout``; True when it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
