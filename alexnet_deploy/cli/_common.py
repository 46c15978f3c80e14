"""What every command shares: turning any failure into one sentence and exit code 1 (never a traceback, never
exit code 0 after a failure), SIGTERM / SIGHUP handled like Ctrl-C, and consoles that print names as they are.

Names come from files, folders, sidecars and flags (``cat [draft].png``, a class named ``[/bold]``, a file name
with an ANSI escape or a line break), so the consoles never read markup in the strings they print (styles are
given as :class:`rich.text.Text` styles instead: :func:`styled`), and every control character is shown as an
escape (:func:`alexnet_deploy.core.text.console_text`) in what they print, in log lines and in ``error:`` lines.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from alexnet_deploy.core.errors import AlexNetDeployError
from alexnet_deploy.core.files import WRITE_FAULTS
from alexnet_deploy.core.text import console_text

F = TypeVar("F", bound=Callable[..., Any])


class SafeConsole(Console):
    """A rich console that reads no markup in strings (tables, titles, captions included) and shows control
    characters as escapes, so that whatever a name holds is printed as text, on its own line."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"markup": False, **kwargs})

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(console_text(text), **kwargs)


class SafeRichHandler(RichHandler):
    """The log handler: messages as plain text (no markup), control characters shown as escapes."""

    def render_message(self, record: logging.LogRecord, message: str):
        return super().render_message(record, console_text(message))


def styled(text: str, style: str) -> Text:
    """``text`` printed in ``style`` (``"bold"``, ``"red"``...), never read as markup."""
    return Text(console_text(str(text)), style=style)


console = SafeConsole()
err_console = SafeConsole(stderr=True)


def echo_error(message: str) -> None:
    """``error: <message>`` on stderr, on one line whatever the message quotes."""
    typer.echo(f"error: {console_text(message)}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: raised in the main thread like Ctrl-C's KeyboardInterrupt, so every cleanup
    (``finally``, temporary files, locks) runs the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: Any) -> None:
    # Once: a second signal during the cleanup must not cut it short (kill -9 remains for that).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM (``docker stop``, systemd, ``timeout``) and SIGHUP (a closed terminal) into :class:`Terminated`.

    Called by the console entry point only, never by library code. The command then ends as after Ctrl-C: its
    cleanup runs, one sentence, and the exit code the shell reports for that signal (128 + its number: 143 for
    SIGTERM, 129 for SIGHUP), so ``timeout`` and service managers see what happened.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(sig, _terminate)


def _inputs(args: tuple, kwargs: dict) -> str:
    """The files and folders a command was given, for the last-resort message."""
    paths = [str(v) for v in (*args, *kwargs.values()) if isinstance(v, Path)]
    paths += [str(p) for v in kwargs.values() if isinstance(v, list) for p in v if isinstance(p, Path)]
    return ", ".join(paths[:3]) + (" ..." if len(paths) > 3 else "")


def handle_errors(fn: F) -> F:
    """Decorate a command: an :class:`AlexNetDeployError` becomes ``error: <sentence>`` and exit code 1.

    As a last line of defence any other exception becomes one sentence too, naming the command's inputs and how
    to see the traceback (``--verbose`` prints it); exit code 1. An OSError of an ordinary fault (no space left,
    read-only, permission) is one sentence naming the path and the cause. An interrupt exits 130, SIGTERM 143
    and SIGHUP 129 (see :func:`install_signal_handlers`), after the same cleanup.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AlexNetDeployError as exc:
            echo_error(str(exc))
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Terminated as exc:
            name = signal.Signals(exc.signum).name
            typer.echo(f"error: stopped by {name}; nothing half-written was left in place.", err=True)
            raise typer.Exit(128 + exc.signum) from None
        except KeyboardInterrupt:
            typer.echo("error: interrupted; nothing half-written was left in place.", err=True)
            raise typer.Exit(130) from None
        except OSError as exc:
            if exc.errno not in WRITE_FAULTS:
                _last_resort(fn.__name__, exc, args, kwargs)
            verb = "access" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
            where = exc.filename or _inputs(args, kwargs) or "a file"
            echo_error(f"Cannot {verb} {where}: {WRITE_FAULTS[exc.errno]}.")
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the last line: one sentence, never a traceback
            _last_resort(fn.__name__, exc, args, kwargs)

    return wrapper  # type: ignore[return-value]


def _last_resort(command: str, exc: Exception, args: tuple, kwargs: dict) -> None:
    """One sentence for an exception nobody foresaw (the traceback under ``--verbose``); exit code 1."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        traceback.print_exception(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    where = _inputs(args, kwargs)
    echo_error(
        f"{command.removesuffix('_command')} failed unexpectedly{f' on {where}' if where else ''}: "
        f"{type(exc).__name__}{f': {first}' if first else ''} (rerun with --verbose for the traceback)."
    )
    raise typer.Exit(1) from None


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (no colour, no wrapping), for ``--json``."""
    typer.echo(json.dumps(obj, indent=2))
