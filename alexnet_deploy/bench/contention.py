"""Did other processes use the CPU while we measured? A benchmark taken beside a busy neighbour is not a fact.

The measure (Linux; elsewhere it is ``None``, "not measured"):

* the machine's busy CPU time over the window: the ``cpu`` line of ``/proc/stat`` (user + nice + system + irq +
  softirq + steal jiffies, over ``SC_CLK_TCK``), read at the start and at the end;
* minus this process's own CPU time over the same window (``os.times()`` user + system: every thread of ours,
  ONNX Runtime's and OpenMP's spinning workers included; children are *not* subtracted, so a helper process
  we started counts as another process), and minus the CPU time of the processes that serve what is measured
  (``also_ours``: a Triton server on this machine and its backend stubs, when a served model is benchmarked);
* = the others' CPU seconds. Divided by the wall time it is the average number of cores they kept busy
  (``others_cpu_cores``), and divided again by the machine's cores, their share of the machine
  (``others_cpu_fraction``).

**Threshold**: figures are marked unreliable when the others kept more than :data:`THRESHOLD_CORES` = 0.1 of a
core busy on average. The default bench runs on every core (torch's thread count), so a neighbour's tenth of a
core already takes a slice from some worker thread, and a synchronised parallel kernel waits for its slowest
thread; an idle Linux machine stays well below it (kernel threads and timers use ~0.01 core). On a large machine
benchmarked with few threads the flag is conservative: it says the machine was shared, which it was. The
JSON records the threshold both in cores and as a fraction of the machine, beside the measured values, so a
reader can judge with another threshold.

The jiffy counters tick at 100 Hz, so windows shorter than about a second carry an error of a few hundredths of a
core; negative estimates (our own and the machine's counters tick at slightly different moments) read as 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["THRESHOLD_CORES", "Contention", "CpuMonitor", "CpuSample", "combine", "read_sample"]

THRESHOLD_CORES = 0.1
_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuSample:
    """One reading: the machine's busy CPU seconds, ours, and the wall clock."""

    busy_s: float
    own_s: float
    wall_s: float
    cores: int


def read_sample() -> CpuSample | None:
    """Read the counters now, or None where ``/proc/stat`` is unavailable (not Linux, a restricted sandbox)."""
    try:
        lines = _STAT.read_text().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    fields = next((ln.split()[1:] for ln in lines if ln.startswith("cpu ")), None)
    if not fields or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    cores = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit()) or (os.cpu_count() or 1)
    own = os.times()
    return CpuSample(
        busy_s=(user + nice + system + irq + softirq + steal) / tick,
        own_s=own.user + own.system,
        wall_s=time.monotonic(),
        cores=cores,
    )


@dataclass
class Contention:
    """Other processes' CPU use over one or more measured windows, and whether the figures can be trusted."""

    others_cpu_s: float
    wall_s: float
    cores: int
    threshold_cores: float = THRESHOLD_CORES

    @property
    def others_cpu_cores(self) -> float:
        """Cores the other processes kept busy, on average over the windows."""
        return max(0.0, self.others_cpu_s) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def others_cpu_fraction(self) -> float:
        """The same as a fraction of the machine (all its cores over the wall time)."""
        return self.others_cpu_cores / self.cores

    @property
    def threshold(self) -> float:
        """The threshold as a fraction of the machine, comparable with :attr:`others_cpu_fraction`."""
        return self.threshold_cores / self.cores

    @property
    def reliable(self) -> bool:
        """False when the others used more than the threshold: the figures were taken under contention."""
        return self.others_cpu_cores <= self.threshold_cores

    def __add__(self, other: Contention) -> Contention:
        return Contention(
            self.others_cpu_s + other.others_cpu_s, self.wall_s + other.wall_s, self.cores, self.threshold_cores
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{others_cpu_fraction, threshold, reliable}`` and the same in cores, with the window."""
        return {
            "others_cpu_fraction": round(self.others_cpu_fraction, 4),
            "threshold": round(self.threshold, 4),
            "reliable": self.reliable,
            "others_cpu_cores": round(self.others_cpu_cores, 3),
            "threshold_cores": self.threshold_cores,
            "cores": self.cores,
            "window_s": self.wall_s,  # unrounded, so that from_dict gives back the same figures
            "others_cpu_s": max(0.0, self.others_cpu_s),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Contention | None:
        """Rebuild from :meth:`to_dict` (None stays None)."""
        if not d:
            return None
        return cls(float(d["others_cpu_s"]), float(d["window_s"]), int(d["cores"]), float(d["threshold_cores"]))

    def describe(self) -> str:
        """One line for tables and reports."""
        verdict = "reliable" if self.reliable else "UNRELIABLE: measured under contention"
        return (
            f"other processes used {self.others_cpu_cores:.2f} of {self.cores} cores ({self.others_cpu_fraction:.1%} "
            f"of the machine) while measuring; threshold {self.threshold_cores:g} core: {verdict}"
        )


class CpuMonitor:
    """Measure the others' CPU use over a window: ``with CpuMonitor() as m: ...`` then ``m.result``.

    ``result`` is None where the counters cannot be read.
    """

    def __init__(self, threshold_cores: float = THRESHOLD_CORES) -> None:
        self.threshold_cores = threshold_cores
        self._start: CpuSample | None = None
        self.result: Contention | None = None
        #: CPU seconds of other processes that are part of the measurement (a local server), or None
        self.also_ours: Callable[[], float] | None = None
        self._also_start = 0.0

    def start(self) -> None:
        """Take the first reading."""
        self._also_start = self.also_ours() if self.also_ours else 0.0
        self._start = read_sample()

    def stop(self) -> Contention | None:
        """Take the second reading and return (and keep in ``result``) the others' use in between."""
        end = read_sample()
        start, self._start = self._start, None
        if start is None or end is None:
            self.result = None
            return None
        others = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
        if self.also_ours:
            others -= self.also_ours() - self._also_start
        self.result = Contention(others, end.wall_s - start.wall_s, end.cores, self.threshold_cores)
        return self.result

    def __enter__(self) -> CpuMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def combine(parts: list[Contention | None]) -> Contention | None:
    """The sum of several windows (None if any is unknown)."""
    if not parts or any(p is None for p in parts):
        return None
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total
