"""Is the bench's own overhead invisible? Its ONNX Runtime FP32 batch-1 median vs a bare ``session.run`` loop.

Both loops drive the same InferenceSession on the same input, alternating in rounds so that any drift of the
machine hits both; the script prints both medians and their difference (the target: within 3%).

    .venv/bin/python benchmarks/bench_overhead.py [--model alexnet] [--rounds 10] [--seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_artifacts  # noqa: E402

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner  # noqa: E402
from alexnet_deploy.bench import BenchConfig, BenchTarget, LatencyStats, measure_target  # noqa: E402
from alexnet_deploy.core.files import write_json_atomic  # noqa: E402


def bare_loop(session, feed: dict, seconds: float) -> list[float]:
    """session.run timed with perf_counter and nothing else."""
    out, times = None, []
    session.run(out, feed)  # the same one discarded call the bench makes after a switch
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        session.run(out, feed)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= end:
            return times


def measure_overhead(model: str, work: Path, threads: int = 2, rounds: int = 10, seconds: float = 2.0) -> dict:
    """Both medians and their relative difference, from alternating rounds on one session."""
    onnx_path = ensure_artifacts(model, work)["fp32"]
    runner = OnnxRuntimeRunner(onnx_path, threads=threads)
    target = BenchTarget("onnxruntime fp32", runner)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    config = BenchConfig(batch_sizes=(1,), warmup_s=2.0, duration_s=seconds, rounds=1)
    bench_lat: list[float] = []
    bare_lat: list[float] = []
    with runner:
        feed = {runner.input_name: x}
        for r in range(rounds):
            lat, _, _ = measure_target(target, x, config, warm=(r == 0), rounds=1)
            bench_lat += lat
            bare_lat += bare_loop(runner.session, feed, seconds)
    b, s = LatencyStats.from_samples(bench_lat), LatencyStats.from_samples(bare_lat)
    diff = b.median / s.median - 1
    return {
        "model": model,
        "threads": threads,
        "bench_median_ms": round(b.median * 1e3, 3),
        "bare_median_ms": round(s.median * 1e3, 3),
        "bench_calls": b.n,
        "bare_calls": s.n,
        "difference": round(diff, 4),
        "within_3_percent": abs(diff) <= 0.03,
        "bench_p90_ms": round(b.p90 * 1e3, 3),
        "bare_p90_ms": round(s.p90 * 1e3, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="alexnet")
    ap.add_argument("--work", type=Path, default=Path("/tmp/alexnet-bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=2.0, help="per round and loop")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    r = measure_overhead(args.model, args.work, args.threads, args.rounds, args.seconds)
    print(
        f"bench harness : median {r['bench_median_ms']:.3f} ms over {r['bench_calls']} calls (p90 {r['bench_p90_ms']})"
    )
    print(f"bare run loop : median {r['bare_median_ms']:.3f} ms over {r['bare_calls']} calls (p90 {r['bare_p90_ms']})")
    inside = "within" if r["within_3_percent"] else "OUTSIDE"
    print(f"difference    : {r['difference']:+.2%} ({inside} the 3% target)")
    if args.json:
        write_json_atomic(args.json, r)


if __name__ == "__main__":
    main()
