"""KafkaBusConsumer.commit turns kafka-python's rebalance errors into common.bus.CommitFailedError, which
the workers handle by polling on (no broker needed: the kafka-python client is a stand-in here; the real
broker is exercised in tests/integration/test_kafka_bus.py)."""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError as KafkaCommitFailedError
from kafka.errors import KafkaTimeoutError, RebalanceInProgressError

from common.bus import BusError, CommitFailedError
from common.kafka_bus import KafkaBus
from common.schemas import Topic

PARTITION = TopicPartition("aislewatch.clips", 0)


class RefusingClient:
    """What KafkaBusConsumer.commit uses of a kafka-python KafkaConsumer; its commit raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def commit(self, offsets, timeout_ms: int) -> None:
        raise self.error


def consumer_holding(error: Exception):
    consumer = KafkaBus(["127.0.0.1:1"]).consumer([Topic.CLIPS], "g")  # clients are lazy: nothing connects
    consumer._consumer = RefusingClient(error)
    consumer._pending = {PARTITION: 7}
    return consumer


@pytest.mark.parametrize("error", [KafkaCommitFailedError("group rebalanced"), RebalanceInProgressError()])
def test_a_commit_refused_by_a_rebalance_is_a_commit_failed_error(error: Exception) -> None:
    consumer = consumer_holding(error)
    with pytest.raises(CommitFailedError, match="rebalance") as info:
        consumer.commit()
    assert isinstance(info.value, BusError)
    assert consumer._pending == {}  # those records go to the partitions' new owners


def test_a_commit_timeout_is_a_plain_bus_error_and_keeps_the_offsets() -> None:
    consumer = consumer_holding(KafkaTimeoutError("no answer"))
    with pytest.raises(BusError) as info:
        consumer.commit()
    assert not isinstance(info.value, CommitFailedError)
    assert consumer._pending == {PARTITION: 7}  # committed with the next commit
