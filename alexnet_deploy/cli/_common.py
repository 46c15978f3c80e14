"""What every command shares: turning any failure into one sentence and exit code 1 (never a traceback, never
exit code 0 after a failure)."""

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

from alexnet_deploy.core.errors import AlexNetDeployError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


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
            typer.echo(f"error: {exc}", err=True)
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
            typer.echo(
                f"error: {fn.__name__.removesuffix('_command')} failed unexpectedly{f' on {where}' if where else ''}: "
                f"{type(exc).__name__}{f': {first}' if first else ''} (rerun with --verbose for the traceback).",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (no colour, no wrapping), for ``--json``."""
    typer.echo(json.dumps(obj, indent=2))
