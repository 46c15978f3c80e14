from __future__ import annotations

import pytest
from bench_fakes import FakeClock, ScriptedRunner

from alexnet_deploy.bench import BenchConfig, BenchTarget, run_benchmark, save_plot
from alexnet_deploy.core.errors import ConfigError


def test_plot_is_a_png(tmp_path):
    clock = FakeClock()
    targets = [BenchTarget("a", ScriptedRunner(clock, [0.01])), BenchTarget("b", ScriptedRunner(clock, [0.004]))]
    report = run_benchmark(
        targets, BenchConfig(batch_sizes=(1, 8), warmup_s=0.0, iterations=4, rounds=1), baseline="a", clock=clock
    )
    out = save_plot(report, tmp_path / "sub" / "bench.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list((tmp_path / "sub").glob(".*tmp"))
    with pytest.raises(ConfigError, match="ending in .png"):
        save_plot(report, tmp_path / "bench.jpg")
