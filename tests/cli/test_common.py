"""cli/_common: SIGTERM and SIGHUP end a command like Ctrl-C (cleanup, one sentence, 128 + the signal's number), and
an ordinary write fault that reaches the last line of defence is still one sentence naming the path and the cause."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import typer

from alexnet_deploy.cli._common import Terminated, handle_errors, install_signal_handlers


def _run(fn, capsys) -> tuple[int, str]:
    with pytest.raises(typer.Exit) as stopped:
        fn()
    return stopped.value.exit_code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_runs_the_cleanup_and_exits_with_its_shell_code(capsys, sig, code):
    cleaned = []

    @handle_errors
    def command() -> None:
        try:
            os.kill(os.getpid(), sig)
            signal.sigtimedwait([], 0)  # the handler runs at the next bytecode
            raise AssertionError("the signal did not stop the command")
        finally:
            cleaned.append(True)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    install_signal_handlers()
    try:
        got, err = _run(command, capsys)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert (got, cleaned) == (code, [True])
    assert err == f"error: stopped by {signal.Signals(sig).name}; nothing half-written was left in place."


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
