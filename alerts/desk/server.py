"""Running the desk with uvicorn: in the foreground (``aislewatch desk``) or on a thread beside the workers
(``aislewatch run``, ``aislewatch demo --serve``, tests and benchmarks)."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

from common.settings import DeskSettings

log = logging.getLogger("aislewatch.desk")


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        # Forwarded headers are read by the desk itself (web_auth.client_address: the proxy's own entry), not
        # by uvicorn, which would take a client-supplied one.
        proxy_headers=False,
        # Live-feed streams are long requests: on shutdown give them a moment, then close them.
        timeout_graceful_shutdown=3, lifespan="on",
    )


def serve_foreground(app: FastAPI, settings: DeskSettings) -> None:
    """uvicorn in this thread until SIGINT/SIGTERM (uvicorn installs the handlers and drains connections)."""
    server = uvicorn.Server(uvicorn_config(app, settings.host, settings.port))
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    log.info("security desk starting on %s", url)
    server.run()


class DeskServer:
    """uvicorn on a background thread; ``start`` returns once it listens (``port`` is the real one when 0 was
    asked for) and ``stop`` ends the live streams first so shutdown does not wait on them."""

    name = "desk"

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.server = uvicorn.Server(uvicorn_config(app, host, port))
        self.host = host
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout_s: float = 20.0) -> DeskServer:
        self._thread = threading.Thread(target=self._run, name="desk", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the security desk did not start: {self.error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the security desk did not start within {timeout_s:.0f} s")
            time.sleep(0.02)
        log.info("security desk on %s", self.url)
        return self

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # pragma: no cover - reported by start() and alive
            self.error = exc
            log.exception("security desk stopped by an error")

    @property
    def port(self) -> int:
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self.server.should_exit

    def stop(self, timeout_s: float = 10.0) -> None:
        self.app.state.desk.feed.stop_threadsafe()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
