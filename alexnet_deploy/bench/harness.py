"""The harness: latency and throughput of any runner, side by side, with warm-up, percentiles and ratios.

The harness measures what trtexec measures and states what it measured:

* **Warm-up** for ``warmup_s`` seconds (at least three calls, after one untimed call that absorbs
  ``torch.compile``, CUDA-graph capture and lazy allocation), then timed calls for ``duration_s`` seconds or
  ``iterations`` calls.
* **Interleaving**: when several targets are compared, each batch size is measured in ``rounds`` chunks that
  rotate through the targets, so a slow drift of the machine (another process, the clock) hits all of them alike.
  The first call of each chunk is discarded: switching runners leaves cold caches and, for ONNX Runtime,
  threads that were still spinning.
* **Latency** per call from the host clock around :meth:`Runner.infer` (numpy in, numpy out: on a GPU the
  host<->device copies are *included*). On CUDA, a second figure excludes them: CUDA events around the model on
  device-resident tensors (torch), or the runner's own ``last_device_seconds`` (TensorRT).
* **Throughput** = images completed / wall time of the timed chunks; with ``concurrency`` N, N threads each keep
  one request in flight (Triton perf_analyzer's concurrency mode) and the latency is what each request waited.
  Several levels (``concurrency=(1, 2, 4)``) are a sweep: every level of every batch size, interleaved.
* **Served models** (:mod:`alexnet_deploy.bench.served`): the server's statistics are read around every timed
  chunk, so each measurement also says what the server spent per request (queue, compute, batch formed).
* **Contention**: the other processes' CPU use during every timed chunk (:mod:`alexnet_deploy.bench.contention`),
  per measurement and for the run; figures taken while others kept more than a tenth of a core busy are marked
  unreliable, in the JSON, the table and the report.
* **Compute fraction**: FLOPs per image (2 x the multiply-adds of :func:`alexnet_deploy.core.models.profile_model`)
  x images/s, over a ceiling measured on this machine by :func:`measure_ceiling` (a large ``torch.mm``).

Targets are built from artifact paths in :mod:`alexnet_deploy.bench.targets`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alexnet_deploy.bench.contention import Contention, CpuMonitor, combine
from alexnet_deploy.bench.machine import machine_info
from alexnet_deploy.bench.results import (
    BenchConfig,
    BenchReport,
    BenchTarget,
    LatencyStats,
    Measurement,
    apply_ratios,
    compute_fraction,
    describe_target,
)
from alexnet_deploy.bench.served import ServerStats
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.limits import check_batch_memory
from alexnet_deploy.core.manifest import library_versions

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _timed_chunk(
    target: BenchTarget,
    images: np.ndarray,
    *,
    duration_s: float | None,
    iterations: int | None,
    concurrency: int,
    clock: Clock,
    with_compute: bool,
) -> tuple[list[float], list[float], float]:
    """Run one timed chunk; return (latencies, compute latencies, wall seconds)."""
    runner = target.runner
    if concurrency > 1:
        return _concurrent_chunk(target, images, duration_s, iterations, concurrency, clock)
    lat: list[float] = []
    compute: list[float] = []
    start = clock()
    while True:
        t0 = clock()
        runner.infer(images)
        lat.append(clock() - t0)
        device_s = getattr(runner, "last_device_seconds", None)  # TensorRT: CUDA events around the engine alone
        if device_s is not None:
            compute.append(device_s)
        if iterations is not None:
            if len(lat) >= iterations:
                break
        elif clock() - start >= duration_s:
            break
    wall = clock() - start
    if with_compute and target.compute_timer is not None and not compute:
        # Timed after the end-to-end loop (not inside it) so that its synchronisation cannot slow that loop.
        compute = [target.compute_timer(images) for _ in range(max(3, min(len(lat), 200)))]
    return lat, compute, wall


def _concurrent_chunk(
    target: BenchTarget,
    images: np.ndarray,
    duration_s: float | None,
    iterations: int | None,
    concurrency: int,
    clock: Clock,
) -> tuple[list[float], list[float], float]:
    """N threads, each with one request in flight; requests that *complete* inside the window are counted."""
    lock = threading.Lock() if not target.thread_safe else None
    done: list[tuple[float, float]] = []  # (end, latency)
    state = {"count": 0, "stop": False}
    state_lock = threading.Lock()
    errors: list[BaseException] = []
    start = clock()

    def stream() -> None:
        try:
            t0 = clock()
            while not state["stop"]:
                if lock is not None:
                    with lock:
                        target.runner.infer(images)
                else:
                    target.runner.infer(images)
                t1 = clock()
                with state_lock:
                    if state["stop"]:
                        return
                    done.append((t1, t1 - t0))
                    state["count"] += 1
                    if (iterations is not None and state["count"] >= iterations) or (
                        iterations is None and t1 - start >= duration_s
                    ):
                        state["stop"] = True
                # A closed loop issues the next request the moment the last one completes: timing from here, not
                # from a fresh clock read, keeps in the latency any wait between two requests of one stream (for
                # the GIL, the lock, the scheduler). A stream that never completes inside the window is still not
                # counted (OpenVINO's one LATENCY request, taken straight back by the thread that returned it).
                t0 = t1
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            state["stop"] = True

    threads = [threading.Thread(target=stream, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    end = max(e for e, _ in done)
    return [lat for _, lat in done], [], end - start


def measure_target(
    target: BenchTarget,
    images: np.ndarray,
    config: BenchConfig,
    *,
    clock: Clock = time.perf_counter,
    warm: bool = True,
    rounds: int = 1,
    monitor: CpuMonitor | _Window | None = None,
    concurrency: int | None = None,
) -> tuple[list[float], list[float], float]:
    """Warm ``target`` up (``warm``: ``warmup_s`` and >= 3 calls; else ``switch_warmup_s``) and time one chunk
    (1/``rounds`` of the budget).

    Args:
        monitor: if given, it watches the other processes' CPU use over the timed chunk alone (``monitor.result``).
        concurrency: request streams (default: the config's first level).

    Returns:
        (latencies, compute latencies, wall seconds) in seconds.
    """
    runner = target.runner
    runner.infer(images)  # untimed: compilation, graph capture, allocation, or a cold cache after a switch
    t0, calls = clock(), 0
    min_calls, min_s = (3, config.warmup_s) if warm else (0, config.switch_warmup_s)
    while calls < min_calls or clock() - t0 < min_s:
        runner.infer(images)
        calls += 1
    iterations = None if config.iterations is None else max(1, math.ceil(config.iterations / rounds))
    if monitor is not None:
        monitor.start()
    try:
        return _timed_chunk(
            target,
            images,
            duration_s=config.duration_s / rounds,
            iterations=iterations,
            concurrency=config.concurrency[0] if concurrency is None else concurrency,
            clock=clock,
            with_compute=True,
        )
    finally:
        if monitor is not None:
            monitor.stop()


class _Window:
    """What is watched over one target's timed chunk: the others' CPU use (the target's own server processes
    counted as ours) and, for a served target, the server's statistics before and after."""

    def __init__(self, monitor: CpuMonitor, target: BenchTarget) -> None:
        self.monitor, self.target = monitor, target
        self._before: dict[str, int] | None = None
        self.server: ServerStats | None = None

    def start(self) -> None:
        self.monitor.also_ours = self.target.process_cpu
        if self.target.server_counters is not None:
            self._before = self.target.server_counters()
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()
        if self._before is not None:
            self.server = ServerStats.between(self._before, self.target.server_counters())


def _sum_server(parts: list[ServerStats]) -> ServerStats | None:
    """The server's statistics over several chunks (per-request figures weighted by requests)."""
    if not parts:
        return None
    n = sum(p.requests for p in parts) or 1

    def mean(key: str) -> float:
        return sum(getattr(p, key) * p.requests for p in parts) / n

    return ServerStats(requests=sum(p.requests for p in parts), executions=sum(p.executions for p in parts),
                       inferences=sum(p.inferences for p in parts), queue_ms=mean("queue_ms"),
                       compute_ms=mean("compute_ms"), compute_infer_ms=mean("compute_infer_ms"),
                       request_ms=mean("request_ms"))  # fmt: skip


def _check_batch(target: BenchTarget, batch: int) -> None:
    limit = target.runner.max_batch
    if limit is not None and batch > limit:
        raise ConfigError(
            f"Batch {batch} is outside the profile of {target.label} (largest batch {limit}); "
            f"rebuild it with a larger maximum or bench smaller batches."
        )


def _fixed_batches(targets: Sequence[BenchTarget], asked: Sequence[int]) -> dict[str, int]:
    """``{label: batch}`` of the targets whose graph takes one batch size only; each is measured at that batch
    alone, and said so once when other batches were asked for."""
    fixed = {t.label: int(t.runner.fixed_batch) for t in targets if getattr(t.runner, "fixed_batch", None)}
    for t in targets:
        batch = fixed.get(t.label)
        if batch is not None and set(asked) != {batch}:
            log.warning(
                "%s has a fixed batch of %d (its graph takes no other): measured at batch %d only; re-export the "
                "model with a dynamic batch axis to measure batches %s.",
                t.artifact.rsplit("/", 1)[-1] or t.label, batch, batch, ",".join(str(b) for b in asked if b != batch),
            )  # fmt: skip
    return fixed


def run_benchmark(
    targets: Sequence[BenchTarget],
    config: BenchConfig,
    *,
    baseline: str | None = None,
    ceiling: dict[str, Any] | None = None,
    clock: Clock = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure every target at every batch size, interleaved, and compute ratios against ``baseline``.

    Args:
        targets: what to measure (labels must be unique); runners are activated here and deactivated after.
        config: batch sizes, durations, concurrency.
        baseline: label of the target the ratios divide by (``None``: no ratios).
        ceiling: from :func:`measure_ceiling`, for the compute fraction (``gflops`` keyed by precision).
        clock: the host clock (injected by tests).
        progress: called with a short description before each chunk.

    Raises:
        ConfigError: duplicate labels, an unknown baseline, or a batch outside a runner's profile.
    """
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"Every target needs its own label; got {labels}.")
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"The baseline '{baseline}' is not among the targets ({', '.join(labels)}).")
    fixed = _fixed_batches(targets, config.batch_sizes)
    batch_sizes = tuple(sorted(set(config.batch_sizes) | set(fixed.values())))
    for t in targets:
        for b in config.batch_sizes:
            if fixed.get(t.label, b) == b:
                _check_batch(t, b)
                check_batch_memory(b, t.image_shape, "--batch", streams=max(config.concurrency))
    rng = np.random.default_rng(config.seed)
    machine = machine_info()  # before measuring: its load average is the machine's, not ours
    measurements: list[Measurement] = []
    active: list[BenchTarget] = []
    monitor = CpuMonitor()
    try:
        for t in targets:
            t.runner.activate()
            active.append(t)
        for batch, level in ((b, c) for b in batch_sizes for c in config.concurrency):
            runs = [t for t in targets if fixed.get(t.label, batch) == batch]  # a fixed-batch graph: its batch only
            if not runs:
                continue
            per: dict[str, tuple[list[float], list[float], float]] = {t.label: ([], [], 0.0) for t in runs}
            others: dict[str, list[Contention | None]] = {t.label: [] for t in runs}
            served: dict[str, list[ServerStats]] = {t.label: [] for t in runs}
            inputs = {t.image_shape: rng.standard_normal((batch, *t.image_shape), dtype=np.float32) for t in runs}
            sweep = f", concurrency {level}" if len(config.concurrency) > 1 else ""
            for r in range(config.rounds):
                # rotating the order spreads any position effect (who runs after whom) over every target
                shift = r % len(runs)
                for t in [*runs[shift:], *runs[:shift]]:
                    if progress:
                        progress(f"{t.label}, batch {batch}{sweep}, round {r + 1}/{config.rounds}")
                    window = _Window(monitor, t)
                    lat, comp, wall = measure_target(
                        t, inputs[t.image_shape], config, clock=clock, warm=(r == 0), rounds=config.rounds,
                        monitor=window, concurrency=level,
                    )  # fmt: skip
                    others[t.label].append(monitor.result)
                    served[t.label] += [window.server] if window.server else []
                    acc = per[t.label]
                    per[t.label] = (acc[0] + lat, acc[1] + comp, acc[2] + wall)
            for t in runs:
                lat, comp, wall = per[t.label]
                n_req = len(lat)
                measurements.append(
                    Measurement(
                        label=t.label,
                        batch=batch,
                        concurrency=level,
                        latency=LatencyStats.from_samples(lat),
                        images=n_req * batch,
                        wall_s=wall,
                        compute_latency=LatencyStats.from_samples(comp) if comp else None,
                        contention=combine(others[t.label]),
                        server=_sum_server(served[t.label]),
                    )
                )
    finally:
        for t in active:
            t.runner.deactivate()
    by_label = {t.label: t for t in targets}
    for m in measurements:
        t = by_label[m.label]
        m.fraction_of_ceiling = compute_fraction(t, m.throughput, ceiling)
    if baseline is not None:
        apply_ratios(measurements, baseline)
    return BenchReport(
        config=config,
        targets=[describe_target(t) for t in targets],
        measurements=measurements,
        baseline=baseline,
        ceiling=ceiling or {},
        machine=machine,
        versions=library_versions(),
        contention=combine([m.contention for m in measurements]),
    )
