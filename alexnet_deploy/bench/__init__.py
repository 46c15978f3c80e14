"""Latency and throughput of any artifact, side by side: ``alexnet-deploy bench``'s library.

* :func:`run_benchmark` measures :class:`BenchTarget` s (a runner plus what is known about it) at several batch
  sizes, interleaved, and returns a :class:`BenchReport` (JSON via :meth:`BenchReport.save_json`).
* :func:`build_targets` turns artifact specs (``model.onnx``, ``best.pt@fp16``, ``best.pt@compile``) into targets,
  adding the PyTorch eager FP32 baseline that ratios divide by.
* :func:`measure_ceiling` measures the machine's dense-compute ceiling; :func:`save_plot` draws the PNG.
* :class:`CpuMonitor` measures the other processes' CPU use while timing (:class:`Contention`), so figures taken
  on a shared machine are marked unreliable.
"""

from alexnet_deploy.bench.contention import THRESHOLD_CORES, Contention, CpuMonitor
from alexnet_deploy.bench.harness import measure_target, run_benchmark
from alexnet_deploy.bench.machine import machine_info, measure_ceiling
from alexnet_deploy.bench.plot import save_plot
from alexnet_deploy.bench.results import (
    SCHEMA,
    BenchConfig,
    BenchReport,
    BenchTarget,
    LatencyStats,
    Measurement,
    apply_ratios,
)
from alexnet_deploy.bench.targets import TORCH_BASELINE, TargetSpec, build_targets, parse_spec

__all__ = [
    "SCHEMA",
    "THRESHOLD_CORES",
    "TORCH_BASELINE",
    "BenchConfig",
    "BenchReport",
    "BenchTarget",
    "Contention",
    "CpuMonitor",
    "LatencyStats",
    "Measurement",
    "TargetSpec",
    "apply_ratios",
    "build_targets",
    "machine_info",
    "measure_ceiling",
    "measure_target",
    "parse_spec",
    "run_benchmark",
    "save_plot",
]
