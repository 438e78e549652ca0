"""Real servers for integration tests and local development: Apache Kafka (KRaft), PostgreSQL, RTSP.

Each server runs from a private temporary directory on free loopback ports, starts in seconds, and can be
stopped and started again on the same port with the same data (outage tests need that).  Start-up waits
until the server really serves (Kafka: a registered, unfenced broker; PostgreSQL: ``pg_ctl -w``; RTSP:
the server's READY line) and fails with ``ServerError`` carrying the tail of the server's log.  Every
server that is still running when the interpreter exits is stopped and its directory removed.

Needs (see ``.ci/install.sh``): Java 17 plus the jars in ``deploy/kafka/lib`` (maven), Debian's
``postgresql``, and Debian's GStreamer RTSP server with ``/usr/bin/python3`` able to import ``gi``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO_ROOT / "deploy" / "kafka"
RTSP_SCRIPT = REPO_ROOT / "deploy" / "local" / "rtsp_server.py"
HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = float(os.environ.get("AISLEWATCH_SERVER_START_TIMEOUT_S", "60"))


class ServerError(RuntimeError):
    """A local server could not be started or stopped; the message says why and shows its log."""


# -- helpers ---------------------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``port`` (connections lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = HOST, timeout_s: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({path} is empty)"


def _ensure_free(port: int, what: str) -> None:
    if not port_is_free(port):
        raise ServerError(f"{what}: port {HOST}:{port} is already in use by another process")


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process (our own child, by pid), SIGKILL it if it has not exited in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


_LIVE: weakref.WeakSet[_Server] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class _Server:
    """Shared lifecycle: a work directory, start/stop/restart, closing at exit."""

    name = "server"

    def __init__(self, workdir: str | Path | None, start_timeout_s: float, keep: bool) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"aislewatch-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_timeout_s = start_timeout_s
        self.keep = keep
        self.last_start_s: float | None = None
        self._lock = threading.RLock()
        self._closed = False
        _LIVE.add(self)

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory (unless ``keep`` or the caller gave the directory)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.stop()
            finally:
                if self._own_dir and not self.keep:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                _LIVE.discard(self)

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timed_start(self, start: float) -> None:
        self.last_start_s = time.monotonic() - start


# -- Kafka -----------------------------------------------------------------------------------------------


def kafka_lib_dir() -> Path:
    return Path(os.environ.get("AISLEWATCH_KAFKA_LIB", KAFKA_DIR / "lib"))


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what kafka-storage makes),
    never starting with "-", which ``kafka-storage format --cluster-id`` would read as an option (about
    one id in 64 did, and the broker never started)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaServer(_Server):
    """A single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1.

    ``bootstrap`` is ``"127.0.0.1:PORT"``.  ``stop()`` shuts the broker down cleanly, ``kill()`` simulates
    a crash; ``start()`` afterwards brings it back on the same port with the same data.
    """

    name = "kafka"
    JVM_OPTS: tuple[str, ...] = (
        "-Xms64m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-Xss1m",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",
    )

    def __init__(
        self,
        workdir: str | Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        message_max_bytes: int = 2_000_000,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        lib_dir: str | Path | None = None,
        java: str | None = None,
        keep: bool = False,
    ) -> None:
        super().__init__(workdir, start_timeout_s, keep)
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.message_max_bytes = message_max_bytes
        self.lib_dir = Path(lib_dir) if lib_dir else kafka_lib_dir()
        self.java = java or os.environ.get("AISLEWATCH_JAVA") or shutil.which("java") or "java"
        self.config_path = self.workdir / "server.properties"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "server.log"
        self.stdout_path = self.workdir / "stdout.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            self.java,
            *self.JVM_OPTS,
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
            *args,
        ]

    def _check_install(self) -> None:
        if not list(self.lib_dir.glob("kafka_2.13-*.jar")):
            raise ServerError(
                f"Kafka jars are missing from {self.lib_dir}: run "
                "`cd deploy/kafka && mvn -q dependency:copy-dependencies -DoutputDirectory=lib` (or .ci/install.sh)"
            )
        if shutil.which(self.java) is None and not Path(self.java).is_file():
            raise ServerError(
                f"java not found ({self.java}); Kafka needs Java 17+ (apt-get install openjdk-17-jre)"
            )

    def _format(self) -> None:
        template = string.Template((KAFKA_DIR / "server.properties.template").read_text(encoding="utf-8"))
        self.config_path.write_text(
            template.substitute(
                node_id=1,
                port=self.port,
                controller_port=self.controller_port,
                log_dirs=self.data_dir,
                message_max_bytes=self.message_max_bytes,
            ),
            encoding="utf-8",
        )
        cmd = self._java_cmd(
            "kafka.tools.StorageTool", "format", "-t", random_cluster_id(), "-c", str(self.config_path)
        )
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=self.start_timeout_s, check=False
        )
        if result.returncode != 0:
            raise ServerError(
                f"kafka storage format failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self) -> None:
        """Start the broker (formatting its storage the first time) and wait until it serves clients."""
        with self._lock:
            if self.running:
                return
            began = time.monotonic()
            self._check_install()
            if not (self.data_dir / "meta.properties").exists():
                self._format()
            _ensure_free(self.port, "kafka")
            _ensure_free(self.controller_port, "kafka controller")
            self._stdout = open(self.stdout_path, "ab")  # closed in stop()
            self._proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(self.config_path)),
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
            try:
                self._wait_ready(began + self.start_timeout_s)
            except BaseException:
                self._stop_process(kill=True)
                raise
            self._timed_start(began)

    def _wait_ready(self, deadline: float) -> None:
        from common.kafka_bus import open_admin_client

        last_error = "the broker port never opened"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServerError(
                    f"kafka exited with code {self._proc.returncode} while starting\n--- {self.log_path}:\n"
                    f"{log_tail(self.log_path)}\n--- {self.stdout_path}:\n{log_tail(self.stdout_path)}"
                )
            if not port_accepts(self.port):
                time.sleep(0.1)
                continue
            try:
                admin = open_admin_client(  # a failed start leaves no IO thread logging after the tests
                    bootstrap_servers=self.bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=3000
                )
                try:
                    if admin.describe_cluster().get("brokers"):
                        return
                    last_error = "no broker registered yet"
                finally:
                    admin.close()
            except Exception as exc:  # any client error means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise ServerError(
            f"kafka did not become ready on {self.bootstrap} within {self.start_timeout_s:.0f} s "
            f"({last_error})\n--- {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Shut the broker down cleanly (SIGTERM; SIGKILL after ``timeout_s``)."""
        with self._lock:
            self._stop_process(kill=False, timeout_s=timeout_s)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): no controlled shutdown; restart recovers its logs."""
        with self._lock:
            self._stop_process(kill=True)

    def _stop_process(self, kill: bool, timeout_s: float = 30.0) -> None:
        if self._proc is not None:
            if kill and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(timeout=10)
            _terminate(self._proc, timeout_s)
            self._proc = None
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None


# -- PostgreSQL ------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """Directory of initdb/pg_ctl: $AISLEWATCH_PG_BIN, Debian's newest /usr/lib/postgresql/*/bin, or PATH."""
    if env := os.environ.get("AISLEWATCH_PG_BIN"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerError(
        "PostgreSQL is not installed (no initdb): apt-get install postgresql (or .ci/install.sh)"
    )


class PostgresServer(_Server):
    """A throw-away PostgreSQL cluster on 127.0.0.1 with its socket in its own directory.

    The superuser ``postgres`` connects without a password (trust); ``new_database()`` creates a database
    owned by the role ``aislewatch``, which must log in with its password (scram), so the URLs it returns
    carry a real secret.  As root the cluster runs as the ``postgres`` system user (PostgreSQL refuses root).
    """

    name = "postgres"
    USER = "aislewatch"
    SETTINGS: Mapping[str, str] = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
        "max_connections": "200",
        "max_wal_size": "256MB",
        "log_min_messages": "warning",
        "log_min_error_statement": "panic",
        "autovacuum": "off",
        "jit": "off",
    }

    def __init__(
        self,
        workdir: str | Path | None = None,
        port: int | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        keep: bool = False,
    ) -> None:
        super().__init__(workdir, start_timeout_s, keep)
        self.port = port or free_port()
        self.password = uuid.uuid4().hex
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir / "sock"
        self.log_path = self.workdir / "postgres.log"
        self._bin: Path | None = None
        self._run_as: str | None = None
        self._running = False
        self._role_ready = False

    @property
    def running(self) -> bool:
        return self._running and (self.data_dir / "postmaster.pid").exists()

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as superuser."""
        return f"postgresql+psycopg2://postgres@{HOST}:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` as the ``aislewatch`` role, password included (never log it)."""
        return f"postgresql+psycopg2://{self.USER}:{self.password}@{HOST}:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self._run_as, "--", *args] if self._run_as else list(args)

    def _run(self, *args: str, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(*args),
            capture_output=True,
            text=True,
            timeout=timeout_s or self.start_timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def _prepare(self) -> None:
        """Find the binaries and, as root, the user to run as (PostgreSQL refuses to run as root)."""
        self._bin = postgres_bin_dir()
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerError(
                "running as root needs the 'postgres' system user (apt-get install postgresql)"
            ) from None
        self._run_as = "postgres"
        for parent in self.workdir.resolve().parents:
            st = parent.stat()
            if not st.st_mode & 0o001 and st.st_uid != user.pw_uid:
                raise ServerError(
                    f"postgres runs as the 'postgres' user, which cannot enter {parent} (mode "
                    f"{oct(st.st_mode & 0o777)}); put the data directory somewhere it can reach"
                )
        for path in (self.workdir, self.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)

    def _init_cluster(self) -> None:
        assert self._bin is not None
        result = self._run(
            str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
        (self.data_dir / "pg_hba.conf").write_text(
            f"local all all trust\nhost all postgres {HOST}/32 trust\nhost all all {HOST}/32 scram-sha-256\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        """Start the cluster (creating it the first time) and wait until it accepts connections."""
        with self._lock:
            if self.running:
                return
            began = time.monotonic()
            if self._bin is None:
                self._prepare()
            if not (self.data_dir / "PG_VERSION").exists():
                self._init_cluster()
            assert self._bin is not None
            _ensure_free(self.port, "postgres")
            options = " ".join(
                [f"-p {self.port}", f"-k {self.socket_dir}", f"-c listen_addresses={HOST}"]
                + [f"-c {k}={v}" for k, v in self.SETTINGS.items()]
            )
            result = self._run(
                str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options,
                "-w", "-t", str(int(self.start_timeout_s)), "start",
                timeout_s=self.start_timeout_s + 10,
            )  # fmt: skip
            if result.returncode != 0:
                self._running = True  # make stop() try, in case the postmaster is half up
                self._stop("immediate")
                raise ServerError(
                    f"postgres did not start on {HOST}:{self.port} (pg_ctl exit {result.returncode}): "
                    f"{result.stdout.strip()} {result.stderr.strip()}\n--- {self.log_path}:\n{log_tail(self.log_path)}"
                )
            self._running = True
            if not self._role_ready:
                self._create_role()
            self._timed_start(began)

    def _admin_connect(self, database: str = "postgres"):  # type: ignore[no-untyped-def]
        import psycopg2

        conn = psycopg2.connect(
            host=HOST, port=self.port, user="postgres", dbname=database, connect_timeout=10
        )
        conn.autocommit = True
        return conn

    def _create_role(self) -> None:
        conn = self._admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.USER,))
                verb = "ALTER" if cur.fetchone() else "CREATE"  # ALTER: a kept data directory
                cur.execute(f"{verb} ROLE {self.USER} LOGIN CREATEDB PASSWORD %s", (self.password,))
        finally:
            conn.close()
        self._role_ready = True

    def new_database(self, prefix: str = "test", name: str | None = None) -> str:
        """Create an empty database owned by ``aislewatch``; returns its SQLAlchemy URL (with password).

        The name is ``prefix`` plus a random suffix unless ``name`` is given.
        """
        name = name or f"{prefix}_{uuid.uuid4().hex[:12]}"
        conn = self._admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}" OWNER {self.USER}')
        finally:
            conn.close()
        return self.url(name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database made by ``new_database`` (disconnecting its sessions)."""
        name = url_or_name.rsplit("/", 1)[-1]
        conn = self._admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, clean shutdown; ``immediate``: crash-like)."""
        with self._lock:
            self._stop(mode)

    def kill(self) -> None:
        """Crash-like stop; the next start runs crash recovery."""
        self.stop("immediate")

    def _stop(self, mode: str) -> None:
        if not self._running or self._bin is None:
            return
        result = self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            "30",
            "stop",
            timeout_s=40,
        )
        if result.returncode != 0 and "Is server running?" not in result.stderr:
            raise ServerError(f"pg_ctl stop failed: {result.stderr.strip()}\n{log_tail(self.log_path)}")
        self._running = False


# -- RTSP ------------------------------------------------------------------------------------------------

SYSTEM_PYTHON = os.environ.get("AISLEWATCH_GI_PYTHON", "/usr/bin/python3")


class RtspServer(_Server):
    """Serves video files as live looping H.264 RTSP cameras (``rtsp://127.0.0.1:PORT/cam1`` ...).

    Runs ``deploy/local/rtsp_server.py`` with Debian's Python (GStreamer's RTSP server).  With
    ``username``, clients must authenticate (RTSP basic auth); the credentials travel to the server in its
    environment, not its command line.  ``stop()``/``start()`` simulate a camera outage on the same port.
    """

    name = "rtsp"

    def __init__(
        self,
        sources: Mapping[str, str | Path] | Sequence[str | Path],
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        cache_dir: str | Path | None = None,
        size: str | None = None,
        fps: float | None = None,
        workdir: str | Path | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        keep: bool = False,
    ) -> None:
        super().__init__(workdir, start_timeout_s, keep)
        if isinstance(sources, Mapping):
            self.mounts = {str(k).strip("/"): Path(v) for k, v in sources.items()}
        else:
            self.mounts = {f"cam{i}": Path(p) for i, p in enumerate(sources, start=1)}
        if not self.mounts:
            raise ValueError("RtspServer needs at least one video")
        self.port = port or free_port()
        self.username = username
        self.password = password
        self.size = size
        self.fps = fps
        self.cache_dir = Path(cache_dir) if cache_dir else self.workdir / "cache"
        self.log_path = self.workdir / "rtsp.log"
        self.ready_path = self.workdir / "ready.txt"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, mount: str = "cam1", credentials: bool = True) -> str:
        """The stream's URL; with ``credentials`` and a username, ``rtsp://user:password@...``."""
        auth = ""
        if credentials and self.username:
            auth = f"{self.username}:{self.password or ''}@"
        return f"rtsp://{auth}{HOST}:{self.port}/{mount.strip('/')}"

    @property
    def urls(self) -> dict[str, str]:
        """Mount name -> URL (with credentials when the server requires them)."""
        return {name: self.url(name) for name in self.mounts}

    def start(self) -> None:
        """Start serving (transcoding to H.264 first when not cached) and wait until it accepts clients."""
        with self._lock:
            if self.running:
                return
            began = time.monotonic()
            if not Path(SYSTEM_PYTHON).exists():
                raise ServerError(
                    f"{SYSTEM_PYTHON} not found; the RTSP server needs Debian's python3 with gi"
                )
            for name, path in self.mounts.items():
                if not path.is_file():
                    raise ServerError(f"rtsp mount /{name}: no such video file {path}")
            _ensure_free(self.port, "rtsp")
            cmd = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--host", HOST, "--port", str(self.port)]
            cmd += ["--cache-dir", str(self.cache_dir)]
            if self.size:
                cmd += ["--size", self.size]
            if self.fps:
                cmd += ["--fps", str(self.fps)]
            for name, path in self.mounts.items():
                cmd += ["--mount", f"{name}={path.resolve()}"]
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("RTSP_", "PYTHON", "VIRTUAL_ENV"))
            }
            if self.username:
                env["RTSP_USERNAME"] = self.username
                env["RTSP_PASSWORD"] = self.password or ""
            self.ready_path.unlink(missing_ok=True)
            with open(self.log_path, "ab") as log, open(self.ready_path, "wb") as ready:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=ready, stderr=log, env=env, start_new_session=True
                )
            try:
                self._wait_ready(began + self.start_timeout_s)
            except BaseException:
                self._stop_process(timeout_s=5)
                raise
            self._timed_start(began)

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(
                    f"rtsp server exited with code {self._proc.returncode} while starting\n"
                    f"--- {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self.ready_path.read_bytes().startswith(b"READY") and port_accepts(self.port):
                return
            time.sleep(0.05)
        raise ServerError(
            f"rtsp server did not become ready on {HOST}:{self.port} within {self.start_timeout_s:.0f} s\n"
            f"--- {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving: connected clients lose their stream, new ones are refused."""
        with self._lock:
            self._stop_process(timeout_s)

    def kill(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
            self._stop_process(5)

    def _stop_process(self, timeout_s: float) -> None:
        if self._proc is not None:
            _terminate(self._proc, timeout_s)
            self._proc = None


# -- test media ------------------------------------------------------------------------------------------


def write_synthetic_video(
    path: Path, seconds: float = 3.0, fps: int = 15, size: tuple[int, int] = (640, 360)
) -> Path:
    """Write a moving-box test video with opencv's mp4v codec; returns ``path``."""
    import cv2
    import numpy as np

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"opencv cannot write {path}")
    try:
        for i in range(int(seconds * fps)):
            frame = np.full((height, width, 3), 40, np.uint8)
            x = (i * 12) % max(1, width - 80)
            cv2.rectangle(frame, (x, height // 3), (x + 80, height // 3 + 100), (0, 200, 255), -1)
            writer.write(frame)
    finally:
        writer.release()
    return path


@contextlib.contextmanager
def running(server: _Server) -> Iterator[_Server]:
    """``with running(KafkaServer()) as kafka:`` starts the server and closes it afterwards."""
    try:
        server.start()
        yield server
    finally:
        server.close()
