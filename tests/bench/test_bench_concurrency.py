"""--concurrency: N streams, throughput counted over completed requests, latency as each request waited."""

from __future__ import annotations

from bench_fakes import SleepRunner

from alexnet_deploy.bench import BenchConfig, BenchTarget, run_benchmark


def _run(thread_safe: bool, concurrency: int, **cfg):
    runner = SleepRunner(0.02)
    config = BenchConfig(batch_sizes=(2,), warmup_s=0.0, concurrency=concurrency, rounds=1, **cfg)
    report = run_benchmark([BenchTarget("sleep", runner, thread_safe=thread_safe)], config)
    return report.get("sleep", 2), runner


def test_parallel_streams_multiply_throughput():
    m, runner = _run(thread_safe=True, concurrency=4, duration_s=0.6)
    # 4 streams of 20 ms requests of 2 images: ~400 images/s, each request ~20 ms
    assert 280 < m.throughput <= 405
    assert 0.019 < m.latency.median < 0.035
    assert m.images == 2 * m.latency.n and m.latency.n <= runner.calls
    assert m.concurrency == 4


def test_serialized_streams_queue_and_the_latency_shows_it():
    m, _ = _run(thread_safe=False, concurrency=4, duration_s=0.6)
    # one instance: still ~100 images/s, and by Little's law the mean wait is 4 streams / 50 requests/s = 80 ms
    # (the median is not checked: Python's lock is not FIFO, so one stream may win it several times running)
    assert 70 < m.throughput <= 101
    assert 0.055 < m.latency.mean < 0.11
    assert m.latency.p99 > 2 * m.latency.min


def test_iterations_count_requests_across_streams():
    m, _ = _run(thread_safe=True, concurrency=3, iterations=30)
    assert m.latency.n == 30 and m.images == 60
