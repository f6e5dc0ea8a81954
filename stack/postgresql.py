"""The local PostgreSQL server: Debian's package, our config, data and socket under the stack folder.

The system's service and clusters (``/etc/postgresql``, ``/var/lib/postgresql``)
are never used: ``initdb`` makes a cluster in ``<stack_dir>/postgresql/data``
once, and the server runs as a plain process with the ``postgresql.conf``
and ``pg_hba.conf`` that ``stack up`` renders on every start (port
``RISKSTREAM_POSTGRESQL_PORT``, loopback, its unix socket in
``<stack_dir>/postgresql/socket``). PostgreSQL refuses to run as root, so
when the stack runs as root the server (and ``initdb``) run as the
dedicated system account :data:`SERVER_ACCOUNT`, created if missing, which
owns only the data and socket folders; otherwise as the current user.
That account must be able to enter every folder above them: when the
stack folder sits under one it cannot (``/root`` is mode 0700), the
server's folder (config, data, socket) is one of its own under
:data:`OUTSIDE_ROOT`, named after the stack folder (:func:`server_dir`),
rather than asking anyone to open ``/root`` to others.

Two roles: :data:`ADMIN_USER`, the superuser ``initdb`` makes, reachable
only through the socket (``trust``: entering the socket's folder is the
credential); and the app's (``RISKSTREAM_POSTGRESQL_USER``), with a
SCRAM-SHA-256 password over loopback, ``CONNECT`` and ``TEMPORARY`` on its
database, ``USAGE`` on the schema and ``SELECT``, ``INSERT`` on the table,
nothing else. ``up`` creates the role, database, schema and table as the
admin once the server answers and sets the role's password every time
(as a verifier computed here, so the password never reaches the server or
its log).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from core.settings import Settings
from stack.errors import InstallError, StackError
from stack.installer import ensure_program
from stack.service import (
    PROBE_TIMEOUT_S,
    Launch,
    Listener,
    LocalService,
    RunAs,
    port_answers,
    render_conf,
)
from tables.postgresql import (
    QUALIFIED_LABELS,
    QUALIFIED_TABLE,
    QUALIFIED_VIEW,
    SCHEMA,
    connect,
    prepare_schema,
    quote_identifier,
)

__all__ = [
    "ADMIN_USER",
    "SERVER_ACCOUNT",
    "PostgreSQLService",
    "admin_execute",
    "scram_verifier",
    "socket_dir",
]

logger = logging.getLogger(__name__)

#: The stack's superuser, made by initdb; reachable through the unix socket only.
ADMIN_USER = "postgres"

#: The system account the server runs as when the stack runs as root.
SERVER_ACCOUNT = "riskstream-pg"

#: Where the server's folders go when that account cannot enter the stack folder.
OUTSIDE_ROOT = Path("/var/lib/riskstream-pg")

#: Debian's PostgreSQL 15: the package, and where it puts initdb and postgres.
PACKAGES = ("postgresql-15",)
BIN_DIRS = ("/usr/lib/postgresql/15/bin",)

#: PBKDF2 rounds of the role's SCRAM verifier (PostgreSQL's default).
SCRAM_ITERATIONS = 4096


def server_dir(settings: Settings) -> Path:
    """The folder of the server's config, data and socket.

    ``<stack_dir>/postgresql``, unless the stack runs as root under a
    folder others may not enter: then a folder under :data:`OUTSIDE_ROOT`
    named after the stack folder, so that each stack keeps its own cluster.
    """
    inside = settings.stack_dir.resolve() / "postgresql"
    if os.geteuid() != 0 or _others_may_enter(inside):
        return inside
    digest = hashlib.sha256(str(inside).encode()).hexdigest()[:16]
    return OUTSIDE_ROOT / digest


def _others_may_enter(folder: Path) -> bool:
    """Whether an account that owns none of ``folder``'s existing parents may enter them all."""
    return all(
        parent.stat().st_mode & stat.S_IXOTH
        for parent in folder.parents
        if parent.exists()
    )


def socket_dir(settings: Settings) -> Path:
    """Where the local server's unix socket lives (the admin's way in)."""
    return server_dir(settings) / "socket"


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, 7677).

    Sent instead of the password in ``ALTER ROLE ... PASSWORD``, so that
    the password itself is in no statement, no server memory and no log.
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return (
        f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}"
        f"${b64(stored_key)}:{b64(server_key)}"
    )


async def admin_execute(
    settings: Settings, statements: Sequence[str], database: str = "postgres"
) -> None:
    """Run ``statements`` on the local server as the admin (tests and bench: their own databases)."""
    connection = await connect(
        host=str(socket_dir(settings)),
        port=settings.postgresql_port,
        user=ADMIN_USER,
        password="",
        database=database,
        timeout_s=PROBE_TIMEOUT_S,
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


class PostgreSQLService(LocalService):
    """``postgres`` serving ``127.0.0.1:<postgresql_port>`` and a unix socket in the stack folder."""

    name = "postgresql"
    # SIGTERM is a "smart" shutdown that waits for every client to leave;
    # SIGINT ("fast") rolls back open transactions and exits.
    stop_signal = signal.SIGINT

    def __init__(self, settings: Settings, root: Path) -> None:
        super().__init__(settings, root)
        #: config, data and socket: what the server's account must reach
        self.server_dir = server_dir(settings)
        self.data_dir = self.server_dir / "data"
        self.socket_dir = self.server_dir / "socket"
        self.hba_path = self.server_dir / "pg_hba.conf"
        self.server = "postgres"

    @property
    def config_path(self) -> Path:
        return server_dir(self.settings) / "postgresql.conf"

    @property
    def listeners(self) -> list[Listener]:
        return [
            Listener(
                "client", self.settings.postgresql_port, "RISKSTREAM_POSTGRESQL_PORT"
            )
        ]

    def details(self) -> str:
        return f"socket {self.socket_dir}"

    def run_as(self) -> RunAs | None:
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(SERVER_ACCOUNT)
        except KeyError:
            raise StackError(
                f"the account {SERVER_ACCOUNT} is missing (prepare creates it)"
            ) from None
        return RunAs(SERVER_ACCOUNT, entry.pw_uid, entry.pw_gid)

    async def prepare(self) -> None:
        self.server = await ensure_program("postgres", PACKAGES, BIN_DIRS)
        initdb = await ensure_program("initdb", PACKAGES, BIN_DIRS)
        await _ensure_account()
        account = self.run_as()
        if self.server_dir != self.home:
            OUTSIDE_ROOT.mkdir(mode=0o755, exist_ok=True)
            self.server_dir.mkdir(mode=0o755, exist_ok=True)
            logger.info(
                "postgresql: %s cannot enter the stack folder: its config, data and "
                "socket are in %s",
                SERVER_ACCOUNT,
                self.server_dir,
            )
        if account is not None:
            _check_reachable(self.server_dir, account)
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            if account is not None:
                os.chown(folder, account.uid, account.gid)
        render_conf("pg_hba.conf", self.hba_path, admin=ADMIN_USER)
        render_conf(
            "postgresql.conf",
            self.config_path,
            data_dir=self.data_dir,
            hba_file=self.hba_path,
            port=self.settings.postgresql_port,
            socket_dir=self.socket_dir,
        )
        if not (self.data_dir / "PG_VERSION").exists():
            await self._initdb(initdb, account)

    async def _initdb(self, initdb: str, account: RunAs | None) -> None:
        """Make the cluster once: UTF-8, C locale (present everywhere), superuser ``postgres``."""
        process = await asyncio.create_subprocess_exec(
            initdb,
            f"--pgdata={self.data_dir}",
            f"--username={ADMIN_USER}",
            "--auth=trust",  # its pg_hba.conf is not used: ours is rendered beside it
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            cwd=self.home if account is None else "/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            user=None if account is None else account.uid,
            group=None if account is None else account.gid,
            extra_groups=None if account is None else [],
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise StackError(
                f"initdb of {self.data_dir} failed (code {process.returncode}):\n"
                + output.decode(errors="replace")
            )
        logger.info("initialised PostgreSQL's cluster in %s", self.data_dir)

    def command(self) -> list[str]:
        return [self.server, "-c", f"config_file={self.config_path}"]

    async def answers(self) -> bool:
        if not await port_answers(self.settings.postgresql_port):
            return False
        try:
            connection = await connect(
                host=str(self.socket_dir),
                port=self.settings.postgresql_port,
                user=ADMIN_USER,
                password="",
                database="postgres",
                timeout_s=PROBE_TIMEOUT_S,
            )
        except (asyncpg.PostgresError, OSError, TimeoutError) as error:
            logger.debug("postgresql probe failed: %r", error)
            return False
        try:
            return bool(await connection.fetchval("SELECT 1") == 1)
        except (asyncpg.PostgresError, OSError, TimeoutError) as error:
            logger.debug("postgresql probe failed: %r", error)
            return False
        finally:
            connection.terminate()

    async def wait_ready(self, launch: Launch) -> None:
        """Once it answers, create the app's role, database, schema and table and grant them."""
        await super().wait_ready(launch)
        settings = self.settings
        database, user = settings.postgresql_database, settings.postgresql_user
        try:
            db, role = quote_identifier(database), quote_identifier(user)
        except ValueError as error:
            raise StackError(
                f"RISKSTREAM_POSTGRESQL_DATABASE or _USER: {error}"
            ) from None
        try:
            await self._prepare_database(database, db, user, role)
        except (asyncpg.PostgresError, OSError, TimeoutError) as error:
            raise StackError(
                f"postgresql answers but the app's role or schema could not be set up "
                f"in {database}: {error}"
            ) from None
        logger.info(
            "postgresql: database %s ready for role %s (USAGE on %s, SELECT and INSERT "
            "on %s and %s, SELECT on %s)",
            database,
            user,
            SCHEMA,
            QUALIFIED_TABLE,
            QUALIFIED_LABELS,
            QUALIFIED_VIEW,
        )

    async def _prepare_database(
        self, database: str, db: str, user: str, role: str
    ) -> None:
        app_role = user != ADMIN_USER
        verifier = scram_verifier(self._app_password())
        maintenance: list[str] = []
        admin = await self._admin("postgres")
        try:
            if app_role:
                if not await admin.fetchval(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1", user
                ):
                    maintenance.append(f"CREATE ROLE {role}")
                    await admin.execute(f"CREATE ROLE {role}")
                # Every time: the password may have changed; no other right.
                await admin.execute(
                    f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    f"NOREPLICATION PASSWORD '{verifier}'"
                )
            if not await admin.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", database
            ):
                maintenance.append(f"CREATE DATABASE {db}")
                await admin.execute(f"CREATE DATABASE {db}")
        finally:
            await admin.close()
        in_database = await self._admin(database)
        try:
            maintenance += await prepare_schema(in_database)
            if app_role:
                for grant in (
                    f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                    f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
                    f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC",
                    f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role}",
                    f"REVOKE ALL ON {QUALIFIED_TABLE} FROM {role}",
                    f"GRANT SELECT, INSERT ON {QUALIFIED_TABLE} TO {role}",
                    f"REVOKE ALL ON {QUALIFIED_LABELS}, {QUALIFIED_VIEW} FROM {role}",
                    f"GRANT SELECT, INSERT ON {QUALIFIED_LABELS} TO {role}",
                    f"GRANT SELECT ON {QUALIFIED_VIEW} TO {role}",
                ):
                    await in_database.execute(grant)
        finally:
            await in_database.close()
        for statement in maintenance:
            logger.info("postgresql: %s", statement.splitlines()[0])

    def _app_password(self) -> str:
        """The configured password; with none, one generated once into ``app-password`` (0600).

        PostgreSQL refuses empty passwords, and the app finds this file by
        itself (``RISKSTREAM_POSTGRESQL_PASSWORD_FILE``'s default), so the
        local stack works without a secret being chosen by hand.
        """
        configured = self.settings.postgresql_password.get_secret_value()
        if configured:
            return configured
        path = self.home / "app-password"
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(24) + "\n")
            logger.info("postgresql: generated the app role's password into %s", path)
        return path.read_text().removesuffix("\n")

    async def _admin(self, database: str) -> asyncpg.Connection:
        return await connect(
            host=str(self.socket_dir),
            port=self.settings.postgresql_port,
            user=ADMIN_USER,
            password="",
            database=database,
            timeout_s=PROBE_TIMEOUT_S,
        )


def _check_reachable(folder: Path, account: RunAs) -> None:
    """Fail clearly if ``account`` cannot enter a parent of ``folder`` (PostgreSQL would, obscurely)."""
    for parent in reversed(folder.parents):
        if not parent.exists():
            break
        info = parent.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == account.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise StackError(
                f"PostgreSQL runs as {account.name}, which cannot enter {parent} "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): allow it to (chmod o+x {parent}) "
                "or set RISKSTREAM_STACK_DIR to a folder it can reach"
            )


async def _ensure_account() -> None:
    """As root: create the system account the server runs as, if missing (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(SERVER_ACCOUNT)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    process = await asyncio.create_subprocess_exec(
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "riskstream local PostgreSQL",
        SERVER_ACCOUNT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise InstallError(
            f"cannot create the account {SERVER_ACCOUNT} that PostgreSQL runs as: "
            + output.decode(errors="replace").strip()
        )
    logger.info("created the system account %s for PostgreSQL", SERVER_ACCOUNT)
