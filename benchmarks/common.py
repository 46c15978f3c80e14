"""What the benchmark scripts share: the artifacts they measure, real images, and markdown tables.

Artifacts are made here from seeded random weights (no download): a checkpoint in our format, its FP32 and FP16
ONNX through the project's exporter (native LRN), and for the paper's network the same FP32 graph with the LRN
decomposed as torch's exporter writes it by default. Timing does not depend on the weights' values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# ALEXNET_DEPLOY_DATA as in the tests (a worktree's parent holds no shared/)
IMAGENETTE = Path(os.environ.get("ALEXNET_DEPLOY_DATA", REPO.parent / "shared" / "data")) / "fixture-imagenette-10"


def ensure_checkpoint(name: str, work: Path, seed: int = 0) -> Path:
    """A checkpoint in our format with seeded random weights (needs torch and this package only)."""
    import torch

    from alexnet_deploy.core.checkpoint import save_checkpoint
    from alexnet_deploy.core.data import Preprocessing
    from alexnet_deploy.core.models import build_model

    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / f"{name}.pt"
    if not ckpt.exists():
        torch.manual_seed(seed)
        # Kaiming weights keep activations normal-sized (the paper's N(0, 0.01) would shrink them to denormals).
        model = build_model(name, **({"init": "kaiming"} if name == "alexnet_paper" else {}))
        arch = {"name": name, "num_classes": 1000, "width": 1.0, "columns": 2 if name == "alexnet_paper" else 1}
        save_checkpoint(
            ckpt,
            {
                "model": model.state_dict(),
                "arch": arch,
                "classes": [f"class{i}" for i in range(1000)],
                "preprocessing": Preprocessing().to_dict(),
            },
        )
    return ckpt


def ensure_artifacts(name: str, work: Path, seed: int = 0) -> dict[str, Path]:
    """Checkpoint, FP32 and FP16 ONNX (and, for alexnet_paper, a decomposed-LRN FP32 ONNX), made once."""
    import torch

    from export.onnx_export import ExportRequest, export_onnx

    ckpt = ensure_checkpoint(name, work, seed)
    out = {"ckpt": ckpt}
    for precision in ("fp32", "fp16"):
        path = work / f"{name}.{precision}.onnx"
        if not path.exists():
            export_onnx(ckpt, path, ExportRequest(precision=precision, parity_samples=8))
        out[precision] = path
    if name == "alexnet_paper":
        path = work / f"{name}.fp32_decomposed_lrn.onnx"
        if not path.exists():
            from alexnet_deploy.core.checkpoint import load_model

            model = load_model(ckpt).model
            batch = torch.export.Dim("batch", min=1, max=256)
            torch.onnx.export(
                model,
                (torch.randn(2, 3, 224, 224),),
                str(path),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: batch}},
                dynamo=True,
                verbose=False,
            )
        out["fp32_decomposed_lrn"] = path
    return out


def load_images(n_cal: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed real photos (imagenette-10, 224 px): ``n_cal`` train images and ``n_val`` val images."""
    import torch

    from alexnet_deploy.core.data import ImageFolderDataset, eval_transform

    def take(split: str, n: int) -> np.ndarray:
        ds = ImageFolderDataset(IMAGENETTE / split, transform=eval_transform())
        step = max(1, len(ds) // n)
        return torch.stack([ds[i][0] for i in range(0, step * n, step)][:n]).numpy()

    return take("train", n_cal), take("val", n_val)


def ratio_table(report, extra: dict[str, str] | None = None, extra_name: str = "") -> str:
    """Markdown: one row per target, median latency and throughput per batch size, ratios vs the baseline
    (median-latency ratio at batch 1, throughput ratio at larger batches)."""
    batches = list(report.config.batch_sizes)
    head = ["variant"]
    for b in batches:
        head += [f"b{b} median ms", f"b{b} img/s", f"b{b} x"]
    head.append(f"b{batches[-1]} of ceiling")
    if extra is not None:
        head.append(extra_name)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in report.targets:
        row = [t["label"]]
        for b in batches:
            m = report.get(t["label"], b)
            # batch 1 is a latency question, larger batches a throughput one
            x = m.speedup_latency if b == 1 else m.speedup_throughput
            row += [f"{m.latency.median * 1e3:.1f}", f"{m.throughput:.1f}", f"{x:.2f}" if x else ""]
        frac = report.get(t["label"], batches[-1]).fraction_of_ceiling
        row.append(f"{frac:.0%}" if frac is not None else "")
        if extra is not None:
            row.append(extra.get(t["label"], ""))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
