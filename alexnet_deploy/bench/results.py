"""What a benchmark run produced: latency statistics, measurements, ratios and the JSON schema."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends.base import Runner
from alexnet_deploy.bench.contention import Contention
from alexnet_deploy.bench.served import ServerStats
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.files import write_json_atomic
from alexnet_deploy.core.limits import check_duration, cpu_count

SCHEMA = "alexnet-deploy.bench/1"


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in seconds over ``n`` timed calls (linear interpolation, as numpy's default)."""

    n: int
    min: float
    mean: float
    median: float
    p90: float
    p99: float
    max: float
    std: float

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> LatencyStats:
        """Summarise per-call latencies (seconds).

        Raises:
            ConfigError: no samples.
        """
        a = np.asarray(samples, dtype=np.float64)
        if a.size == 0:
            raise ConfigError("No timed calls were made; raise --duration-s or --iterations.")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(
            n=int(a.size),
            min=float(a.min()),
            mean=float(a.mean()),
            median=float(p50),
            p90=float(p90),
            p99=float(p99),
            max=float(a.max()),
            std=float(a.std()),
        )

    def to_ms(self) -> dict[str, float | int]:
        """The statistics in milliseconds (``n`` unchanged), for JSON and tables."""
        return {k: (v if k == "n" else round(v * 1e3, 4)) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class BenchConfig:
    """How long and how hard to measure.

    Args:
        batch_sizes: batch sizes, each measured for every target.
        warmup_s: warm-up seconds per target and batch size (plus one untimed first call and >= 3 calls).
        duration_s: timed seconds per target and batch size (split over ``rounds``); ignored with ``iterations``.
        iterations: timed calls per target and batch size, instead of a duration.
        concurrency: request streams kept in flight at once (threads); several levels (a sweep) are each
            measured for every target and batch size. Stored as a sorted tuple.
        rounds: interleaving chunks per target and batch size (the order of targets rotates every round).
        switch_warmup_s: untimed seconds at the start of every later chunk, so that the previous target's
            spinning threads (OpenMP's, ONNX Runtime's) have gone to sleep before the clock starts.
        seed: for the random input images.
    """

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup_s: float = 1.0
    duration_s: float = 5.0
    iterations: int | None = None
    concurrency: int | tuple[int, ...] = 1
    rounds: int = 3
    switch_warmup_s: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"Batch sizes must be positive integers, got {list(self.batch_sizes)}.")
        check_duration(self.warmup_s, "--warmup-s", allow_zero=True)
        check_duration(self.duration_s, "--duration-s")
        check_duration(self.switch_warmup_s, "The warm-up after a switch", allow_zero=True)
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError(f"--iterations must be at least 1, got {self.iterations}.")
        levels = (self.concurrency,) if isinstance(self.concurrency, int) else tuple(self.concurrency)
        if not levels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in levels) or self.rounds < 1:
            raise ConfigError("--concurrency and the number of rounds must be at least 1.")
        if max(levels) > MAX_STREAMS:
            raise ConfigError(
                f"--concurrency {max(levels)} is more than {MAX_STREAMS} request streams: each is a thread of this "
                f"process (this machine has {cpu_count()} logical CPUs), and more only queue behind each other."
            )
        object.__setattr__(self, "concurrency", tuple(sorted(set(levels))))


#: The most request streams a run keeps in flight. A stream is a client thread that mostly waits (on a served model,
#: or on its runner), so the bound is not the CPU count (a server sweep goes to 16 on 2 cores) but what a process
#: can hold without thrashing.
MAX_STREAMS = 256


@dataclass
class BenchTarget:
    """One thing to measure: a runner and what is known about it.

    Attributes:
        label: unique name in tables and JSON, e.g. ``"onnxruntime int8"``.
        runner: the (inactive) runner; the harness activates and deactivates it.
        artifact: the file it runs, if any.
        device: ``"cpu"`` or ``"cuda..."``.
        flops_per_image: 2 x multiply-adds for one image, if the model is known.
        image_shape: C, H, W of one input image.
        compute_timer: on CUDA, a callable ``(images) -> seconds`` timing the model alone (copies excluded).
        thread_safe: whether ``infer`` may be called from several threads at once; if not, concurrent streams
            queue on a lock (as requests would on a server with one instance).
        notes: anything a reader must know (e.g. ``"random weights"``).
        server_counters: a served model's cumulative server statistics (read around every timed chunk).
        process_cpu: CPU seconds of the other processes that serve this target (a server on this machine), which
            belong to the measurement rather than to contention.
    """

    label: str
    runner: Runner
    artifact: str = ""
    device: str = "cpu"
    flops_per_image: float | None = None
    image_shape: tuple[int, int, int] = (3, 224, 224)
    compute_timer: Callable[[np.ndarray], float] | None = None
    thread_safe: bool = True
    notes: str = ""
    server_counters: Callable[[], dict[str, int]] | None = None
    process_cpu: Callable[[], float] | None = None


@dataclass
class Measurement:
    """One target at one batch size and concurrency."""

    label: str
    batch: int
    concurrency: int
    latency: LatencyStats
    images: int
    wall_s: float
    compute_latency: LatencyStats | None = None
    speedup_latency: float | None = None  # baseline median latency / this median latency
    speedup_throughput: float | None = None  # this throughput / baseline throughput
    fraction_of_ceiling: float | None = None
    contention: Contention | None = None  # the other processes' CPU use while this was timed
    server: ServerStats | None = None  # a served target: what the server itself spent per request

    @property
    def reliable(self) -> bool | None:
        """False when taken under contention, None when that could not be measured."""
        return None if self.contention is None else self.contention.reliable

    @property
    def throughput(self) -> float:
        """Images per second over the timed wall time."""
        return self.images / self.wall_s if self.wall_s > 0 else float("nan")


@dataclass
class BenchReport:
    """Everything one run measured, with the machine and versions it ran on."""

    config: BenchConfig
    targets: list[dict[str, Any]]
    measurements: list[Measurement]
    baseline: str | None = None
    ceiling: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    command: str = ""
    contention: Contention | None = None  # over every timed chunk of the run

    def get(self, label: str, batch: int, concurrency: int | None = None) -> Measurement:
        """The measurement of ``label`` at ``batch`` (and ``concurrency``; default: the lowest measured).

        Raises:
            ConfigError: no such measurement.
        """
        level = self.config.concurrency[0] if concurrency is None else concurrency
        for m in self.measurements:
            if m.label == label and m.batch == batch and m.concurrency == level:
                return m
        raise ConfigError(f"No measurement of '{label}' at batch {batch} and concurrency {level}.")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema ``alexnet-deploy.bench/1``; latencies in milliseconds)."""
        results = []
        for m in self.measurements:
            results.append(
                {
                    "label": m.label,
                    "batch": m.batch,
                    "concurrency": m.concurrency,
                    "latency_ms": m.latency.to_ms(),
                    "compute_latency_ms": m.compute_latency.to_ms() if m.compute_latency else None,
                    "throughput_img_s": round(m.throughput, 3),
                    "images": m.images,
                    "wall_s": round(m.wall_s, 4),
                    "speedup_latency": m.speedup_latency,
                    "speedup_throughput": m.speedup_throughput,
                    "fraction_of_ceiling": m.fraction_of_ceiling,
                    "contention": m.contention.to_dict() if m.contention else None,
                    "server": m.server.to_dict() if m.server else None,
                }
            )
        return {
            "schema": SCHEMA,
            "created": self.created,
            "command": self.command,
            "machine": self.machine,
            "versions": self.versions,
            "config": asdict(self.config),
            "ceiling": self.ceiling,
            "contention": self.contention.to_dict() if self.contention else None,
            "baseline": self.baseline,
            "targets": self.targets,
            "results": results,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchReport:
        """Rebuild a report from :meth:`to_dict`'s JSON (latencies back in seconds), e.g. to re-render it.

        Raises:
            ConfigError: not this schema.
        """
        if d.get("schema") != SCHEMA:
            raise ConfigError(f"Not a bench result (schema {d.get('schema')!r}, expected {SCHEMA!r}).")

        def stats(ms: dict | None) -> LatencyStats | None:
            return None if ms is None else LatencyStats(**{k: v if k == "n" else v / 1e3 for k, v in ms.items()})

        config = dict(d["config"])
        config["batch_sizes"] = tuple(config["batch_sizes"])
        known = {f for f in BenchConfig.__dataclass_fields__}
        measurements = [
            Measurement(
                label=r["label"],
                batch=r["batch"],
                concurrency=r["concurrency"],
                latency=stats(r["latency_ms"]),
                images=r["images"],
                wall_s=r["wall_s"],
                compute_latency=stats(r.get("compute_latency_ms")),
                speedup_latency=r.get("speedup_latency"),
                speedup_throughput=r.get("speedup_throughput"),
                fraction_of_ceiling=r.get("fraction_of_ceiling"),
                contention=Contention.from_dict(r.get("contention")),
                server=ServerStats.from_dict(r.get("server")),
            )
            for r in d["results"]
        ]
        return cls(
            config=BenchConfig(**{k: v for k, v in config.items() if k in known}),
            targets=d["targets"],
            measurements=measurements,
            baseline=d.get("baseline"),
            ceiling=d.get("ceiling") or {},
            machine=d.get("machine") or {},
            versions=d.get("versions") or {},
            created=d.get("created", ""),
            command=d.get("command", ""),
            contention=Contention.from_dict(d.get("contention")),
        )

    def report_rows(self) -> list[dict[str, Any]]:
        """Rows in the form :mod:`alexnet_deploy.report` renders (``bench.rows``)."""
        return [
            {
                "name": m.label,
                "batch": m.batch,
                "median_ms": m.latency.median * 1e3,
                "p90_ms": m.latency.p90 * 1e3,
                "p99_ms": m.latency.p99 * 1e3,
                "throughput": m.throughput,
                "ratio": m.speedup_throughput,
                "others_cpu_cores": m.contention.others_cpu_cores if m.contention else None,
                "reliable": m.reliable,
            }
            for m in self.measurements
        ]

    def report_contention(self) -> dict[str, Any] | None:
        """The run's contention in the form :mod:`alexnet_deploy.report` renders (``bench.contention``)."""
        return self.contention.to_dict() if self.contention else None

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` to ``path`` atomically."""
        write_json_atomic(path, self.to_dict())


def apply_ratios(measurements: Sequence[Measurement], baseline: str) -> None:
    """Fill in each measurement's speedups against the baseline's measurement at the same batch size and
    concurrency.

    ``speedup_latency`` = baseline median / this median; ``speedup_throughput`` = this img/s / baseline img/s.
    Both are > 1 when this target is faster.
    """
    base = {(m.batch, m.concurrency): m for m in measurements if m.label == baseline}
    for m in measurements:
        b = base.get((m.batch, m.concurrency))
        if b is None:
            continue
        m.speedup_latency = round(b.latency.median / m.latency.median, 4)
        m.speedup_throughput = round(m.throughput / b.throughput, 4)


def compute_fraction(target: BenchTarget, throughput: float, ceiling: dict[str, Any] | None) -> float | None:
    """Achieved FLOP/s over the measured ceiling for the target's precision (FP32's where none was measured)."""
    if not ceiling or not target.flops_per_image or not math.isfinite(throughput):
        return None
    gflops = ceiling.get("gflops", {})
    peak = gflops.get(target.runner.precision) or gflops.get("fp32")
    if not peak:
        return None
    return round(target.flops_per_image * throughput / 1e9 / peak, 4)


def describe_target(t: BenchTarget) -> dict[str, Any]:
    """What the JSON records about a target."""
    r = t.runner
    timed_on_device = t.compute_timer is not None or hasattr(r, "last_device_seconds")
    return {
        "label": t.label,
        "artifact": t.artifact,
        "backend": r.backend,
        "precision": r.precision,
        "device": t.device,
        "threads": getattr(r, "threads", None),
        "gflop_per_image": round(t.flops_per_image / 1e9, 4) if t.flops_per_image else None,
        "image_shape": list(t.image_shape),
        "latency_includes_copies": t.device.startswith("cuda"),
        "compute_latency": "CUDA events around the model alone, copies excluded" if timed_on_device else None,
        "thread_safe": t.thread_safe,
        "notes": t.notes,
        "served": str(getattr(r, "endpoint", "")) or None,
    }
