"""Quiet by default: the native libraries' start-up chatter kept off the terminal unless ``--verbose``.

What each library prints, and what silences it (measured with TensorFlow 2.21, OpenCV 4.x, Alembic 1.x):

- TensorFlow writes its start-up block (absl's "All log messages before absl::InitializeLog()", the oneDNN
  notice, the CPU-feature notice) from C++ straight to file descriptor 2 while ``import tensorflow`` runs,
  once per shared library (so twice).  ``TF_CPP_MIN_LOG_LEVEL`` does not stop the oneDNN notice (it is logged
  before absl is initialised), and ``TF_ENABLE_ONEDNN_OPTS=0`` would change the maths.  So the import alone
  runs with descriptor 2 pointed at a pipe that a thread drains line by line: the known start-up lines are
  kept back (logged at DEBUG afterwards), every other line (an error, the fatal line of a native abort,
  another thread's output) is written to the real stderr at once.  Where the pipe or the thread cannot be
  had, the import runs uncaptured.  ``TF_CPP_MIN_LOG_LEVEL=2`` quiets the
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
import subprocess
import sys
import threading
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


_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the command; this ends when its pipe does
noise, pending = re.compile(sys.argv[1]), b""
def one(raw):
    text = raw.decode("utf-8", "replace").rstrip("\n")
    if noise.match(text):
        out = (text + "\n").encode("utf-8", "replace")
        fd = 1
    else:
        out, fd = raw, 2
    try:
        view = memoryview(out)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass
while chunk := os.read(0, 65536):
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:
        one(line + b"\n")
if pending:
    one(pending)
"""
"""The stderr filter's own process: stdin is the pipe descriptor 2 points at, each line not matching argv[1]
goes to its stderr (the real one) as soon as it is complete, the matching ones to its stdout (for DEBUG)."""

_END_S = 5.0
"""How long the end of the block waits for the filter to reach the pipe's end (at once, unless a process
that the import started still holds the pipe: the filter then keeps forwarding what that writes)."""


@contextlib.contextmanager
def filtered_stderr_fd(noise: re.Pattern[str] = TENSORFLOW_STARTUP) -> Iterator[list[str]]:
    """Point file descriptor 2 at a pipe for the block; every line not matching ``noise`` reaches the real
    stderr at once, the matching ones are in the list after the block.

    The pipe is drained by a small process of its own, not a thread: a native abort (TensorFlow's
    ``LOG(FATAL)``, SIGILL) kills every thread of this process before it is scheduled, but the filter still
    holds the pipe, reads what was written before the crash and forwards it.  Raises OSError, with
    descriptor 2 unchanged, when the pipe or the process cannot be had."""
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    try:
        saved = os.dup(2)
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    try:
        process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, noise.pattern], stdin=read_fd,
                                   stdout=subprocess.PIPE, stderr=saved)
    except (OSError, subprocess.SubprocessError) as exc:
        for fd in (read_fd, write_fd, saved):
            os.close(fd)
        raise OSError(f"stderr filter not started: {exc}") from exc
    os.close(read_fd)
    assert process.stdout is not None
    hidden_out = process.stdout
    hidden: list[str] = []
    collector = threading.Thread(target=lambda: hidden.extend(
        hidden_out.read().decode("utf-8", "replace").splitlines()), name="quiet-stderr", daemon=True)
    try:
        collector.start()  # drains the filter's stdout, so a long start-up block cannot fill that pipe
    except RuntimeError as exc:  # no thread to spare
        os.close(write_fd)  # the filter reads its end and exits
        os.close(saved)
        process.wait()
        hidden_out.close()
        raise OSError(f"stderr filter not started: {exc}") from exc
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield hidden
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the filter reads to its end and exits
        os.close(saved)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(_END_S)
        collector.join(_END_S if process.returncode is not None else 0)
        if not collector.is_alive():
            hidden_out.close()


def log_hidden(lines: Sequence[str]) -> None:
    """The start-up lines that were kept off the terminal, at DEBUG."""
    for line in lines:
        if line.strip():
            log.debug("tensorflow start-up: %s", line)


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader's ``exec_module`` with descriptor 2 filtered (see :func:`filtered_stderr_fd`)."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        hidden: list[str] = []
        with contextlib.ExitStack() as capture:
            try:
                hidden = capture.enter_context(filtered_stderr_fd())
            except OSError as exc:  # no descriptor or thread to spare: import with the chatter rather than fail
                log.debug("importing %s without hiding its start-up output: %s", module.__name__, exc)
            try:
                self.inner.exec_module(module)
            finally:
                capture.close()  # descriptor 2 restored before anything is logged
                log_hidden(hidden)

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
