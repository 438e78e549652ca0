"""Session fixtures for the real servers: Kafka, PostgreSQL, RTSP (see tests/integration/servers.py).

Servers start lazily, the first time a test asks for them, and once per session.  A server that cannot
start makes the requesting tests ERROR with the reason and the server's log; nothing is skipped.
Tests that stop a server (outage tests) may leave it stopped: the per-test fixtures start it again.
Tests using these fixtures get the matching marker (kafka, postgres, rtsp) automatically.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaled_helpers import WebhookReceiver
from servers import KafkaServer, PostgresServer, RtspServer, write_synthetic_video

_MARKERS_BY_FIXTURE = {
    "kafka_server": "kafka",
    "kafka_topic_prefix": "kafka",
    "kafka_bus": "kafka",
    "postgres_server": "postgres",
    "pg_url": "postgres",
    "rtsp_server_factory": "rtsp",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the servers they use, so ``-m "not kafka"`` deselects them."""
    for item in items:
        for fixture, marker in _MARKERS_BY_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))


# -- Kafka -----------------------------------------------------------------------------------------------


def _kafka_client_threads() -> dict[int | None, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.name.startswith("kafka")}


@pytest.fixture(autouse=True)
def no_kafka_client_left_running() -> Iterator[None]:
    """A test must close the Kafka clients it made.  One left open keeps its IO thread reconnecting for the
    rest of the session, and once the broker stops it logs refusals to streams pytest has closed, which
    pushed the failures out of CI's tail.  Autouse, so it is set up first and checked last: after the
    test's own fixtures have closed what they made."""
    before = _kafka_client_threads()
    yield
    deadline = time.monotonic() + 5  # a closed client's thread takes a moment to end
    while (left := {i: n for i, n in _kafka_client_threads().items() if i not in before}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"the test left Kafka clients running (their IO threads): {sorted(left.values())}"


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer]:
    """A single-node Kafka for the session: ``.bootstrap`` ("127.0.0.1:PORT"), ``.stop()``, ``.start()``."""
    server = KafkaServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def kafka_topic_prefix(kafka_server: KafkaServer) -> Iterator[str]:
    """A topic prefix unique to the test; its topics are deleted afterwards (the broker restarted if needed)."""
    prefix = f"t{uuid.uuid4().hex[:12]}."
    yield prefix
    if not kafka_server.running:
        kafka_server.start()
    _delete_topics(kafka_server.bootstrap, prefix)


def _delete_topics(bootstrap: str, prefix: str) -> None:
    from common.kafka_bus import open_admin_client

    admin = open_admin_client(bootstrap_servers=bootstrap, request_timeout_ms=10000, bootstrap_timeout_ms=10000)
    try:
        doomed = [t for t in admin.list_topics() if t.startswith(prefix)]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=10000)
    finally:
        admin.close()


@pytest.fixture
def kafka_bus_settings(kafka_server: KafkaServer, kafka_topic_prefix: str):  # type: ignore[no-untyped-def]
    """``BusSettings`` for the session broker with this test's topic prefix (4 partitions)."""
    from common.settings import BusKind, BusSettings

    return BusSettings(
        kind=BusKind.KAFKA,
        bootstrap_servers=[kafka_server.bootstrap],
        topic_prefix=kafka_topic_prefix,
        partitions=4,
    )


@pytest.fixture
def kafka_bus(kafka_bus_settings):  # type: ignore[no-untyped-def]
    """A ``KafkaBus`` on the session broker with this test's topic prefix; closed afterwards."""
    from common.kafka_bus import KafkaBus

    bus = KafkaBus.from_settings(kafka_bus_settings)
    yield bus
    bus.close()


# -- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the session: ``.new_database() -> url``, ``.stop()``, ``.start()``."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test: ``postgresql+psycopg2://aislewatch:<password>@127.0.0.1:PORT/db``."""
    url = postgres_server.new_database()
    yield url
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.drop_database(url)


# -- RTSP ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rtsp_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where H.264 transcodes of test videos are kept for the session (shared by all RTSP servers)."""
    return tmp_path_factory.mktemp("rtsp-cache")


RtspFactory = Callable[..., RtspServer]


@pytest.fixture
def rtsp_server_factory(rtsp_cache_dir: Path) -> Iterator[RtspFactory]:
    """Start an RTSP server for given videos; every server it made is closed after the test.

    ``server = rtsp_server_factory([video1, video2], username="u", password="p")`` serves
    ``/cam1``, ``/cam2`` (or the names of a ``{name: path}`` mapping); use ``server.urls`` /
    ``server.url("cam1", credentials=False)``; ``server.stop()`` / ``server.start()`` for outages.
    """
    made: list[RtspServer] = []

    def make(
        videos: Mapping[str, str | Path] | Sequence[str | Path],
        username: str | None = None,
        password: str | None = None,
        **kwargs: object,
    ) -> RtspServer:
        server = RtspServer(videos, username=username, password=password, cache_dir=rtsp_cache_dir, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s, 640x360, 15 fps MPEG-4 Part 2 (mp4v) video of a moving box, as opencv writes it here."""
    return write_synthetic_video(tmp_path_factory.mktemp("videos") / "synthetic.mp4")


# -- a webhook receiver --------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A loopback webhook receiver answering 503 until a test sets ``status`` (every post is recorded)."""
    state = WebhookReceiver(status=503).start()
    try:
        yield state
    finally:
        state.close()
