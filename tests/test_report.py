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
