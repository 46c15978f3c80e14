"""``alexnet-deploy bench triton://...``: a served model timed beside its in-process runner, a concurrency sweep,
the server's own statistics, and what a wrong endpoint gets.

The served tests start a real ``tritonserver`` (the ``triton_env`` fixture of tests/conftest.py: skipped with the
reason where it cannot be built, failed under CI) for a repository written by ``alexnet-deploy triton
--python-backend``, and keep every run to a handful of requests.
"""

from __future__ import annotations

import json
import os
import socket
import time

import numpy as np
import pytest
from bench_fakes import SleepRunner
from typer.testing import CliRunner

from alexnet_deploy.bench import BenchConfig, BenchReport, BenchTarget, CpuMonitor, run_benchmark, save_plot
from alexnet_deploy.bench.served import Endpoint, ServerStats, _counters, parse_endpoint, process_tree_cpu, server_pid
from alexnet_deploy.cli.main import app
from alexnet_deploy.core.errors import ConfigError

cli = CliRunner()
QUICK = ["--warmup-s", "0", "--iterations", "6", "--rounds", "1", "--no-ceiling", "--threads", "1"]


# -- without a server -------------------------------------------------------------------------------------------
def test_endpoints_are_parsed_and_bad_ones_refused():
    assert parse_endpoint("triton://127.0.0.1:8000/alexnet") == Endpoint("http", "127.0.0.1", 8000, "alexnet")
    assert parse_endpoint("grpc://localhost:8001/alexnet_int8/2") == Endpoint("grpc", "localhost", 8001,
                                                                              "alexnet_int8", "2")  # fmt: skip
    assert parse_endpoint("triton://[::1]:8001/m", "grpc").protocol == "grpc"
    assert parse_endpoint("triton://127.0.0.1:8000/m").local and not parse_endpoint("triton://10.0.0.2:8000/m").local
    for bad in ("triton://127.0.0.1/alexnet", "ftp://h:1/m", "triton://h:99999/m", "triton://h:1/a b"):
        with pytest.raises(ConfigError):
            parse_endpoint(bad)
    with pytest.raises(ConfigError, match="http or grpc"):
        parse_endpoint("triton://h:1/m", "udp")


def test_server_statistics_become_per_request_figures():
    http_style = [{"name": "m", "version": "1", "inference_count": 10, "execution_count": 4, "inference_stats": {
        "success": {"count": 6, "ns": 60_000_000}, "queue": {"count": 6, "ns": 12_000_000},
        "compute_input": {"count": 4, "ns": 1_000_000}, "compute_infer": {"count": 4, "ns": 20_000_000},
        "compute_output": {"count": 4, "ns": 3_000_000}}}]  # fmt: skip
    grpc_style = json.loads(json.dumps(http_style).replace(": 10,", ': "10",'))  # gRPC's JSON: strings
    grpc_style[0]["inference_stats"]["fail"] = {}
    zero = {k: 0 for k in _counters(http_style, "")}
    s = ServerStats.between(zero, _counters(grpc_style, "1"))
    assert (s.requests, s.executions, s.inferences, s.batch) == (6, 4, 10, 2.5)
    assert (s.queue_ms, s.compute_ms, s.compute_infer_ms, s.request_ms) == pytest.approx((2.0, 4.0, 20 / 6, 10.0))
    assert ServerStats.from_dict(s.to_dict()).to_dict() == s.to_dict()  # the JSON round trip (4 decimals)
    assert _counters(http_style, "2") == zero  # another version's figures are not this one's


def test_a_sweep_measures_every_level_and_divides_by_the_same_level():
    config = BenchConfig(batch_sizes=(2,), warmup_s=0.0, iterations=8, rounds=1, concurrency=(4, 1, 4))
    assert config.concurrency == (1, 4) and BenchConfig(concurrency=3).concurrency == (3,)
    with pytest.raises(ConfigError):
        BenchConfig(concurrency=(1, 0))
    targets = [BenchTarget("one", SleepRunner(0.02), thread_safe=False), BenchTarget("many", SleepRunner(0.02))]
    report = run_benchmark(targets, config, baseline="one")
    assert [(m.label, m.concurrency) for m in report.measurements] == [("one", 1), ("many", 1), ("one", 4),
                                                                       ("many", 4)]  # fmt: skip
    # one instance serialises 4 streams; a thread-safe one runs them side by side: ~4x at concurrency 4 only
    assert report.get("many", 2, 1).speedup_throughput == pytest.approx(1.0, rel=0.35)
    assert report.get("many", 2, 4).speedup_throughput > 2.0
    again = BenchReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.config.concurrency == (1, 4) and again.get("one", 2, 4).concurrency == 4


def test_the_sweep_plot_draws_throughput_against_p99(tmp_path):
    config = BenchConfig(batch_sizes=(1,), warmup_s=0.0, iterations=4, rounds=1, concurrency=(1, 2))
    report = run_benchmark([BenchTarget("a", SleepRunner(0.005))], config)
    out = save_plot(report, tmp_path / "sweep.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000


def test_a_local_servers_processes_are_found_and_counted_as_ours():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert server_pid(s.getsockname()[1]) == os.getpid()
    t0 = process_tree_cpu(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert process_tree_cpu(os.getpid()) - t0 > 0.2
    monitor = CpuMonitor()
    burn = iter([0.0, 5.0])  # "the server" used 5 CPU seconds during the window
    monitor.also_ours = lambda: next(burn)
    monitor.start()
    time.sleep(0.2)
    result = monitor.stop()
    if result is not None:  # /proc/stat readable: those 5 s are not charged to the others
        assert result.others_cpu_s < 0


def test_nothing_listening_is_one_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = cli.invoke(app, ["bench", f"triton://127.0.0.1:{port}/alexnet", *QUICK])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: Nothing answers at 127.0.0.1:{port} (http); is the Triton server "
                                     "running and is that its port?")  # fmt: skip
    bad = cli.invoke(app, ["bench", "triton://127.0.0.1/alexnet", *QUICK])
    assert bad.exit_code == 1 and "triton://HOST:PORT/MODEL" in bad.output


# -- a real server ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny20, triton_env, tmp_path_factory):
    """A real server for one small export (20 classes, 64 px), written with --python-backend, and the export."""
    import torch

    from alexnet_deploy.core.data import Preprocessing, class_names
    from alexnet_deploy.core.models import alexnet_paper
    from alexnet_deploy.triton_local import LocalTritonServer
    from export import ExportRequest, ModelDescription, export_model

    folder = tmp_path_factory.mktemp("served-bench")
    torch.manual_seed(0)
    model = alexnet_paper(width=0.25, num_classes=20, init="kaiming").eval()
    onnx = folder / "model.fp32.onnx"
    export_model(
        model,
        onnx,
        ExportRequest(image_size=64, parity_samples=8),
        ModelDescription(
            classes=class_names(tiny20 / "train"),
            preprocessing=Preprocessing.for_crop(64),
            arch={"name": "alexnet_paper", "num_classes": 20, "width": 0.25, "columns": 2},
        ),
    )
    written = cli.invoke(app, ["triton", str(onnx), "--repo", str(folder / "repo"), "--python-backend", "--threads",
                               "1", "--max-batch-size", "8", "--max-queue-delay-us", "2000"])  # fmt: skip
    assert written.exit_code == 0, written.output
    with LocalTritonServer(triton_env, folder / "repo") as running:
        yield running, onnx


@pytest.mark.slow
def test_a_served_sweep_beside_the_in_process_runner(server, tmp_path):
    running, onnx = server
    out_json, out_png = tmp_path / "served.json", tmp_path / "served.png"
    args = ["bench", f"triton://{running.http_url}/alexnet", str(onnx), "--batch", "1", "--concurrency", "1,2",
            *QUICK, "--json", str(out_json), "--plot", str(out_png)]  # fmt: skip
    result = cli.invoke(app, args, env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "srv queue" in result.output and "conc." in result.output
    d = json.loads(out_json.read_text())
    assert d["config"]["concurrency"] == [1, 2] and d["baseline"] == "onnxruntime fp32"
    labels = [t["label"] for t in d["targets"]]
    assert labels == ["onnxruntime fp32", "triton alexnet (http)"]
    assert d["targets"][1]["served"] == f"triton://{running.http_url}/alexnet"
    assert d["targets"][1]["gflop_per_image"] == d["targets"][0]["gflop_per_image"] > 0
    rows = {(r["label"], r["concurrency"]): r for r in d["results"]}
    assert len(rows) == 4 and all(r["latency_ms"]["n"] == 6 for r in rows.values())
    for level in (1, 2):
        local, served = rows[("onnxruntime fp32", level)], rows[("triton alexnet (http)", level)]
        assert local["speedup_throughput"] == 1.0 and local["server"] is None
        assert served["speedup_throughput"] == pytest.approx(served["throughput_img_s"] / local["throughput_img_s"],
                                                             rel=1e-3)  # fmt: skip
        s = served["server"]
        # every timed request reached the server (one more per extra stream may finish after the window)
        assert 6 <= s["requests"] <= 6 + level and s["inferences"] == s["requests"]
        assert 1 <= s["executions"] <= s["requests"] and s["compute_ms"] > 0 and s["queue_ms"] >= 0
        assert s["request_ms"] >= s["compute_ms"]
        assert served["latency_ms"]["median"] >= s["compute_infer_ms"]  # the client waited at least the model
        assert served["contention"] is None or "others_cpu_cores" in served["contention"]
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_grpc_and_a_missing_model(server, tmp_path):
    running, _ = server
    result = cli.invoke(app, ["bench", f"grpc://{running.grpc_url}/alexnet", "--batch", "2", *QUICK, "--json",
                              str(tmp_path / "g.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "g.json").read_text())["results"]
    assert row["label"] == "triton alexnet (grpc)" and row["images"] == 12 and row["server"]["inferences"] >= 12
    assert row["speedup_throughput"] is None  # nothing in process to divide by
    missing = cli.invoke(app, ["bench", f"triton://{running.http_url}/resnet", *QUICK])
    assert missing.exit_code == 1
    assert missing.output.strip() == f"error: Triton at {running.http_url} has no ready model resnet."


def test_served_runner_answers_like_the_artifact(server):
    from alexnet_deploy.backends import runner_for
    from alexnet_deploy.bench.served import TritonRunner

    running, onnx = server
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with TritonRunner(parse_endpoint(f"triton://{running.http_url}/alexnet"), workers=2) as served:
        assert (served.input_shape, served.max_batch) == ((3, 64, 64), 8)
        got = served.infer(x)
    with runner_for(onnx) as own:
        np.testing.assert_allclose(got, own.infer(x), rtol=1e-5, atol=1e-5)
