"""The base of every long-running worker: a stop event, a small run loop and an orderly shutdown."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod


class Worker(ABC):
    """Subclasses implement ``step`` (one bounded unit of work) and optionally ``setup``/``shutdown``.

    ``run`` loops until the stop event is set or ``step`` reports the work is finished, then calls
    ``shutdown`` exactly once (drain → commit → close).  Signal handlers live in the parent process and
    only set the event.

    Health is progress, not a live thread: a worker calls ``input_waiting`` when it has work it has not
    finished (records polled, a batch held, an input it cannot read) and ``progressed`` when it finished
    some; ``stalled_for`` is how long work has waited without any progress (a worker stuck retrying a
    database write or a broker that is away).  An idle worker is not stalled.
    """

    name: str = "worker"

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop_event = stop or threading.Event()
        self.log = logging.getLogger(f"aislewatch.{self.name}")
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._progress_at = time.monotonic()
        self._waiting_since: float | None = None

    def setup(self) -> None:
        """Acquire resources before the loop (connections, models)."""

    @abstractmethod
    def step(self) -> bool:
        """Do one bounded unit of work.  Return False when there is nothing more to do, ever."""

    def shutdown(self) -> None:
        """Drain, commit and close.  Called once, even after an error."""

    def run(self) -> None:
        try:
            self.setup()
            while not self.stop_event.is_set():
                if not self.step():
                    break
        except BaseException as exc:
            self.error = exc
            self.log.exception("%s stopped by an error", self.name)
            raise
        finally:
            self.shutdown()

    def stop(self) -> None:
        self.stop_event.set()

    def start_thread(self) -> threading.Thread:
        def target() -> None:
            try:
                self.run()
            except BaseException:  # already logged and stored in self.error
                pass

        self._thread = threading.Thread(target=target, name=self.name, daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- progress ----------------------------------------------------------------------------------
    def input_waiting(self) -> None:
        """There is work this worker has not finished yet (kept from the first call until progress)."""
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()

    def progressed(self, idle: bool = True) -> None:
        """Some work was finished; ``idle`` when nothing else is waiting."""
        self._progress_at = time.monotonic()
        if idle:
            self._waiting_since = None

    def stalled_for(self) -> float:
        """Seconds that work has been waiting with no progress (0 when idle or moving)."""
        if self._waiting_since is None:
            return 0.0
        return max(0.0, time.monotonic() - max(self._progress_at, self._waiting_since))

    def healthy(self, stall_after_s: float) -> bool:
        """Running, and not stalled for ``stall_after_s`` or longer."""
        return self.alive and self.error is None and self.stalled_for() < stall_after_s
