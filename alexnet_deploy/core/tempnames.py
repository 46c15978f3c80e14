"""Our temporary names, and whether the process that made one is still running.

A temporary file or folder of ours is named ``.NAME.~adtmp~<pid>-<start>-<what>-<random>`` beside the output
``NAME``: the marker no user file plausibly has, the writer's pid and its start time (clock ticks after boot,
``/proc/<pid>/stat`` field 22), what it is (``tmp``, ``build``, ``staging``...) and 8 random hex digits. A pid alone
proves nothing (pids are reused); a pid whose process started at that time is the writer, alive.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import NamedTuple

#: The token every temporary name of ours carries; no user file plausibly has it.
MARKER = "~adtmp~"
_OURS = re.compile(
    rf"^\.(?P<name>.+)\.{re.escape(MARKER)}(?P<pid>\d+)-(?P<start>\d+)-(?P<what>[a-z0-9]+)-(?P<rand>[0-9a-f]{{8}})$"
)
#: A name longer than this is shortened inside temporary names (the file system allows 255 bytes in all).
NAME_KEEP = 150


def process_start(pid: int) -> int | None:
    """A process's start time (clock ticks after boot, ``/proc/<pid>/stat`` field 22); None when it is gone or a
    zombie. Where there is no ``/proc`` (not Linux), 0 for any process that exists."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return None if fields[0] == "Z" else int(fields[19])


_IDENTITY: list[tuple[int, int]] = []


def identity() -> tuple[int, int]:
    """This process's (pid, start time), read once per process (a forked child reads its own)."""
    pid = os.getpid()
    if not _IDENTITY or _IDENTITY[0][0] != pid:
        _IDENTITY[:] = [(pid, process_start(pid) or 0)]
    return _IDENTITY[0]


def writer_alive(pid: int, start: int) -> bool:
    """Whether the writer ``pid`` that started at ``start`` is still running (a reused pid is not it)."""
    now = process_start(pid)
    return now is not None and (now == start or now == 0)


def temp_name(path: str | Path, what: str) -> str:
    """A fresh temporary name of ours for ``path``: ``.NAME.~adtmp~<pid>-<start>-<what>-<random>``."""
    pid, start = identity()
    return f".{Path(path).name[:NAME_KEEP]}.{MARKER}{pid}-{start}-{what}-{secrets.token_hex(4)}"


class TempName(NamedTuple):
    """What one of our temporary names says: whose output (``name``), what it is, and whether its writer lives."""

    name: str
    what: str
    pid: int
    alive: bool


def parse_temp_name(name: str) -> TempName | None:
    """Read one of our temporary names (None for any other name, which is never ours)."""
    m = _OURS.match(name)
    if m is None:
        return None
    pid, start = int(m["pid"]), int(m["start"])
    alive = (pid, start) == identity() or writer_alive(pid, start)
    return TempName(m["name"], m["what"], pid, alive)


def is_ours(name: str) -> bool:
    """Whether ``name`` is one of our temporary names."""
    return _OURS.match(name) is not None


def user_path(path: str | Path) -> Path:
    """The path the user knows for one of ours: ``DIR/.NAME.~adtmp~.../x/y`` -> ``DIR/NAME``; others unchanged."""
    path = Path(path)
    for i, part in enumerate(path.parts):
        m = _OURS.match(part)
        if m is not None:
            return Path(*path.parts[:i], m["name"])
    return path
