"""What the quiet import of TensorFlow lets through (review s5, I1): a fatal line written just before a native
abort reaches the terminal, any line that is not start-up noise is shown, a start-up block larger than a pipe
does not block the import, and the import works without a temp dir or when the capture cannot be set up.

Each case runs ``import tensorflow`` in a fresh process with a stand-in ``tensorflow`` package first on
``sys.path`` that writes to descriptor 2 as the real one does (from outside Python's ``sys.stderr``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NOISE = b"I0000 00:00:1764590000.000000  4242 port.cc:153] oneDNN custom operations are on.\n"
FATAL = b"F1201 12:00:00.000000  4242 cpu_feature_guard.cc:99] fatal: this binary needs AVX\n"
ERROR = b"E1201 12:00:00.000000  4242 cuda_driver.cc:99] failed call to cuInit: CUDA_ERROR_NO_DEVICE\n"


def _fake_tensorflow(tmp_path: Path, body: str) -> Path:
    package = tmp_path / "fake" / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import os\n" + body + "\nLOADED = True\n")
    return tmp_path / "fake"


def _import_quietly(fake: Path, *, before: str = "", env: dict[str, str] | None = None,
                    timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = (f"import sys; sys.path.insert(0, {str(fake)!r}); sys.path.insert(1, {str(REPO)!r})\n{before}\n"
              "from common.app import quiet\n"
              "quiet.configure(verbose=False, log_format=None)\n"
              "import tensorflow\n"
              "print('imported', tensorflow.LOADED)\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def test_the_fatal_line_of_a_native_abort_during_the_import_is_shown(tmp_path: Path) -> None:
    fake = _fake_tensorflow(tmp_path, f"os.write(2, {NOISE!r})\nos.write(2, {FATAL!r})\nos.abort()")
    done = _import_quietly(fake)
    assert done.returncode != 0 and "imported" not in done.stdout
    assert "fatal: this binary needs AVX" in done.stderr, done.stderr  # the only line that says why
    assert "oneDNN custom operations" not in done.stderr, done.stderr  # the noise is still hidden


def test_lines_that_are_not_start_up_noise_are_shown_and_the_noise_is_not(tmp_path: Path) -> None:
    fake = _fake_tensorflow(tmp_path, f"os.write(2, {NOISE!r})\nos.write(2, {ERROR!r})\nos.write(2, b'no newline')")
    done = _import_quietly(fake)
    assert done.returncode == 0 and "imported True" in done.stdout, done.stderr
    assert "CUDA_ERROR_NO_DEVICE" in done.stderr and "no newline" in done.stderr, done.stderr
    assert "oneDNN" not in done.stderr, done.stderr


def test_a_start_up_block_larger_than_a_pipe_does_not_block_the_import(tmp_path: Path) -> None:
    """The pipe is drained while the import runs: 4 MiB of noise (a pipe holds 64 KiB) and then an error."""
    fake = _fake_tensorflow(tmp_path, f"for _ in range({4 * 2**20 // len(NOISE)}):\n    os.write(2, {NOISE!r})\n"
                                      f"os.write(2, {ERROR!r})")
    done = _import_quietly(fake, timeout=120)
    assert done.returncode == 0 and "imported True" in done.stdout, done.stderr[-2000:]
    assert done.stderr.strip() == ERROR.decode().strip(), done.stderr[-2000:]


def test_no_usable_temp_dir_still_imports(tmp_path: Path) -> None:
    fake = _fake_tensorflow(tmp_path, f"os.write(2, {NOISE!r})\nos.write(2, {ERROR!r})")
    done = _import_quietly(fake, before="import tempfile; tempfile.tempdir = '/nonexistent'",
                           env={"TMPDIR": "/nonexistent"})
    assert done.returncode == 0 and "imported True" in done.stdout, done.stderr
    assert "CUDA_ERROR_NO_DEVICE" in done.stderr and "oneDNN" not in done.stderr, done.stderr


@pytest.mark.parametrize("breakage", [
    "import subprocess\ndef refuse(*a, **k): raise OSError(24, 'Too many open files')\nsubprocess.Popen = refuse",
    "import os\n_pipe = os.pipe\nos.pipe = lambda: (_ for _ in ()).throw(OSError(24, 'Too many open files'))",
])
def test_a_capture_that_cannot_be_set_up_imports_without_it(tmp_path: Path, breakage: str) -> None:
    """Out of descriptors or processes: the import runs with its chatter rather than fail."""
    fake = _fake_tensorflow(tmp_path, f"os.write(2, {NOISE!r})")
    done = _import_quietly(fake, before=breakage)
    assert done.returncode == 0 and "imported True" in done.stdout, done.stderr
    assert "oneDNN custom operations" in done.stderr, done.stderr  # uncaptured: shown, not lost
