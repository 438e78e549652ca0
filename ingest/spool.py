"""A camera's on-disk spool: messages the bus could not take, oldest first, within a disk budget.

When the broker is down longer than the in-memory queue lasts, ingest keeps cutting clips and writes
them here; when it is back, they are sent before anything newer.  One file per message, named by a
sequence number so the order survives a restart of the process (spooled clips are sent by the next
ingest process for that camera).  Past ``max_bytes`` the oldest *clips* are deleted to make room
(health events are small and kept); what was deleted is returned so the caller counts and logs it.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path

from common.schemas import Topic


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """One message as it will be published again."""

    seq: int
    topic: Topic
    key: str
    value: bytes
    is_clip: bool
    path: Path | None = None  # the file that holds it until the bus acknowledged it


_SENDING = ".sending"


def _file_name(seq: int, topic: Topic, is_clip: bool) -> str:
    return f"{seq:016d}.{topic.value}.{'clip' if is_clip else 'event'}.msg"


def _parse(path: Path) -> tuple[int, Topic, bool] | None:
    parts = path.name.split(".")
    if len(parts) != 4 or parts[3] != "msg" or not parts[0].isdigit():
        return None
    try:
        return int(parts[0]), Topic(parts[1]), parts[2] == "clip"
    except ValueError:
        return None


class Spool:
    """FIFO of messages in ``directory`` (one per camera), at most ``max_bytes`` of them on disk."""

    def __init__(self, directory: Path, key: str, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = Path(directory)
        self.key = key
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._entries: list[tuple[int, Topic, bool, Path, int]] = []  # seq, topic, is_clip, path, size
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(_SENDING):  # taken by the last process, never acknowledged
                kept = path.with_name(path.name.removesuffix(_SENDING))
                if kept.exists():
                    path.unlink()  # the same message is on disk already
                    continue
                path = path.rename(kept)
            parsed = _parse(path)
            if parsed is None:
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write the last process did not finish
                continue
            self._entries.append((*parsed, path, path.stat().st_size))
        self._entries.sort()
        self._next_seq = self._entries[-1][0] + 1 if self._entries else 0
        self.bytes = sum(e[4] for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def clips(self) -> int:
        return sum(1 for e in self._entries if e[2])

    def next_seq(self) -> int:
        """A sequence number newer than every message spooled so far, by this process or an earlier one."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def add(self, seq: int, topic: Topic, value: bytes, is_clip: bool) -> list[SpooledMessage]:
        """Keep a message (``seq`` from :meth:`next_seq`: the spool stays in that order whenever a message
        comes in); returns the clips deleted to stay within the budget, oldest first, which is this one
        when it is the oldest clip or alone exceeds the budget."""
        dropped = self._make_room(len(value))
        if self.bytes + len(value) > self.max_bytes and is_clip:
            return [*dropped, SpooledMessage(seq, topic, self.key, b"", is_clip)]
        path = self.directory / _file_name(seq, topic, is_clip)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            handle.write(value)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        bisect.insort(self._entries, (seq, topic, is_clip, path, len(value)))
        self.bytes += len(value)
        return dropped

    def _make_room(self, size: int) -> list[SpooledMessage]:
        dropped: list[SpooledMessage] = []
        while self.bytes + size > self.max_bytes:
            oldest_clip = next((i for i, e in enumerate(self._entries) if e[2]), None)
            if oldest_clip is None:
                break
            dropped.append(self._remove(oldest_clip))
        return dropped

    @property
    def oldest_seq(self) -> int | None:
        return self._entries[0][0] if self._entries else None

    def take(self) -> SpooledMessage | None:
        """The oldest message, read back from disk (None when empty), now in the caller's hands: its file
        is renamed ``*.sending`` and stays until :meth:`delivered`, so a crash before the bus acknowledged
        it leaves it for the next process."""
        if not self._entries:
            return None
        seq, topic, is_clip, path, _ = self._entries[0]
        value = path.read_bytes()
        sending = path.with_name(path.name + _SENDING)
        os.replace(path, sending)
        self._remove(0)
        return SpooledMessage(seq, topic, self.key, value, is_clip, sending)

    def put_back(self, message: SpooledMessage) -> bool:
        """A message taken from the spool goes back in line (its send failed and memory is full); False
        when its file is gone."""
        if message.path is None or not message.path.exists():
            return False
        path = message.path.with_name(message.path.name.removesuffix(_SENDING))
        os.replace(message.path, path)
        bisect.insort(self._entries, (message.seq, message.topic, message.is_clip, path, len(message.value)))
        self.bytes += len(message.value)
        return True

    @staticmethod
    def delivered(message: SpooledMessage) -> None:
        """The bus acknowledged a message taken from the spool: its file goes."""
        if message.path is not None:
            message.path.unlink(missing_ok=True)

    def _remove(self, index: int) -> SpooledMessage:
        seq, topic, is_clip, path, size = self._entries.pop(index)
        path.unlink(missing_ok=True)
        self.bytes -= size
        return SpooledMessage(seq, topic, self.key, b"", is_clip)
