"""The contention detector, for real: a busy-loop process beside a short measurement is flagged; our own heavy
compute on a quiet machine is not (that test skips, saying why, when other processes already load the machine)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from typer.testing import CliRunner

from alexnet_deploy.backends.base import Runner
from alexnet_deploy.bench import THRESHOLD_CORES, BenchConfig, BenchReport, BenchTarget, CpuMonitor, run_benchmark
from alexnet_deploy.bench import contention as contention_module
from alexnet_deploy.bench.contention import Contention, CpuSample, read_sample
from alexnet_deploy.cli.main import app

pytestmark = pytest.mark.skipif(read_sample() is None, reason="no /proc/stat here: contention cannot be measured")
BUSY_LOOP = "import sys; print('ready', flush=True)\nwhile True: pass"


class MatmulRunner(Runner):
    """Real CPU work of our own (numpy matrix products, on however many BLAS threads numpy uses)."""

    backend = "numpy"

    def __init__(self) -> None:
        super().__init__("matmul")
        self.threads = None
        self.w = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)

    def activate_impl(self) -> None:
        pass

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        x = images.reshape(len(images), -1)[:, :256]
        for _ in range(20):
            x = np.tanh(x @ self.w)
        return x[:, :3]


@contextmanager
def busy_neighbour() -> Iterator[subprocess.Popen]:
    """Another process spinning on one core for as long as the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # let it reach its loop
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _measure(seconds: float = 1.0) -> BenchReport:
    config = BenchConfig(batch_sizes=(4,), warmup_s=0.1, duration_s=seconds, rounds=2, switch_warmup_s=0.05)
    return run_benchmark([BenchTarget("matmul", MatmulRunner(), image_shape=(3, 16, 16))], config)


def _others_now(seconds: float = 0.5) -> Contention:
    with CpuMonitor() as m:
        time.sleep(seconds)
    return m.result


def test_a_busy_neighbour_is_flagged_in_the_report_and_json(tmp_path):
    with busy_neighbour():
        report = _measure()
    c = report.contention
    assert c is not None and not c.reliable
    assert c.others_cpu_cores > 0.3 > THRESHOLD_CORES  # the loop had (most of) a core to itself
    assert c.others_cpu_fraction == pytest.approx(c.others_cpu_cores / c.cores)
    assert all(m.reliable is False for m in report.measurements)
    d = report.to_dict()
    assert d["contention"]["reliable"] is False and d["contention"]["threshold"] == pytest.approx(0.1 / c.cores, 1e-3)
    assert d["contention"]["others_cpu_fraction"] > d["contention"]["threshold"]
    assert d["results"][0]["contention"]["reliable"] is False
    again = BenchReport.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict()["contention"] == d["contention"] and again.measurements[0].reliable is False


def test_our_own_compute_on_a_quiet_machine_is_not_flagged():
    # Other processes come and go on a shared machine: an attempt counts only when the machine was quiet just
    # before and just after it. Three attempts; skip (with the reason) when none of them had quiet surroundings.
    flagged, loaded = [], []
    for _ in range(3):
        before = _others_now()
        report = _measure()
        after = _others_now()
        if not (before.reliable and after.reliable):
            loaded.append(max(before.others_cpu_cores, after.others_cpu_cores))
            continue
        c = report.contention
        assert sum(m.images for m in report.measurements) > 0
        if c.reliable:
            return  # our busy threads were subtracted, not counted as another process's
        flagged.append(c.describe())
    if not flagged:
        pytest.skip(f"the machine was loaded by other processes in every attempt (up to {max(loaded):.2f} cores)")
    pytest.fail(f"flagged although the machine was quiet before and after: {flagged}")


def test_contention_arithmetic(monkeypatch):
    samples = iter([CpuSample(100.0, 10.0, 50.0, 4), CpuSample(103.0, 11.5, 52.0, 4)])
    monkeypatch.setattr(contention_module, "read_sample", lambda: next(samples))
    with CpuMonitor() as m:
        pass
    c = m.result  # 3 s busy on the machine, 1.5 s of it ours, over 2 s on 4 cores
    assert c.others_cpu_cores == pytest.approx(0.75) and c.others_cpu_fraction == pytest.approx(0.1875)
    assert not c.reliable and c.threshold == pytest.approx(0.025)
    quiet = Contention(others_cpu_s=0.1, wall_s=2.0, cores=4)
    assert quiet.reliable and quiet.others_cpu_cores == pytest.approx(0.05)
    assert (quiet + c).others_cpu_cores == pytest.approx((0.1 + 1.5) / 4.0)
    assert Contention(-0.02, 1.0, 2).others_cpu_cores == 0.0  # counters ticking apart never read negative


def test_the_cli_warns_in_a_visible_line_and_marks_the_rows(small_artifacts, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", str(small_artifacts["onnx"]), "--batch", "1", "--warmup-s", "0.1", "--duration-s", "0.8",
            "--rounds", "1", "--threads", "1", "--no-ceiling", "--json", str(out)]  # fmt: skip
    with busy_neighbour():
        result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if line.startswith("WARNING:"))
    assert "1 of 1 measurements were taken under contention (marked !)" in warning and "not reliable" in warning
    assert " !" in result.output and "others' cores" in result.output
    d = json.loads(out.read_text())
    assert d["contention"]["reliable"] is False and d["results"][0]["contention"]["reliable"] is False
