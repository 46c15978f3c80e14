"""What serving costs: a real Triton server against the in-process runner, a concurrency sweep, the dynamic
batcher with and without preferred sizes, and the capacity estimate docs/BENCHMARKS.md states.

    .venv/bin/python benchmarks/served_sweep.py [--out out/served] [--duration-s 4] [--concurrency 1,2,4,8,16]

Steps (everything through the product's own commands):

1. torchvision's AlexNet at 224 px with seeded random weights and the 10 classes of fixture-imagenette-10 (the
   classifier's last layer is 0.6% of the work, so timing is a 1000-class model's), exported to FP32 ONNX by
   ``alexnet-deploy export``; with ``--engine openvino-int8``, the INT8 OpenVINO engine ``alexnet-deploy build
   --int8 --backend openvino`` makes from it (calibrated on those photos; the gate opened wide, since random weights
   have no accuracy to keep), the fastest engine on an Intel CPU with VNNI/AMX (docs/BENCHMARKS.md);
2. three models written by ``alexnet-deploy triton --python-backend --threads T`` from that one file:
   ``alexnet_nobatch`` (``--max-batch-size 1``: every request runs alone), ``alexnet_batch`` (the dynamic batcher,
   ``--max-batch-size 16``, no preferred sizes) and ``alexnet_pref`` (the same with ``--preferred-batch 4,8``);
3. a real ``tritonserver`` (alexnet_deploy.triton_local) serving them on 127.0.0.1;
4. ``alexnet-deploy bench`` of the three served models beside the in-process runner of the same file,
   single images (``--batch 1``: what clients of a server send), over HTTP, at every concurrency, interleaved;
5. from the JSON: the table, the batcher's gain, and the capacity estimate (instances for a target load at a p99
   bound), printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ALEXNET_DEPLOY_DATA", REPO.parent / "shared" / "data")) / "fixture-imagenette-10"

MODELS = {  # name -> extra `alexnet-deploy triton` options
    "alexnet_nobatch": ["--max-batch-size", "1"],
    "alexnet_batch": ["--max-batch-size", "16"],
    "alexnet_pref": ["--max-batch-size", "16", "--preferred-batch", "4,8"],
}
CLI = [str(Path(sys.executable).parent / "alexnet-deploy")]  # the console script of this environment


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "out" / "served")
    p.add_argument("--duration-s", type=float, default=4.0, help="timed seconds per target and level (2 rounds)")
    p.add_argument("--concurrency", default="1,2,4,8,16")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="runtime threads, server and in process")
    p.add_argument("--target-load", type=float, default=10_000.0, help="images/s the capacity estimate is for")
    p.add_argument("--p99-ms", type=float, default=50.0, help="the latency bound of the capacity estimate")
    p.add_argument("--utilisation", type=float, default=0.7, help="planned share of measured capacity")
    p.add_argument("--engine", choices=("onnxruntime-fp32", "openvino-int8"), default="onnxruntime-fp32")
    return p.parse_args(argv)


def write_repository(onnx: Path, repo: Path, threads: int) -> None:
    for name, extra in MODELS.items():
        if (repo / name).exists():
            continue
        cmd = [*CLI, "triton", str(onnx), "--repo", str(repo), "--name", name, "--python-backend", "--threads",
               str(threads), *extra]  # fmt: skip
        subprocess.run(cmd, check=True)


def export_fp32(work: Path) -> Path:
    """The FP32 ONNX of a seeded random-weight torchvision AlexNet with imagenette's 10 classes, made once."""
    import torch

    from alexnet_deploy.core.checkpoint import save_checkpoint
    from alexnet_deploy.core.data import Preprocessing, class_names
    from alexnet_deploy.core.models import build_model

    out = work / "alexnet.fp32.onnx"
    if not out.exists():
        work.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = build_model("alexnet", num_classes=10)
        save_checkpoint(work / "alexnet.pt", {"model": model.state_dict(), "classes": class_names(DATA / "train"),
                                              "arch": {"name": "alexnet", "num_classes": 10, "width": 1.0,
                                                       "columns": 1},
                                              "preprocessing": Preprocessing().to_dict()})  # fmt: skip
        subprocess.run([*CLI, "export", str(work / "alexnet.pt"), "-o", str(out)], check=True)
    return out


def openvino_int8(fp32: Path) -> Path:
    """The INT8 OpenVINO engine of ``fp32``, built once by the CLI."""
    out = fp32.with_name("alexnet.int8.ov.onnx")
    if not out.exists():
        subprocess.run([*CLI, "build", str(fp32), "--int8", "--backend", "openvino", "--calib-data", str(DATA),
                        "--eval-data", str(DATA), "--calib-method", "minmax", "--num-calib-images", "64",
                        "--holdout-images", "16", "--eval-limit", "50", "--max-fallback-layers", "0",
                        "--max-top1-drop", "100", "--max-top5-drop", "100", "--probe-batch", "", "-o", str(out)],
                       check=True)  # fmt: skip
    return out


def capacity(rows: list[dict], p99_ms: float) -> dict | None:
    """The highest throughput among the levels whose p99 stays within the bound."""
    fitting = [r for r in rows if r["latency_ms"]["p99"] <= p99_ms]
    return max(fitting, key=lambda r: r["throughput_img_s"]) if fitting else None


def report(d: dict, args: argparse.Namespace) -> str:
    """Markdown: the sweep table, the batcher's gain, the capacity estimate."""
    rows = d["results"]
    labels = [t["label"] for t in d["targets"]]
    lines = ["| target | conc. | p50 ms | p90 ms | p99 ms | img/s | vs in-process | srv queue ms | srv compute ms "
             "| srv batch | others' cores |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label in labels:
        for r in sorted((r for r in rows if r["label"] == label), key=lambda r: r["concurrency"]):
            lat, s, c = r["latency_ms"], r["server"] or {}, r["contention"] or {}
            flag = "" if c.get("reliable", True) else " !"
            nan = float("nan")
            lines.append(f"| {label} | {r['concurrency']} | {lat['median']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} "
                         f"| {r['throughput_img_s']:.1f} | {r['speedup_throughput'] or 0:.2f} "
                         f"| {s.get('queue_ms', nan):.1f} | {s.get('compute_ms', nan):.1f} | {s.get('batch', nan):.2f} "
                         f"| {c.get('others_cpu_cores', nan):.2f}{flag} |")  # fmt: skip
    by = {label: [r for r in rows if r["label"] == label] for label in labels}
    top = {label: max(r["throughput_img_s"] for r in rs) for label, rs in by.items()}
    served = [label for label in labels if label.startswith("triton ")]
    nobatch = next(label for label in served if "nobatch" in label)
    lines += ["", "Peak images/s: " + ", ".join(f"{label} {top[label]:.1f}" for label in labels)]
    for label in served:
        if label != nobatch:
            lines.append(f"- {label}: {top[label] / top[nobatch]:.2f}x the peak without batching")
    lines += ["", f"Capacity at p99 <= {args.p99_ms:g} ms, planned at {args.utilisation:.0%} of it, for "
              f"{args.target_load:,.0f} images/s:"]  # fmt: skip
    for label in labels:
        # In process, only one stream is a fair figure: OpenVINO's LATENCY hint has one infer request, and a Python
        # thread that returns it takes it straight back, so the other streams starve (and are not counted).
        best = capacity(by[label] if label in served else [r for r in by[label] if r["concurrency"] == 1], args.p99_ms)
        if best is None:
            lines.append(f"- {label}: no level kept p99 within {args.p99_ms:g} ms")
            continue
        per = best["throughput_img_s"] * args.utilisation
        machines = math.ceil(args.target_load / per)
        lines.append(f"- {label}: {best['throughput_img_s']:.1f} images/s at concurrency {best['concurrency']} "
                     f"(p99 {best['latency_ms']['p99']:.1f} ms) -> {machines} such machines")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    from alexnet_deploy.triton_local import LocalTritonServer, ensure_server_env

    args.out.mkdir(parents=True, exist_ok=True)
    onnx = export_fp32(args.out / "artifacts")
    if args.engine == "openvino-int8":
        onnx = openvino_int8(onnx)
    repo = args.out / f"repo-{args.engine}"
    write_repository(onnx, repo, args.threads)
    env = ensure_server_env()
    out_json = args.out / f"served-{args.engine}.json"
    with LocalTritonServer(env, repo) as server:
        cmd = [*CLI, "bench", *(f"triton://{server.http_url}/{name}" for name in MODELS), str(onnx), "--batch", "1",
               "--concurrency", args.concurrency, "--threads", str(args.threads), "--warmup-s", "1", "--duration-s",
               str(args.duration_s), "--rounds", "2", "--json", str(out_json), "--plot",
               str(out_json.with_suffix(".png"))]  # fmt: skip
        print("$ alexnet-deploy", " ".join(cmd[1:]).replace(server.http_url, "127.0.0.1:PORT"), flush=True)
        subprocess.run(cmd, check=True, env=dict(os.environ, COLUMNS="200"))
    d = json.loads(out_json.read_text())
    text = report(d, args)
    out_json.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
