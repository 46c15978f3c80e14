"""The bench's arithmetic against known synthetic timings (a fake clock advanced by scripted runners)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_fakes import FakeClock, ScriptedRunner

from alexnet_deploy.bench import (
    SCHEMA,
    BenchConfig,
    BenchReport,
    BenchTarget,
    LatencyStats,
    run_benchmark,
)
from alexnet_deploy.core.errors import ConfigError


def test_latency_stats_match_known_percentiles():
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    s = LatencyStats.from_samples(samples)
    assert s.n == 100
    assert s.min == pytest.approx(0.001) and s.max == pytest.approx(0.100)
    assert s.mean == pytest.approx(0.0505)
    assert s.median == pytest.approx(0.0505)
    assert s.p90 == pytest.approx(0.0901)  # linear interpolation: 1 + 0.9 * 99 = 90.1 ms
    assert s.p99 == pytest.approx(0.09901)
    assert s.to_ms()["p90"] == pytest.approx(90.1) and s.to_ms()["n"] == 100


def test_latency_stats_refuse_no_samples():
    with pytest.raises(ConfigError, match="No timed calls"):
        LatencyStats.from_samples([])


def test_harness_times_every_call_with_the_injected_clock():
    clock = FakeClock()
    # 9 calls of 10 ms and one of 100 ms, repeating: median 10 ms, mean 19 ms, p99 near 100 ms.
    runner = ScriptedRunner(clock, [0.010] * 9 + [0.100])
    cfg = BenchConfig(batch_sizes=(4,), warmup_s=0.0, iterations=100, rounds=1)
    report = run_benchmark(
        [BenchTarget("fake", runner, flops_per_image=2e9)],
        cfg,
        clock=clock,
        ceiling={"probe": "test", "gflops": {"fp32": 100.0}},
    )
    m = report.get("fake", 4)
    assert m.latency.n == 100
    # the untimed first call and 3 warm-up calls come before the timed ones: they shift the cycle by 4
    lat = np.array(([0.010] * 9 + [0.100]) * 11)[4:104]
    assert m.latency.median == pytest.approx(np.median(lat))
    assert m.latency.mean == pytest.approx(lat.mean())
    assert m.latency.p99 == pytest.approx(np.percentile(lat, 99))
    assert m.latency.max == pytest.approx(0.100)
    assert m.images == 400
    assert m.throughput == pytest.approx(400 / lat.sum())
    # 2 GFLOP per image x img/s over a 100 GFLOP/s ceiling
    assert m.fraction_of_ceiling == pytest.approx(2 * m.throughput / 100, rel=1e-3)
    assert runner.calls == 104 and not runner.is_active


def test_warmup_is_by_time_and_rounds_split_the_budget():
    clock = FakeClock()
    runner = ScriptedRunner(clock, [0.010])
    cfg = BenchConfig(batch_sizes=(1,), warmup_s=0.5, duration_s=1.0, rounds=4, switch_warmup_s=0.1)
    report = run_benchmark([BenchTarget("fake", runner)], cfg, clock=clock)
    m = report.get("fake", 1)
    # round 1: 1 untimed call, 50 warm-up calls (0.5 s), 25 timed calls (0.25 s);
    # rounds 2-4: 1 discarded call, 10 untimed calls (0.1 s after a switch) and 25 timed calls each
    assert m.latency.n == 100
    assert runner.calls == 1 + 50 + 25 + 3 * (1 + 10 + 25)
    assert m.wall_s == pytest.approx(1.0)
    assert m.throughput == pytest.approx(100.0)


def test_comparison_ratios_from_known_timings():
    clock = FakeClock()
    base = ScriptedRunner(clock, [0.020], per_image=True, name="base")  # 20 ms per image
    fast = ScriptedRunner(clock, [0.005], per_image=True, name="fast")  # 5 ms per image: 4x
    cfg = BenchConfig(batch_sizes=(1, 8), warmup_s=0.0, iterations=30, rounds=3)
    targets = [BenchTarget("base", base), BenchTarget("fast", fast)]
    report = run_benchmark(targets, cfg, baseline="base", clock=clock)
    for b in (1, 8):
        assert report.get("fast", b).speedup_latency == pytest.approx(4.0)
        assert report.get("fast", b).speedup_throughput == pytest.approx(4.0)
        assert report.get("base", b).speedup_throughput == pytest.approx(1.0)
    assert report.get("fast", 8).throughput == pytest.approx(200.0)
    assert report.get("base", 8).latency.median == pytest.approx(0.160)
    assert report.baseline == "base"


def test_json_schema(tmp_path):
    clock = FakeClock()
    targets = [BenchTarget("a", ScriptedRunner(clock, [0.01])), BenchTarget("b", ScriptedRunner(clock, [0.02]))]
    cfg = BenchConfig(batch_sizes=(1, 2), warmup_s=0.0, iterations=5, rounds=1)
    report = run_benchmark(targets, cfg, baseline="a", clock=clock)
    report.command = "alexnet-deploy bench a b"
    report.save_json(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["schema"] == SCHEMA
    assert set(d) >= {
        "created",
        "command",
        "machine",
        "versions",
        "config",
        "ceiling",
        "baseline",
        "targets",
        "results",
    }
    assert d["baseline"] == "a" and d["config"]["batch_sizes"] == [1, 2] and d["config"]["iterations"] == 5
    assert {"cpus", "load_average"} <= set(d["machine"]) and "torch" in d["versions"]
    assert [t["label"] for t in d["targets"]] == ["a", "b"]
    assert {"backend", "precision", "device", "threads", "latency_includes_copies"} <= set(d["targets"][0])
    assert len(d["results"]) == 4
    r = next(r for r in d["results"] if r["label"] == "b" and r["batch"] == 2)
    assert set(r["latency_ms"]) == {"n", "min", "mean", "median", "p90", "p99", "max", "std"}
    assert r["latency_ms"]["median"] == pytest.approx(20.0) and r["latency_ms"]["n"] == 5
    assert r["throughput_img_s"] == pytest.approx(100.0)
    assert r["speedup_throughput"] == pytest.approx(0.5) and r["speedup_latency"] == pytest.approx(0.5)
    assert r["compute_latency_ms"] is None and r["concurrency"] == 1
    again = BenchReport.from_dict(d)
    assert again.get("b", 2).latency.median == pytest.approx(0.020)
    assert again.get("b", 2).throughput == pytest.approx(100.0) and again.config == report.config
    assert again.to_dict()["results"] == d["results"]


def test_report_rows_feed_the_quickstart_report():
    clock = FakeClock()
    report = run_benchmark(
        [BenchTarget("a", ScriptedRunner(clock, [0.01]))],
        BenchConfig(batch_sizes=(1,), warmup_s=0.0, iterations=3, rounds=1),
        baseline="a",
        clock=clock,
    )
    (row,) = report.report_rows()
    assert row["name"] == "a" and row["median_ms"] == pytest.approx(10.0) and row["ratio"] == pytest.approx(1.0)


def test_bad_configs_and_batches_are_refused():
    with pytest.raises(ConfigError, match="positive"):
        BenchConfig(batch_sizes=(0,))
    with pytest.raises(ConfigError, match="--iterations"):
        BenchConfig(iterations=0)
    clock = FakeClock()
    plan_like = ScriptedRunner(clock, [0.01], max_batch=8)
    with pytest.raises(ConfigError, match=r"Batch 32 is outside the profile of plan \(largest batch 8\)"):
        run_benchmark([BenchTarget("plan", plan_like)], BenchConfig(batch_sizes=(1, 32)), clock=clock)
    assert plan_like.calls == 0 and not plan_like.is_active
    with pytest.raises(ConfigError, match="baseline 'x'"):
        run_benchmark([BenchTarget("a", plan_like)], BenchConfig(batch_sizes=(1,)), baseline="x", clock=clock)
    with pytest.raises(ConfigError, match="own label"):
        run_benchmark([BenchTarget("a", plan_like), BenchTarget("a", plan_like)], BenchConfig(), clock=clock)


def test_rounds_rotate_the_order_of_targets():
    clock, order = FakeClock(), []

    class Logged(ScriptedRunner):
        def infer_impl(self, images):
            if not order or order[-1] != self.name:
                order.append(self.name)
            return super().infer_impl(images)

    targets = [BenchTarget(n, Logged(clock, [0.01], name=n)) for n in ("a", "b", "c")]
    run_benchmark(targets, BenchConfig(batch_sizes=(1,), warmup_s=0.0, iterations=2, rounds=3), clock=clock)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_ceiling_probes_are_named_and_positive():
    from alexnet_deploy.bench import measure_ceiling

    c = measure_ceiling("cpu", threads=1, seconds=0.01)
    assert c["gflops"]["fp32"] == max(c["probes"]["torch.mm fp32"], c["probes"]["onnxruntime MatMul fp32"]) > 0
    assert c["gflops"]["int8"] == c["probes"]["onnxruntime MatMulInteger u8s8"] > 0
    assert "torch.mm fp32" in c["probe"] and "1 threads" in c["probe"]
