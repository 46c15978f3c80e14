"""The CPU-side logic of benchmarks/gpu_check.sh: arguments, the one-sentence refusal without a GPU, the steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=120)


@pytest.mark.parametrize("args", [(), ("a", "b"), ("--fast",)])
def test_wrong_arguments_get_usage_and_exit_2(args):
    result = run(*args)
    assert result.returncode == 2
    assert "RESULTS_DIR" in result.stderr or "the only argument is the results folder" in result.stderr


def test_refuses_without_a_gpu_in_one_sentence(tmp_path):
    from alexnet_deploy.core.system import probe_gpus

    if probe_gpus()[0]:
        pytest.skip("this machine has a GPU")
    result = run(str(tmp_path / "results"))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA GPU is visible to torch here")
    assert not (tmp_path / "results").exists()  # nothing is written when it refuses


def test_a_file_as_results_folder_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    result = run(str(tmp_path / "f"))
    assert result.returncode == 1 and "is not a folder" in result.stderr


def test_dry_run_lists_the_steps_within_the_budget(tmp_path):
    out = tmp_path / "results"
    result = run(str(out), GPU_CHECK_DRY_RUN="1", GPU_CHECK_ASSUME_GPU="1", GPU_CHECK_BUDGET_S="450")
    assert result.returncode == 0, result.stderr
    steps = (out / "steps.txt").read_text().splitlines()
    assert steps[0].startswith("step tests (limit 150s):")
    assert "-m gpu or tensorrt tests" in steps[0]
    assert re.match(r"step bench \(limit 4[0-5]\ds\)", steps[1])  # what the tests step left of 450 s
    assert "benchmarks/gpu_bench.py --out " + str(out) in steps[1]
    assert "gpu: (assumed)" in (out / "environment.txt").read_text()


def test_budget_must_be_a_number(tmp_path):
    result = run(str(tmp_path), GPU_CHECK_BUDGET_S="soon")
    assert result.returncode == 2 and "GPU_CHECK_BUDGET_S" in result.stderr


def test_gpu_bench_refuses_without_a_gpu_too(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    bench_py = SCRIPT.parent / "gpu_bench.py"
    result = subprocess.run(
        [sys.executable, str(bench_py), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no CUDA GPU is visible to torch here, so the GPU bench cannot run."
