"""The benchmark's picture: median latency and throughput per batch size, with the ratios; for a concurrency
sweep, throughput against p99 latency (one line per target and batch size through its concurrency levels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alexnet_deploy.bench.results import BenchReport
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.files import atomic_path
from alexnet_deploy.core.text import plot_text


def save_plot(report: BenchReport, path: str | Path) -> Path:
    """Draw median latency and throughput per batch size for every target (PNG), atomically.

    Raises:
        ConfigError: the path does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"The plot is written as PNG; give a file name ending in .png, not {path.name}.")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if len(report.config.concurrency) > 1:
        fig = _sweep_figure(plt, report)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return path
    labels = [t["label"] for t in report.targets]
    batches = list(report.config.batch_sizes)
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(batches))
    for i, label in enumerate(labels):
        ms = [report.get(label, b).latency.median * 1e3 for b in batches]
        thr = [report.get(label, b).throughput for b in batches]
        ax_lat.bar(x + i * width, ms, width, label=plot_text(label))  # labels name files: no mathtext
        bars = ax_thr.bar(x + i * width, thr, width, label=plot_text(label))
        for bar, b in zip(bars, batches, strict=True):
            ratio = report.get(label, b).speedup_throughput
            if ratio is not None:
                ax_thr.annotate(
                    f"{ratio:.2f}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    for ax, title in ((ax_lat, "median latency (ms)"), (ax_thr, "throughput (images/s)")):
        ax.set_xticks(x + width * (len(labels) - 1) / 2, [f"batch {b}" for b in batches])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    ax_lat.legend(fontsize=8)
    if report.baseline:
        ax_thr.set_title(plot_text(f"throughput (images/s); ratios vs {report.baseline}"), fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _sweep_figure(plt, report: BenchReport):
    """Throughput against p99 latency, each point a concurrency level (the curve a capacity plan reads)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for label in [t["label"] for t in report.targets]:
        for batch in report.config.batch_sizes:
            points = [report.get(label, batch, c) for c in report.config.concurrency]
            x = [m.latency.p99 * 1e3 for m in points]
            y = [m.throughput for m in points]
            ax.plot(x, y, marker="o", label=f"{label}, batch {batch}")
            for m, xi, yi in zip(points, x, y, strict=True):
                mark = "" if m.reliable is not False else " !"
                ax.annotate(f"c{m.concurrency}{mark}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (images/s)")
    ax.set_title("Throughput against p99 latency; cN = N requests in flight (! measured under contention)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
