"""The ``model.py`` that ``alexnet-deploy triton --python-backend`` writes: an artifact served by Triton's Python
backend through alexnet-deploy's own runner (ONNX Runtime or OpenVINO, configured as the artifact's sidecar says).

This file is copied verbatim into the model's version folder, next to the artifact, its sidecar and a copy of
alexnet-deploy's ``core`` and ``backends`` packages (``alexnet_deploy/``): those two floors import nothing above
them (the layering test holds them to it) and nothing heavier than numpy and the runtime, so the server's Python
needs only ``numpy`` (< 2 for Triton releases whose Python backend was built against numpy 1) and ``onnxruntime``
or ``openvino``; no torch, and no installed alexnet-deploy, whose version could differ from the one that wrote the
folder. The config's parameters name the artifact (``artifact``) and, optionally, the runtime's threads
(``threads``).

``execute`` runs every request the dynamic batcher hands over as one batch, as Triton's own backends do, and
splits the logits back per request. A failure answers each request with an error instead of crashing the stub.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parameter(config: dict[str, Any], key: str) -> str | None:
    """A ``parameters`` entry of the model config (``{"key": {"string_value": "..."}}``), or ``None``."""
    value = (config.get("parameters") or {}).get(key) or {}
    return value.get("string_value") or None


def open_runner(model_file: Path, threads: int | None):
    """The runner alexnet-deploy itself would pick for ``model_file`` (``bench``, ``verify``), after the sidecar
    is checked against the file's bytes: OpenVINO's for an OpenVINO engine (device, precision hint, streams as
    recorded), ONNX Runtime's otherwise."""
    from alexnet_deploy.backends import Artifact, runner_for
    from alexnet_deploy.core.manifest import load_manifest
    from alexnet_deploy.core.vocab import BackendName

    manifest = load_manifest(model_file)  # the sidecar must describe these bytes (sha256)
    backend = BackendName((manifest.engine or {}).get("backend") or "onnxruntime")
    artifact = Artifact(path=model_file, kind=manifest.kind, backend=backend, precision=manifest.precision,
                        classes=list(manifest.classes), preprocessing=None, model=dict(manifest.model),
                        input_shape=tuple(manifest.input["shape"][1:]), manifest=manifest)  # fmt: skip
    return runner_for(artifact, threads=threads)


class TritonPythonModel:
    """Triton's Python backend interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        if (HERE / "alexnet_deploy").is_dir() and sys.path[:1] != [str(HERE)]:
            sys.path.insert(0, str(HERE))  # the runner code copied beside this file wins over any installed one
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        threads = parameter(config, "threads")
        model_file = HERE / (parameter(config, "artifact") or "model.onnx")
        self.runner = open_runner(model_file, int(threads) if threads else None)
        self.runner.activate()

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            logits = self.runner.infer(batches[0] if len(batches) == 1 else np.concatenate(batches))
        except Exception as exc:  # noqa: BLE001 - every request hears why, and the stub keeps serving
            error = pb_utils.TritonError(f"{self.runner.name} failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        ends = np.cumsum([len(b) for b in batches])[:-1]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, np.ascontiguousarray(part))])
                for part in np.split(logits, ends)]  # fmt: skip

    def finalize(self) -> None:
        self.runner.deactivate()
