"""TensorRT-RTX plans built on this machine (no GPU needed): build time and plan size per network and precision.

Both networks at width 1.0, 224 px, 1000 classes, seeded random weights (``benchmarks/common.py``); FP16 is
``export.convert_fp16`` of the FP32 export, INT8 the TensorRT-form Q/DQ from ``calib.calibrate`` (minmax, 32
images of fixture-imagenette-10). Each plan is built with the default targets and a 1/8/32 batch profile, once:
build times are one run each on a shared machine, sizes are exact. Prints a Markdown table and writes JSON.

    python benchmarks/rtx_build.py [--work /tmp/alexnet-bench] [--models alexnet,alexnet_paper]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import REPO, ensure_artifacts  # benchmarks/ is on sys.path when run as a script

DATA = REPO.parent / "shared" / "data" / "fixture-imagenette-10"


def build_all(name: str, work: Path) -> list[dict]:
    from alexnet_deploy.backends.tensorrt.rtx import RTXBuildOptions, build_rtx_plan
    from calib import calibrate
    from calib.request import CalibrationRequest

    art = ensure_artifacts(name, work)
    int8 = work / f"{name}.int8.tensorrt.onnx"
    if not int8.exists():
        calibrate(
            art["fp32"],
            CalibrationRequest.for_target("tensorrt", data=DATA, method="minmax", num_images=32, use_cache=False),
            int8,
        )
    rows = []
    for precision, onnx in (("fp32", art["fp32"]), ("fp16", art["fp16"]), ("int8", int8)):
        plan = work / f"{name}.{precision}.rtx.plan"
        start = time.perf_counter()
        facts = build_rtx_plan(onnx, plan, RTXBuildOptions(min_batch=1, opt_batch=8, max_batch=32))
        rows.append({"model": name, "precision": precision, "build_seconds": round(time.perf_counter() - start, 2),
                     "plan_bytes": plan.stat().st_size, "targets": facts.get("compute_capabilities"),
                     "tensorrt_rtx": facts.get("tensorrt_rtx_version")})  # fmt: skip
        plan.unlink()
    fp32 = rows[0]["plan_bytes"]
    for r in rows:
        r["size_vs_fp32"] = round(r["plan_bytes"] / fp32, 3)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/alexnet-bench"))
    ap.add_argument("--models", default="alexnet,alexnet_paper")
    args = ap.parse_args()
    rows = [r for name in args.models.split(",") for r in build_all(name, args.work)]
    print("| network | precision | build s | plan MB | vs FP32 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['build_seconds']:.2f} | {r['plan_bytes'] / 1e6:.1f} | "
              f"{r['size_vs_fp32']:.2f} |")  # fmt: skip
    from alexnet_deploy.core.files import write_json_atomic

    out = REPO / "benchmarks" / "results" / "rtx_build.json"
    write_json_atomic(out, rows)
    print(f"\ntargets {rows[0]['targets']}, TensorRT-RTX {rows[0]['tensorrt_rtx']}; JSON in {out}")


if __name__ == "__main__":
    main()
