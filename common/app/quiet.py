"""Quiet by default: the native libraries' start-up chatter kept off the terminal unless ``--verbose``.

What each library prints, and what silences it (measured with TensorFlow 2.21, OpenCV 4.x, Alembic 1.x):

- TensorFlow writes its start-up block (absl's "All log messages before absl::InitializeLog()", the oneDNN
  notice, the CPU-feature notice) from C++ straight to file descriptor 2 while ``import tensorflow`` runs,
  once per shared library (so twice).  ``TF_CPP_MIN_LOG_LEVEL`` does not stop the oneDNN notice (it is logged
  before absl is initialised), and ``TF_ENABLE_ONEDNN_OPTS=0`` would change the maths.  So the import alone
  runs with descriptor 2 pointed at a temporary file; afterwards the known start-up lines are dropped
  (logged at DEBUG) and anything else is written back to stderr.  ``TF_CPP_MIN_LOG_LEVEL=2`` quiets the
  C++ INFO and WARNING lines printed later.
- OpenCV's own ``[ WARN:0@…]`` lines obey ``OPENCV_LOG_LEVEL``, and the FFmpeg lines of its capture backend
  (``[mpeg4 @ 0x…] Error at MB``, ``moov atom not found``) ``OPENCV_FFMPEG_LOGLEVEL`` (-8: AV_LOG_QUIET).
  Neither library offers Python a callback, so their text cannot be re-emitted as our log records: it is
  silenced, and what it means reaches our logs as the capture error that ingest and classify already log
  (camera, file, reason), so ``--log-format json`` output stays JSON.
- Alembic's "setup plugin …" and migration INFO lines, TensorFlow's and absl's Python loggers: kept at
  WARNING by ``common.logs.setup_logging`` unless verbose.

Every variable is set only when the environment does not already name it, so an operator's own choice wins.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

from common.logs import set_log_overrides

log = logging.getLogger("aislewatch.quiet")

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "OPENCV_LOG_LEVEL": "ERROR",
    "OPENCV_FFMPEG_LOGLEVEL": "-8",
}
"""Set before the libraries are imported (each reads its variable once, at import or first capture)."""

TENSORFLOW_STARTUP = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .*"
    r"|\s*)$"
)
"""A line of TensorFlow's start-up block (absl's glog-style ``I0000 00:00:… port.cc:153] …`` lines)."""

NOISY_IMPORTS = ("tensorflow",)


def configure(*, verbose: bool, log_format: str | None) -> None:
    """Process-wide, before any command runs: quiet environment, TensorFlow import capture, log overrides."""
    set_log_overrides(verbose=verbose, json_lines=None if log_format is None else log_format == "json")
    if verbose:
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if "cv2" in sys.modules:  # imported already (a test process): its own level can still be set
        _quiet_opencv_now()
    if not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder(NOISY_IMPORTS))


def _quiet_opencv_now() -> None:
    """OPENCV_LOG_LEVEL is read when cv2 is imported; after that its logging module sets the level."""
    try:
        import cv2.utils.logging as cv_logging  # type: ignore[import-not-found]

        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):  # a build without it: the environment variable still applies
        log.debug("OpenCV's log level could not be set after import")


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
    """Point file descriptor 2 at a temporary file for the block; the lines written there are in the list."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def replay(lines: Sequence[str], noise: re.Pattern[str] = TENSORFLOW_STARTUP) -> list[str]:
    """Log the start-up lines at DEBUG and write every other captured line back to stderr; returns those."""
    kept = [line for line in lines if not noise.match(line)]
    for line in lines:
        if noise.match(line) and line.strip():
            log.debug("tensorflow start-up: %s", line)
    if kept:
        sys.stderr.write("".join(f"{line}\n" for line in kept))
        sys.stderr.flush()
    return kept


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader's ``exec_module`` with descriptor 2 captured."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        lines: list[str] = []
        try:
            with captured_stderr_fd() as lines:
                self.inner.exec_module(module)
        finally:
            replay(lines)

    def __getattr__(self, name: str) -> object:  # get_resource_reader, is_package, … as the real loader
        return getattr(self.inner, name)


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds ``names`` with the other finders and wraps their loader in :class:`_QuietLoader`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None
