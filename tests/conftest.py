"""Shared fixtures: the real photos in ../shared/data, a real Triton server's environment, and skips for GPU /
TensorRT tests with their reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("ALEXNET_DEPLOY_DATA", REPO.parent / "shared" / "data")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"


def _data_set(name: str) -> Path:
    path = DATA_ROOT / name
    if not path.is_dir():
        message = f"test data {path} is absent (set ALEXNET_DEPLOY_DATA to the folder holding {name})"
        if IN_CI:
            pytest.fail(f"{message}; under CI its absence is a failure, not a skip")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny20() -> Path:
    """fixture-tiny-imagenet-20: 20 classes, 600 train / 200 val, 64 px."""
    return _data_set("fixture-tiny-imagenet-20")


@pytest.fixture(scope="session")
def imagenette10() -> Path:
    """fixture-imagenette-10: 10 classes, 200 train / 100 val, 224 px."""
    return _data_set("fixture-imagenette-10")


@pytest.fixture(scope="session")
def tiny100() -> Path:
    """tiny-imagenet-100: 100 classes, 50,000 train / 5,000 val, 64 px."""
    return _data_set("tiny-imagenet-100")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_gpu = [i for i in items if "gpu" in i.keywords or "tensorrt" in i.keywords]
    if not needs_gpu:
        return
    from alexnet_deploy.core.system import probe_gpus, tensorrt_status

    gpus, how = probe_gpus()
    trt = tensorrt_status() if any("tensorrt" in i.keywords for i in needs_gpu) else None
    for item in needs_gpu:
        if "tensorrt" in item.keywords and not (trt and trt["usable"]):
            item.add_marker(pytest.mark.skip(reason=f"TensorRT is not usable here: {trt['reason'] if trt else ''}"))
        elif not gpus:
            item.add_marker(pytest.mark.skip(reason=f"no CUDA GPU on this machine ({how})"))


@pytest.fixture(scope="session")
def cifar10_archive() -> Path:
    """cifar10.tar.gz: CIFAR-10 as one archive (50,000 train / 10,000 val, 32 px JPEG)."""
    path = DATA_ROOT / "cifar10.tar.gz"
    if not path.is_file():
        message = f"test data {path} is absent (set ALEXNET_DEPLOY_DATA to the folder holding cifar10.tar.gz)"
        if IN_CI:
            pytest.fail(f"{message}; under CI its absence is a failure, not a skip")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def triton_env():
    """A real Triton server's own environment (nvidia-pytriton's tritonserver, numpy < 2, the runtimes), built once
    under ~/.cache/alexnet-deploy and reused (alexnet_deploy.triton_local). Where it cannot be built the tests that
    need it skip with the reason; under CI they fail."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    from alexnet_deploy.triton_local import ServerUnavailable, ensure_server_env

    try:
        return ensure_server_env(timeout_s=900)
    except ServerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc} Under CI a real Triton server is required, so this is a failure, not a skip.")
        pytest.skip(str(exc))
