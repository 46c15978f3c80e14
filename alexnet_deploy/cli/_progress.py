"""A rich progress display driven by the library's ``progress(task, done, total)`` callbacks (on stderr, so
``--json`` output on stdout stays clean)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from alexnet_deploy.cli._common import err_console
from alexnet_deploy.core.text import console_text


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator:
    """Yield a ``progress(task, done, total)`` callback that shows one bar per task name (``None`` if disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:  # a task names files: shown as text, control characters as escapes
                tasks[task] = bars.add_task(console_text(task), total=total)
            bars.update(tasks[task], completed=done, total=total)

        yield update
