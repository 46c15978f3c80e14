"""C++ against Python on the same OpenVINO engine, and an exported blob's import against the ONNX's compile.

One process drives everything, per network (width 1.0 at 224 px, seeded random weights: timing does not depend on
the values) and per engine: FP32, and the project's INT8 Q/DQ graph in the TensorRT form (calibrated with MinMax
on 64 imagenette-10 photos), each built by ``build_openvino_engine(..., export_blob=True)`` with its sidecars.

1. **Harness overhead**, batch 1 and 32, on the blob, in ``--rounds`` interleaved rounds (the order rotated every
   round): ``examples/cpp``'s ``alexnet_ov_infer --bench`` timing ``--iterations`` synchronous
   ``InferRequest::infer`` calls on one batch (a new process each round; its load and warm-up are not timed), our
   ``OpenVINORunner.infer`` (what ``bench``, ``verify`` and ``predict`` call), and bare Python
   ``InferRequest.infer()`` on an input tensor set once. The same properties (LATENCY, f32 pinned or the graph's
   int8) and threads for all three. Every call's latency is pooled per target: medians, p90, images/s (batch /
   median), and the ratio of each Python median to the C++ one.
2. **Load**: the blob's import against the ONNX engine's read + compile, ``--load-repeats`` times interleaved, in
   a fresh ``ov.Core`` each time (Python, file read included) and as the C++ program reports it (``load_ms``).

JSON goes to ``--out`` (``cpp_compare_NETWORK.json``); the tables are printed in markdown.

    .venv/bin/python benchmarks/cpp_compare.py [--models alexnet,alexnet_paper] [--threads 2] [--iterations 50]
        [--rounds 5] [--load-repeats 5] [--quick] [--force]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, ensure_artifacts  # noqa: E402
from run_benchmarks import conditions  # noqa: E402

from alexnet_deploy.backends import describe_artifact, runner_for  # noqa: E402
from alexnet_deploy.backends.openvino import (  # noqa: E402
    OpenVINOBuildOptions,
    blob_path,
    build_openvino_engine,
    openvino_status,
)
from alexnet_deploy.bench.machine import machine_info  # noqa: E402
from alexnet_deploy.core.manifest import library_versions, load_manifest, save_manifest, sidecar_path  # noqa: E402

CPP = REPO / "examples" / "cpp"
TARGETS = ("C++ alexnet_ov_infer", "Python OpenVINORunner", "bare OpenVINO Python")


def cpp_program(work: Path) -> Path:
    """``alexnet_ov_infer``, configured against the installed openvino wheel's SDK and built (incrementally)."""
    import openvino.utils

    build = work / "cpp-build"
    configure = ["cmake", "-S", str(CPP), "-B", str(build), f"-DOpenVINO_DIR={openvino.utils.get_cmake_path()}",
                 "-DALEXNET_REQUIRE_OPENVINO=ON"]  # fmt: skip
    for command in (configure, ["cmake", "--build", str(build), "--target", "alexnet_ov_infer", "-j", "2"]):
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command[:2])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return build / "alexnet_ov_infer"


def engines(name: str, work: Path, threads: int) -> dict[str, tuple[Path, Path]]:
    """precision -> (OpenVINO ONNX engine, its exported blob), both with sidecars (made once per thread count)."""
    from openvino_compare import int8_graphs

    fp32 = ensure_artifacts(name, work)["fp32"]
    sources = {"fp32": fp32, "int8": int8_graphs(name, work)["tensorrt"]}
    out = {}
    for precision, source in sources.items():
        engine = work / f"{name}.{precision}.t{threads}.ov.onnx"
        blob = blob_path(engine)
        if not (sidecar_path(engine).exists() and sidecar_path(blob).exists()):
            facts = build_openvino_engine(source, engine, OpenVINOBuildOptions(threads=threads, export_blob=True))
            base = load_manifest(fp32)
            save_manifest(engine, replace(base, kind="onnx", precision=precision, engine=facts))
            save_manifest(blob, replace(base, kind="ovblob", precision=precision, engine=facts["blob"]))
        out[precision] = (engine, blob)
    return out


def _bare(blob: Path, threads: int, x: np.ndarray):
    """A bare OpenVINO infer request on the imported blob, its input tensor set once."""
    import openvino as ov

    options = load_manifest(blob).engine["options"]
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": options["inference_precision"] or "f32",
              "INFERENCE_NUM_THREADS": threads}  # fmt: skip
    request = ov.Core().import_model(blob.read_bytes(), "CPU", config).create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))
    return request


def _timed(call, iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def overhead(exe: Path, blob: Path, threads: int, batch: int, iterations: int, rounds: int, warmup: int) -> dict:
    """Per target, every call's latency (ms) over the interleaved rounds, and the C++ program's load times."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    runner = runner_for(describe_artifact(blob), threads=threads)
    request = _bare(blob, threads, x)
    samples: dict[str, list[float]] = {t: [] for t in TARGETS}
    cpp_loads = []

    def cpp() -> None:
        command = [str(exe), str(blob), "--bench", str(iterations), "--batch", str(batch), "--warmup", str(warmup),
                   "--threads", str(threads)]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"alexnet_ov_infer failed: {proc.stderr.strip()}")
        result = json.loads(proc.stdout)
        samples[TARGETS[0]].extend(result["latencies_ms"])
        cpp_loads.append(result["load_ms"])

    with runner:
        steps = {
            TARGETS[0]: cpp,
            TARGETS[1]: lambda: samples[TARGETS[1]].extend(_timed(lambda: runner.infer(x), iterations, warmup)),
            TARGETS[2]: lambda: samples[TARGETS[2]].extend(_timed(request.infer, iterations, warmup)),
        }
        for r in range(rounds):
            order = TARGETS[r % 3 :] + TARGETS[: r % 3]
            for target in order:
                steps[target]()
    return {"batch": batch, "samples_ms": samples, "cpp_load_ms": cpp_loads}


def summarise(samples: dict[str, list[float]], batch: int) -> dict[str, dict]:
    """Median, p90 and images/s per target, and each target's median against the C++ one."""
    cpp_median = statistics.median(samples[TARGETS[0]])
    out = {}
    for target, values in samples.items():
        median = statistics.median(values)
        out[target] = {"calls": len(values), "median_ms": median, "p90_ms": float(np.percentile(values, 90)),
                       "images_per_s": batch / median * 1e3, "vs_cpp": median / cpp_median}  # fmt: skip
    return out


def load_times(exe: Path, engine: Path, blob: Path, threads: int, repeats: int) -> dict[str, list[float]]:
    """ONNX read + compile against blob import (ms), interleaved, in Python (fresh cores) and in C++."""
    import openvino as ov

    options = load_manifest(blob).engine["options"]
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": options["inference_precision"] or "f32",
              "INFERENCE_NUM_THREADS": threads}  # fmt: skip

    def compile_onnx() -> None:
        core = ov.Core()
        core.compile_model(core.read_model(str(engine)), "CPU", config)

    def import_blob() -> None:
        ov.Core().import_model(blob.read_bytes(), "CPU", config)

    def cpp_load(path: Path) -> float:
        command = [str(exe), str(path), "--bench", "1", "--warmup", "0", "--threads", str(threads)]
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["load_ms"]

    out: dict[str, list[float]] = {"python onnx": [], "python blob": [], "cpp onnx": [], "cpp blob": []}
    calls = [("python onnx", compile_onnx), ("python blob", import_blob),
             ("cpp onnx", lambda: cpp_load(engine)), ("cpp blob", lambda: cpp_load(blob))]  # fmt: skip
    for i in range(repeats):
        for key, call in calls if i % 2 == 0 else calls[::-1]:
            out[key].append(call() if key.startswith("cpp") else _timed(call, 1, 0)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/alexnet-bench"), help="artifact and build cache folder")
    ap.add_argument("--out", type=Path, default=None, help="JSON folder (default benchmarks/results; --quick: --work)")
    ap.add_argument("--models", default="alexnet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=50, help="timed calls per target, batch and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls before each target's timed calls")
    ap.add_argument("--load-repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="a few calls, to check the script (figures unreliable)")
    ap.add_argument("--max-load", type=float, default=0.8)
    ap.add_argument("--force", action="store_true", help="measure even on a busy machine")
    args = ap.parse_args()
    if args.quick:
        args.iterations, args.rounds, args.warmup, args.load_repeats = 3, 1, 1, 1
    before = conditions()
    if before["load_average"][0] > args.max_load and not args.force:
        print(f"The 1-minute load is {before['load_average'][0]} (busy: {before['busy']}); wait, or pass --force.")
        raise SystemExit(1)
    out = args.out or (args.work / "quick-results" if args.quick else REPO / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    exe = cpp_program(args.work)
    command = " ".join(["python", *sys.argv])
    for name in args.models.split(","):
        report: dict = {"command": command, "model": name, "threads": args.threads, "quick": args.quick,
                        "machine": machine_info(), "versions": library_versions(),
                        "openvino": openvino_status()["version"], "engines": {}}  # fmt: skip
        print(f"\n### {name}: C++ vs Python on the same OpenVINO blob ({args.threads} threads)\n")
        print("| engine | batch | C++ median ms | runner median ms | bare Python median ms | C++ img/s | "
              "runner / C++ | bare / C++ |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        loads = {}
        for precision, (engine, blob) in engines(name, args.work, args.threads).items():
            rows = []
            for batch in (1, 32):
                run = overhead(exe, blob, args.threads, batch, args.iterations, args.rounds, args.warmup)
                stats = summarise(run["samples_ms"], batch)
                rows.append(run | {"stats": stats})
                c, r, b = (stats[t] for t in TARGETS)
                print(f"| {precision} | {batch} | {c['median_ms']:.2f} | {r['median_ms']:.2f} | {b['median_ms']:.2f} | "
                      f"{c['images_per_s']:.1f} | {r['vs_cpp']:.3f} | {b['vs_cpp']:.3f} |")  # fmt: skip
            loads[precision] = load_times(exe, engine, blob, args.threads, args.load_repeats)
            report["engines"][precision] = {"engine": str(engine), "blob": str(blob), "overhead": rows,
                                            "load_ms": loads[precision]}  # fmt: skip
        print("\n| engine | ONNX read + compile, Python ms | blob import, Python ms | blob / ONNX | ONNX, C++ ms | "
              "blob, C++ ms | blob / ONNX |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for precision, times in loads.items():
            m = {k: statistics.median(v) for k, v in times.items()}
            print(f"| {precision} | {m['python onnx']:.0f} | {m['python blob']:.0f} | "
                  f"{m['python blob'] / m['python onnx']:.2f} | {m['cpp onnx']:.0f} | {m['cpp blob']:.0f} | "
                  f"{m['cpp blob'] / m['cpp onnx']:.2f} |")  # fmt: skip
        report["before"], report["after"] = before, conditions()
        (out / f"cpp_compare_{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nload average before / after: {before['load_average']} / {report['after']['load_average']}; "
              f"JSON in {out / f'cpp_compare_{name}.json'}")  # fmt: skip


if __name__ == "__main__":
    main()
