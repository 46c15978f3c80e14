"""Which Triton backend serves an artifact, with its parameters and the files its model folder needs.

* **TensorRT plans**: platform ``tensorrt_plan``, on GPU instances.
* **OpenVINO engines on CPU instances** (the sidecar's ``engine.backend`` is ``openvino``): Triton's OpenVINO
  backend, ``backend: "openvino"`` with ``default_model_filename: "model.onnx"`` (the verified file itself; the
  backend reads ONNX). Its parameters carry what the sidecar recorded: ``PERFORMANCE_HINT``, ``NUM_STREAMS``,
  ``INFERENCE_NUM_THREADS``, ``HINT_BF16`` for a BF16 engine. Two facts of that backend (its ``src/openvino.cc``
  and README) shape the config: with ``max_batch_size`` > 0 it fixes the model's batch at ``max_batch_size`` and
  refuses any other batch unless ``ENABLE_BATCH_PADDING`` is ``YES``, which pads every execution to it (so the
  default maximum here is a small :data:`OPENVINO_MAX_BATCH_SIZE`); and it has no parameter that pins f32, so on a
  CPU with bf16 support (AMX, AVX512_BF16) OpenVINO computes float layers in bf16, not what was verified.
* **Other ONNX files**: platform ``onnxruntime_onnx`` (and ``intra_op_thread_count`` for ``--threads``). An OpenVINO
  engine on GPU instances lands here too, with a note: the OpenVINO backend runs on CPUs only.
* **``--python-backend``**: ``backend: "python"`` with alexnet-deploy's ``model.py``
  (:mod:`alexnet_deploy.triton_model`) running the artifact through our own runner, and a copy of the runner code
  beside it (:func:`stage_python_model`), for servers without those backends (the ``tritonserver`` that comes
  with ``nvidia-pytriton`` has only the Python backend).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet_deploy.core.errors import ConfigError

OPENVINO_MAX_BATCH_SIZE = 8  # Triton's OpenVINO backend pads every execution to max_batch_size
PYTHON_MODEL_FILE = "model.py"
RUNTIME_PACKAGE = "alexnet_deploy"  # the copied runner code, beside model.py
_RUNTIME_FLOORS = ("core", "backends")  # import nothing above themselves (tests/test_layering.py)


@dataclass(frozen=True)
class Serving:
    """How Triton serves one model: ``platform`` or ``backend`` (one of them), the config's extra fields, the
    default largest batch, and what the caller must hear."""

    platform: str = ""
    backend: str = ""
    default_model_filename: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    default_max_batch: int | None = None
    comments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runtime: str = ""  # python backend: the runtime package the server's Python needs, with its version

    @property
    def label(self) -> str:
        """What serves the model, as reports name it: the platform or backend."""
        return self.platform or self.backend

    def config_fields(self) -> dict[str, Any]:
        """The fields of ``config.pbtxt`` that name the backend, its model file and its parameters."""
        fields: dict[str, Any] = {"platform": self.platform} if self.platform else {"backend": self.backend}
        if self.default_model_filename:
            fields["default_model_filename"] = self.default_model_filename
        if self.parameters:
            fields["parameters"] = [{"key": k, "value": {"string_value": v}} for k, v in self.parameters.items()]
        return fields


def choose_serving(kind: str, engine: dict[str, Any], precision: str, *, instance_kind: str, python_backend: bool,
                   threads: int | None, instances: int, versions: dict[str, str] | None = None) -> Serving:  # fmt: skip
    """How Triton should serve an artifact of ``kind`` (``onnx`` / ``plan``) whose sidecar records ``engine`` (and
    ``versions``, the libraries that made and verified it).

    Raises:
        ConfigError: the Python backend asked for on GPU instances, or for a plan.
    """
    notes = []
    if threads is None and instances > 1 and instance_kind == "cpu":
        notes.append(f"{instances} instances each use every core (no --threads); give each instance its share, "
                     "e.g. --threads cores/instances.")  # fmt: skip
    if kind == "plan":
        if python_backend:
            raise ConfigError("--python-backend serves ONNX files through ONNX Runtime or OpenVINO, not plans.")
        return Serving(platform="tensorrt_plan")
    backend = str(engine.get("backend") or "onnxruntime")
    if python_backend:
        if instance_kind != "cpu":
            raise ConfigError("--python-backend runs the artifact on CPU instances (our ONNX Runtime or OpenVINO "
                              "runner); use --kind cpu.")  # fmt: skip
        package = "openvino" if backend == "openvino" else "onnxruntime"
        version = engine.get(f"{package}_version") or (versions or {}).get(package)
        runtime = f"{package}=={version}" if version else package
        params = {"artifact": "model.onnx"} | ({"threads": str(threads)} if threads else {})
        comment = (f"Served by Triton's Python backend: model.py runs model.onnx through alexnet-deploy's {package} "
                   f"runner (copied beside it); the server's Python needs numpy < 2 and {runtime}.")  # fmt: skip
        notes.append(f"The server's Python environment needs numpy < 2 and {runtime} "
                     f"(pip install 'numpy<2' {runtime}); no torch, no alexnet-deploy.")  # fmt: skip
        return Serving(backend="python", parameters=params, comments=[comment], notes=notes, runtime=runtime)
    if backend == "openvino" and instance_kind == "cpu":
        return _openvino(engine, precision, threads, notes)
    if backend == "openvino":
        notes.append("This OpenVINO engine is served by Triton's onnxruntime backend on GPU instances (Triton's "
                     "OpenVINO backend runs on CPUs only); its accuracy was verified on OpenVINO, so verify it on "
                     "the server's runtime, or serve it with --kind cpu.")  # fmt: skip
    return Serving(platform="onnxruntime_onnx", parameters={"intra_op_thread_count": str(threads)} if threads else {},
                   notes=notes)  # fmt: skip


def _openvino(engine: dict[str, Any], precision: str, threads: int | None, notes: list[str]) -> Serving:
    options = engine.get("options") or {}
    params = {"ENABLE_BATCH_PADDING": "YES", "PERFORMANCE_HINT": str(options.get("performance_hint") or "LATENCY")}
    if options.get("num_streams"):
        params["NUM_STREAMS"] = str(options["num_streams"])
    if threads or options.get("threads"):
        params["INFERENCE_NUM_THREADS"] = str(threads or options["threads"])
    if options.get("inference_precision") == "bf16":
        params["HINT_BF16"] = "YES"
    elif options.get("inference_precision") not in (None, "f32"):
        raise ConfigError(f"Triton's OpenVINO backend cannot set the inference precision "
                          f"{options['inference_precision']} this engine was built with; serve it with "
                          "--python-backend.")  # fmt: skip
    else:
        notes.append(f"Triton's OpenVINO backend has no parameter that pins f32: on a CPU with bf16 (AMX or "
                     f"AVX512_BF16) it computes this {precision} model's float layers in bf16, which is not what was "
                     "verified; there, serve it with --python-backend (our runner pins f32).")  # fmt: skip
    comments = ["Triton's OpenVINO backend fixes the batch at max_batch_size and pads every execution to it "
                "(ENABLE_BATCH_PADDING), so a lone request costs a full batch: keep max_batch_size near the batch "
                "your load forms."]  # fmt: skip
    return Serving(backend="openvino", default_model_filename="model.onnx", parameters=params,
                   default_max_batch=OPENVINO_MAX_BATCH_SIZE, comments=comments, notes=notes)  # fmt: skip


def runtime_sources() -> list[tuple[Path, Path]]:
    """``(source file, path relative to the version folder)`` of the runner code a Python-backend model needs:
    the package's ``__init__`` and its ``core`` and ``backends`` floors, which import only each other."""
    root = Path(__file__).resolve().parent
    files = [root / "__init__.py"]
    for floor in _RUNTIME_FLOORS:
        files += sorted(p for p in (root / floor).rglob("*.py") if "__pycache__" not in p.parts)
    return [(f, Path(RUNTIME_PACKAGE) / f.relative_to(root)) for f in files]


def stage_python_model(version_dir: Path) -> list[str]:
    """Write ``model.py`` and the runner code into ``version_dir``; return what was written (relative; the runner
    code as one folder entry)."""
    from alexnet_deploy import triton_model

    shutil.copyfile(triton_model.__file__, version_dir / PYTHON_MODEL_FILE)
    for source, relative in runtime_sources():
        (version_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, version_dir / relative)
    return [PYTHON_MODEL_FILE, f"{RUNTIME_PACKAGE}/"]
