"""What every command shares: turning any failure into one sentence and exit code 1 (never a traceback, never
exit code 0 after a failure), and consoles that print names as they are.

Names come from files, folders, sidecars and flags (``cat [draft].png``, a class named ``[/bold]``, a file name
with an ANSI escape or a line break), so the consoles never read markup in the strings they print (styles are
given as :class:`rich.text.Text` styles instead: :func:`styled`), and every control character is shown as an
escape (:func:`alexnet_deploy.core.text.console_text`) in what they print, in log lines and in ``error:`` lines.
"""

from __future__ import annotations

import functools
import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from alexnet_deploy.core.errors import AlexNetDeployError
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


def _inputs(args: tuple, kwargs: dict) -> str:
    """The files and folders a command was given, for the last-resort message."""
    paths = [str(v) for v in (*args, *kwargs.values()) if isinstance(v, Path)]
    paths += [str(p) for v in kwargs.values() if isinstance(v, list) for p in v if isinstance(p, Path)]
    return ", ".join(paths[:3]) + (" ..." if len(paths) > 3 else "")


def handle_errors(fn: F) -> F:
    """Decorate a command: an :class:`AlexNetDeployError` becomes ``error: <sentence>`` and exit code 1.

    As a last line of defence any other exception becomes one sentence too, naming the command's inputs and how
    to see the traceback (``--verbose`` prints it); exit code 1. An interrupt exits 130.
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
        except KeyboardInterrupt:
            typer.echo("error: interrupted; nothing half-written was left in place.", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the last line: one sentence, never a traceback
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            where = _inputs(args, kwargs)
            echo_error(
                f"{fn.__name__} failed unexpectedly{f' on {where}' if where else ''}: "
                f"{type(exc).__name__}{f': {first}' if first else ''} (rerun with --verbose for the traceback)."
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (no colour, no wrapping), for ``--json``."""
    typer.echo(json.dumps(obj, indent=2))
