"""The local PostgreSQL server of the ``postgres`` profile (see :mod:`indexpair.stack.database`).

The machine's own binaries (Debian's ``postgresql``: ``initdb``, ``postgres``) run a cluster
in ``STATE/postgres/data`` with one superuser, ``indexpair``, whose password is generated
at the first start and kept in ``STATE/postgres/password`` (0600): scram-sha-256, not
``trust``, under which any local user could connect as superuser. It listens on 127.0.0.1
only and holds the ``prefect`` and ``mlflow`` databases. PostgreSQL refuses root: run as
root, it runs as ``INDEXPAIR_POSTGRES_OS_USER`` (created if missing), who owns the data dir.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from indexpair.errors import StackError
from indexpair.settings import Settings
from indexpair.stack.service import ServiceSpec

logger = logging.getLogger(__name__)

SUPERUSER = "indexpair"
DATABASES = ("prefect", "mlflow")
HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 3
INITDB_TIMEOUT_S = 180
DEBIAN_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PgServer:
    """Where the local PostgreSQL listens and how to log in (password may be empty)."""

    port: int
    password: str = ""
    user: str = SUPERUSER
    host: str = HOST

    def url(self, database: str, scheme: str = "postgresql") -> str:
        """SQLAlchemy/libpq URL of ``database``, with the password when there is one."""
        login = quote(self.user, safe="")
        if self.password:
            login += ":" + quote(self.password, safe="")
        return f"{scheme}://{login}@{self.host}:{self.port}/{database}"


def home(settings: Settings) -> Path:
    """``STATE/postgres``: the cluster, its password and its port."""
    return settings.state_dir / "postgres"


def data_dir(settings: Settings) -> Path:
    """The PostgreSQL cluster (``PGDATA``)."""
    return home(settings) / "data"


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never wider, whatever the umask), or fail if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def password(settings: Settings) -> str:
    """The superuser's password, generated once and kept with mode 0600."""
    path = home(settings) / "password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(24))
        logger.info("generated the PostgreSQL password in %s", path)
    return stored_password(settings)


def stored_password(settings: Settings) -> str:
    """The password kept in the state dir; empty before the first start."""
    try:
        return (home(settings) / "password").read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port(settings: Settings) -> int:
    """``INDEXPAIR_POSTGRES_PORT``, else the port chosen at the first start (kept)."""
    if settings.postgres_port is not None:
        return settings.postgres_port
    path = home(settings) / "port"
    try:
        return int(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        chosen = _free_port()
    except ValueError as exc:
        raise StackError(f"{path} holds no port number ({exc}); remove it") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(chosen), encoding="ascii")
    return chosen


def server(settings: Settings) -> PgServer:
    """The local server, with the stored password (none before the first start)."""
    return PgServer(port(settings), stored_password(settings))


def find_bin_dir(settings: Settings) -> Path:
    """Folder with ``initdb`` and ``postgres``: the setting, ``pg_config --bindir``, then the
    newest ``/usr/lib/postgresql/*/bin``.

    Raises:
        StackError: None of them has both, naming every folder tried.
    """
    tried: list[Path] = []
    if settings.postgres_bin_dir is not None:
        tried.append(settings.postgres_bin_dir)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        if done.returncode == 0 and done.stdout.strip():
            tried.append(Path(done.stdout.strip()))
    if DEBIAN_ROOT.is_dir():
        versions = [p for p in DEBIAN_ROOT.iterdir() if p.name.isdigit()]
        tried += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    for folder in tried:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return folder
    looked = ", ".join(str(p) for p in tried) or f"no pg_config on PATH, no {DEBIAN_ROOT}"
    raise StackError(
        f"PostgreSQL binaries (initdb, postgres) not found; looked in: {looked}. Install"
        " Debian's `postgresql` package or set INDEXPAIR_POSTGRES_BIN_DIR"
    )


def run_as(settings: Settings, create: bool = True) -> tuple[int, int] | None:
    """(uid, gid) PostgreSQL runs as when we are root; else None.

    Args:
        settings: Names the user (``INDEXPAIR_POSTGRES_OS_USER``).
        create: Create the user when missing; without, a missing user gives None.

    Raises:
        StackError: The user does not exist and could not be created.
    """
    if os.geteuid() != 0:
        return None
    name = settings.postgres_os_user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return None
        entry = _create_user(name)
    return entry.pw_uid, entry.pw_gid


def _create_user(name: str) -> pwd.struct_passwd:
    """Create the system user ``name`` (no home, no login shell)."""
    argv = ["useradd", "--system", "--user-group", "--no-create-home"]
    argv += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    try:
        done = subprocess.run(  # noqa: S603 - argv is built by us, no shell
            argv, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError as exc:
        raise StackError(f"cannot create the user {name!r} for PostgreSQL: {exc}") from exc
    if done.returncode != 0:
        raise StackError(
            f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}; PostgreSQL"
            " refuses to run as root, so it needs that user (INDEXPAIR_POSTGRES_OS_USER)"
        )
    logger.info("created the system user %s to run PostgreSQL", name)
    return pwd.getpwnam(name)


def blocking_dir(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder above ``path`` that user ``uid`` (groups ``gids``) cannot enter."""
    for folder in reversed(path.parents):
        info = folder.stat()
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in gids:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def initialize(settings: Settings) -> None:
    """``initdb`` the cluster on the first start, as the user it will run as (created if
    missing when we are root); nothing when it exists.

    Raises:
        StackError: The data dir is unusable or ``initdb`` failed (its output quoted).
    """
    data = data_dir(settings)
    if (data / "PG_VERSION").is_file():
        return
    if data.exists() and any(data.iterdir()):
        raise StackError(f"{data} is neither empty nor a PostgreSQL cluster; move it away")
    initdb = find_bin_dir(settings) / "initdb"
    owner = run_as(settings)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = password(settings)
    pwfile = home(settings) / "initdb.pw"
    pwfile.unlink(missing_ok=True)
    _write_private(pwfile, secret + "\n")
    if owner is not None:
        blocked = blocking_dir(data, owner[0], {owner[1], *os.getgrouplist(
            settings.postgres_os_user, owner[1])})  # fmt: skip
        if blocked is not None:
            pwfile.unlink()
            raise StackError(
                f"PostgreSQL runs as {settings.postgres_os_user!r} (it refuses root), who cannot"
                f" enter {blocked} (mode {stat.filemode(blocked.stat().st_mode)}); choose an"
                " INDEXPAIR_STATE_DIR that user can reach, or `chmod o+x` that folder"
            )
        for path in (data, pwfile):
            os.chown(path, *owner)
    argv = [str(initdb), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}"]
    argv += ["--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8"]
    argv += ["--no-locale", "--no-instructions"]
    try:
        done = subprocess.run(  # noqa: S603 - argv is built by us, no shell
            argv, capture_output=True, text=True, timeout=INITDB_TIMEOUT_S, check=False,
            user=owner[0] if owner else None, group=owner[1] if owner else None,
            extra_groups=[] if owner else None, cwd=home(settings),
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise StackError(f"`{' '.join(argv)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    logger.info("initialized the PostgreSQL cluster in %s", data)


def postgres_argv(settings: Settings) -> list[str]:
    """The server's command line: loopback TCP only, no Unix socket."""
    return [
        str(find_bin_dir(settings) / "postgres"),
        "-D", str(data_dir(settings)),
        "-p", str(port(settings)),
        "-c", f"listen_addresses={HOST}",
        "-c", "unix_socket_directories=",
    ]  # fmt: skip


def _connect(settings: Settings, database: str = "postgres") -> Any:
    import psycopg2

    pg = server(settings)
    return psycopg2.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=database,
        connect_timeout=CONNECT_TIMEOUT_S,
    )  # fmt: skip


def healthy(settings: Settings) -> bool:
    """Whether the server accepts a login and answers a query."""
    import psycopg2

    try:
        with closing(_connect(settings)) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return bool(cur.fetchone())
    except psycopg2.Error as exc:
        logger.debug("postgres not healthy yet: %s", exc)
        return False


def ensure_databases(settings: Settings) -> list[str]:
    """Create the ``prefect`` and ``mlflow`` databases that are missing; return those made."""
    from psycopg2 import sql

    made = []
    with closing(_connect(settings)) as conn:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    made.append(name)
    if made:
        logger.info("created the PostgreSQL database(s) %s", ", ".join(made))
    return made


def postgres_spec(settings: Settings, project_dir: Path) -> ServiceSpec:
    """The PostgreSQL service: its command line, the user it runs as, its health check."""
    pg = server(settings)
    return ServiceSpec(
        name="postgres",
        argv=postgres_argv(settings),
        make_env=lambda: dict(os.environ),
        port=pg.port,
        url=PgServer(pg.port).url("postgres"),  # no password: what status shows
        startup_timeout_s=60,
        healthy=lambda _started: healthy(settings),
        database=str(data_dir(settings)),
        run_as=run_as(settings, create=False),  # `up` creates it, `status` does not
    )
