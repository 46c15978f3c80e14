"""What every command shares: turning the library's errors into one sentence and exit code 1."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from alexnet_deploy.core.errors import AlexNetDeployError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def handle_errors(fn: F) -> F:
    """Decorate a command: an :class:`AlexNetDeployError` becomes ``error: <sentence>`` and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AlexNetDeployError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (no colour, no wrapping), for ``--json``."""
    typer.echo(json.dumps(obj, indent=2))
