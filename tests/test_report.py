from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from alexnet_deploy.report import render_markdown, write_report  # noqa: E402

RESULTS = {
    "title": "test report",
    "data": {"path": "/d", "synthetic": True, "classes": 3, "train_images": 30, "val_images": 9},
    "training": {
        "checkpoint": "/o/best.pt",
        "epochs": 2,
        "wall_s": 12.0,
        "top1": 50.0,
        "top5": 100.0,
        "curves_png": "curves.png",
    },
    "accuracy": [
        {
            "artifact": "/o/model.fp32.onnx",
            "backend": "onnxruntime",
            "precision": "fp32",
            "top1": 50.0,
            "top5": 100.0,
            "agreement": 100.0,
        },
        {
            "artifact": "/o/model.int8.onnx",
            "backend": "onnxruntime",
            "precision": "int8",
            "top1": 44.44,
            "top5": 100.0,
            "agreement": 88.89,
        },
    ],
    "gate": {"max_top1_drop": 0.5, "max_top5_drop": 0.5, "top1_drop": 5.56, "top5_drop": 0.0, "passed": False},
    "bench": {
        "baseline": "torch eager fp32",
        "rows": [
            {
                "name": "torch eager fp32",
                "batch": 1,
                "median_ms": 10.0,
                "p90_ms": 11.0,
                "p99_ms": 12.0,
                "throughput": 100.0,
                "ratio": 1.0,
            }
        ],
    },
    "system": {"versions": {"torch": "2.14.1"}, "cpu": "x86_64", "gpus": []},
}


def test_markdown_has_every_section_and_the_synthetic_warning():
    md = render_markdown(RESULTS)
    for title in ("## Data", "## Training", "## Accuracy", "## Latency and throughput", "## Versions and hardware"):
        assert title in md
    assert "SYNTHETIC" in md
    assert "| model.int8.onnx | onnxruntime | int8 | 44.44% | 100.00% | 88.89% |" in md
    assert "Accuracy gate FAILED: INT8 top-1 drop 5.56 points (allowed 0.5)" in md


def test_write_report_embeds_images_in_html(tmp_path):
    fig = plt.figure()
    plt.plot([0, 1])
    fig.savefig(tmp_path / "curves.png")
    plt.close(fig)
    write_report(tmp_path, RESULTS)
    assert json.loads((tmp_path / "results.json").read_text())["gate"]["passed"] is False
    assert "![Training](curves.png)" in (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "<table>" in page


def _with(**changes) -> dict:
    results = json.loads(json.dumps(RESULTS))
    for key, value in changes.items():
        results[key] = value
    return results


def test_figures_taken_under_contention_are_marked_unreliable():
    rows = [
        dict(RESULTS["bench"]["rows"][0], others_cpu_cores=0.82, reliable=False),
        dict(RESULTS["bench"]["rows"][0], batch=8, others_cpu_cores=0.02, reliable=True),
    ]
    contention = {"others_cpu_fraction": 0.205, "threshold": 0.05, "reliable": False, "others_cpu_cores": 0.41,
                  "threshold_cores": 0.1, "cores": 2, "window_s": 4.0, "others_cpu_s": 1.64}  # fmt: skip
    md = render_markdown(_with(bench={"baseline": "torch eager fp32", "rows": rows, "contention": contention}))
    assert "**UNRELIABLE: 1 of 2 figures were taken under contention** (other processes used 0.41 of 2 cores" in md
    assert "(20.5% of the machine)" in md and "the threshold is 0.1 core" in md
    assert "| torch eager fp32 | 1 | 10.00 | 11.00 | 12.00 | 100.0 | 1.00 | 0.82 (unreliable) |" in md
    assert "| torch eager fp32 | 8 | 10.00 | 11.00 | 12.00 | 100.0 | 1.00 | 0.02 |" in md
    quiet = dict(contention, reliable=True, others_cpu_cores=0.01, others_cpu_fraction=0.005)
    rows[0].update(others_cpu_cores=0.01, reliable=True)
    md = render_markdown(_with(bench={"baseline": "torch eager fp32", "rows": rows, "contention": quiet}))
    assert "UNRELIABLE" not in md and "Measured on a quiet machine: other processes used 0.01 of 2 cores" in md


def test_hardware_table_names_the_cpu_model_and_its_simd_features():
    system = {"versions": {"torch": "2.14.1"}, "cpu": "x86_64 Intel(R) Xeon(R) Platinum 8480+", "cores": 2,
              "simd": ["avx2", "avx512f", "avx512_vnni", "amx_int8"], "gpus": []}  # fmt: skip
    md = render_markdown(_with(system=system))
    assert "| cpu | x86_64 Intel(R) Xeon(R) Platinum 8480+ |" in md
    assert "| simd | avx2, avx512f, avx512_vnni, amx_int8 |" in md and "| cores | 2 |" in md


def test_accuracy_says_how_many_images_were_evaluated_and_skipped():
    acc = [dict(r, num_images=197, unreadable_skipped=4, unreadable_examples=["a.JPEG", "b.JPEG", "c.JPEG"])
           for r in RESULTS["accuracy"]]  # fmt: skip
    md = render_markdown(_with(accuracy=acc))
    assert "197 validation images evaluated; 4 unreadable skipped (`a.JPEG`, `b.JPEG`, `c.JPEG`, ...)." in md
    clean = [dict(r, num_images=200, unreadable_skipped=0, unreadable_examples=[]) for r in RESULTS["accuracy"]]
    assert "200 validation images evaluated; 0 unreadable skipped." in render_markdown(_with(accuracy=clean))


def test_cpu_features_are_read_from_cpuinfo():
    from alexnet_deploy.bench.machine import cpu_features

    text = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n"
    )
    info = cpu_features(text)
    assert info["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["simd"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                            "amx_int8", "amx_bf16"]  # fmt: skip
    assert cpu_features("Features\t: fp asimd asimddp sve i8mm\n")["simd"] == ["asimd", "asimddp", "sve", "i8mm"]
