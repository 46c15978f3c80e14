"""Learning curves as a PNG (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from alexnet_deploy.core.files import atomic_path

__all__ = ["plot_curves"]


def plot_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Draw loss, top-1/top-5 accuracy and learning rate per epoch from ``metrics.jsonl`` records.

    Returns:
        ``path``, written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for key, label in (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5")):
        ax_acc.plot(epochs, [100 * r[key] for r in history], "o-", label=label)
    ax_acc.set(xlabel="epoch", ylabel="%", title="accuracy")
    ax_lr.plot(epochs, [r["lr"] for r in history], "o-")
    ax_lr.set(xlabel="epoch", ylabel="lr at epoch end", title="learning rate")
    if all(r["lr"] > 0 for r in history):
        ax_lr.set_yscale("log")
    for ax in (ax_loss, ax_acc):
        ax.legend()
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return Path(path)
