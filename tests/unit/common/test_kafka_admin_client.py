"""A Kafka admin client or consumer that cannot reach its broker leaves no IO thread behind (kafka-python 3.0 does: its
constructor starts the thread, then raises from the bootstrap, and the thread reconnects and logs for the life
of the process).  Against a real closed port on loopback: no broker is needed to show it."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from common.bus import BusError
from common.kafka_bus import KafkaBus, KafkaTuning, open_admin_client


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on leaving: nothing listens there


def kafka_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("kafka-io")]


def test_a_failed_admin_client_start_stops_its_io_thread() -> None:
    before = kafka_threads()
    bootstrap = f"127.0.0.1:{closed_port()}"
    for _ in range(3):
        with pytest.raises(Exception):  # noqa: B017 - kafka-python's own timeout error
            open_admin_client(bootstrap_servers=bootstrap, request_timeout_ms=1000, bootstrap_timeout_ms=500)
    time.sleep(0.3)
    assert kafka_threads() == before


def test_the_bus_retrying_through_a_broker_outage_gathers_no_threads() -> None:
    before = kafka_threads()
    tuning = KafkaTuning(bootstrap_timeout_s=0.5, reconnect_backoff_max_s=0.0)
    bus = KafkaBus(bootstrap_servers=[f"127.0.0.1:{closed_port()}"], tuning=tuning)
    try:
        for _ in range(3):
            with pytest.raises(BusError):
                bus.ensure_topics()
    finally:
        bus.close()
    time.sleep(0.3)
    assert kafka_threads() == before


def test_a_failed_consumer_start_stops_its_io_thread() -> None:
    from common.kafka_bus import open_consumer

    before = kafka_threads()
    with pytest.raises(Exception):  # noqa: B017 - kafka-python's own timeout error
        open_consumer(bootstrap_servers=f"127.0.0.1:{closed_port()}", request_timeout_ms=1000,
                      bootstrap_timeout_ms=500)
    time.sleep(0.3)
    assert kafka_threads() == before
