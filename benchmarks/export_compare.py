"""Our FP32 export (one native LRN node per layer) against the default dynamo exporter's graph (LRN
decomposed into Pow/Div/AveragePool/...), in ONNX Runtime on this CPU, side by side in one interleaved run.

For each model: both graphs are built from the same random weights, checked against PyTorch, then timed by
:func:`alexnet_deploy.bench.run_benchmark` (warm-up, interleaved rounds, percentiles): batch-1 latency and
batch-32 throughput. ``alexnet`` has no LRN, so its two graphs are the same: its ratio is the noise floor.

    .venv/bin/python benchmarks/export_compare.py [--models alexnet_paper alexnet] [--duration-s 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.bench import BenchConfig, BenchTarget, machine_info, run_benchmark
from alexnet_deploy.core.files import write_json_atomic
from alexnet_deploy.core.manifest import library_versions
from alexnet_deploy.core.models import build_model, profile_model
from export import build_onnx, check_parity

OURS, DEFAULT = "ours (native LRN)", "default exporter"


def _graphs(name: str, width: float, image_size: int) -> tuple[dict[str, bytes], dict[str, dict]]:
    torch.manual_seed(0)
    model = build_model(name, width=width).eval()
    inputs = torch.randn(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    graphs, facts = {}, {}
    for label, native in ((OURS, True), (DEFAULT, False)):
        proto = build_onnx(model, image_size, native_lrn_op=native)
        data = proto.SerializeToString()
        parity = check_parity(data, model, inputs, "fp32", "random inputs")
        ops = Counter(n.op_type for n in proto.graph.node)
        graphs[label] = data
        facts[label] = {
            "nodes": sum(ops.values()),
            "lrn_nodes": ops.get("LRN", 0),
            "max_rel_error": parity.max_rel_error,
        }
    return graphs, facts


def _op_times(data: bytes, image_size: int, batch: int = 32, runs: int = 3) -> dict[str, float]:
    """Milliseconds per run spent in each op type, from ONNX Runtime's profiler (one session, ``runs`` runs)."""
    import onnxruntime as ort

    from alexnet_deploy.backends.onnxruntime import session_options

    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, image_size, image_size), dtype=np.float32)
        session.run(None, {"images": x})  # the first run is profiled too: divide by runs + 1
        for _ in range(runs):
            session.run(None, {"images": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    return {op: round(us / (runs + 1) / 1e3, 1) for op, us in per_op.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["alexnet_paper", "alexnet"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="timed seconds per graph and batch size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--profile", action="store_true", help="also print ms per op type at batch 32")
    args = parser.parse_args()

    config = BenchConfig(batch_sizes=(1, 32), warmup_s=2.0, duration_s=args.duration_s, rounds=args.rounds)
    results = {"machine": machine_info(), "versions": library_versions(), "config": vars(args), "models": {}}
    rows = []
    for name in args.models:
        graphs, facts = _graphs(name, args.width, args.image_size)
        flops = profile_model(build_model(name, width=args.width), args.image_size).flops
        targets = [
            BenchTarget(
                label=label,
                runner=OnnxRuntimeRunner(data, threads=args.threads, name=label),
                flops_per_image=flops,
                image_shape=(3, args.image_size, args.image_size),
            )
            for label, data in graphs.items()
        ]
        report = run_benchmark(targets, config, baseline=DEFAULT)
        results["models"][name] = {"graphs": facts, "report": report.to_dict()}
        if args.profile:
            for label, data in graphs.items():
                facts[label]["op_ms_batch32"] = times = _op_times(data, args.image_size)
                print(f"{name}, {label}: ms per batch-32 run by op type: {times}")
        for label in graphs:
            b1, b32 = report.get(label, 1), report.get(label, 32)
            rows.append(
                (
                    name,
                    label,
                    facts[label]["nodes"],
                    facts[label]["lrn_nodes"],
                    f"{facts[label]['max_rel_error']:.1e}",
                    f"{b1.latency.median * 1e3:.1f}",
                    f"{b1.latency.p90 * 1e3:.1f}",
                    f"{b1.speedup_latency:.2f}",
                    f"{b32.throughput:.1f}",
                    f"{b32.speedup_throughput:.2f}",
                )
            )
    head = ("model", "graph", "nodes", "LRN", "rel err", "b1 median ms", "b1 p90 ms", "b1 x", "b32 img/s", "b32 x")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print(f"ratios: the default exporter's graph = 1.00 (higher is faster); {json.dumps(results['machine'])}")
    if args.json:
        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
