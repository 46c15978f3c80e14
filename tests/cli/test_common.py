"""cli/_common: SIGTERM and SIGHUP end a command like Ctrl-C (cleanup, one sentence, 128 + the signal's number), and
an ordinary write fault that reaches the last line of defence is still one sentence naming the path and the cause."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from alexnet_deploy.cli._common import Terminated, handle_errors


def _run(fn, capsys) -> tuple[int, str]:
    with pytest.raises(typer.Exit) as stopped:
        fn()
    return stopped.value.exit_code, capsys.readouterr().err.strip()


SIGNALLED = """
import os, signal, sys
import typer
from alexnet_deploy.cli._common import handle_errors, install_signal_handlers

cleaned = []

@handle_errors
def command() -> None:
    try:
        os.kill(os.getpid(), int(sys.argv[1]))
        signal.sigtimedwait([], 0)  # the handler runs at the next bytecode
        raise AssertionError("the signal did not stop the command")
    finally:
        cleaned.append(True)

install_signal_handlers()
try:
    command()
except typer.Exit as stop:
    print(stop.exit_code, cleaned == [True])
"""


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_runs_the_cleanup_and_exits_with_its_shell_code(sig, code):
    # In a fresh interpreter: a signal sent to the test process itself would reach whatever threads and handlers
    # the earlier tests' libraries left behind (it once took the whole run down with a segmentation fault).
    done = subprocess.run([sys.executable, "-c", SIGNALLED, str(int(sig))], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [str(code), "True"], done.stderr
    assert (
        done.stderr.strip() == f"error: stopped by {signal.Signals(sig).name}; nothing half-written was left in place."
    )


def test_ctrl_c_and_terminated_share_one_path(capsys):
    @handle_errors
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert _run(interrupted, capsys) == (130, "error: interrupted; nothing half-written was left in place.")
    assert issubclass(Terminated, KeyboardInterrupt)  # every `except KeyboardInterrupt` cleanup sees SIGTERM too


@pytest.mark.parametrize(
    "code,expected",
    [(errno.ENOSPC, "Cannot write /out/x.bin: no space left on device."),
     (errno.EROFS, "Cannot write /out/x.bin: the file system is read-only."),
     (errno.EACCES, "Cannot access /out/x.bin: permission denied.")],
)  # fmt: skip
def test_an_os_write_fault_is_one_sentence_at_the_last_line(capsys, code, expected):
    @handle_errors
    def command(out: Path = Path("/out")) -> None:
        raise OSError(code, os.strerror(code), "/out/x.bin")

    assert _run(command, capsys) == (1, f"error: {expected}")


def test_another_os_error_is_still_the_last_resort_sentence(capsys):
    @handle_errors
    def command() -> None:
        raise OSError(errno.ENOENT, "No such file or directory", "/gone")

    got, err = _run(command, capsys)
    assert got == 1 and err.startswith("error: command failed unexpectedly: FileNotFoundError")
