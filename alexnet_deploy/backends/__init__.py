"""Backends, and the one registry that says which backend runs an artifact and how to build for it.

Each backend is one module (or folder) of this package holding its build step, its runner and its compatibility
rule; heavy libraries are imported only inside it. Every module offers the same functions:

* ``status() -> BackendStatus``: installed? version? can it build here, can it run here, and why not;
* ``open_runner(artifact, *, device, threads, precision, compile) -> Runner``: a runner for an :class:`Artifact`,
  after the module's compatibility rule has checked the artifact's sidecar against this machine;
* ``compile_engine(onnx_path, out_path, options) -> dict`` (backends that compile): write the engine file
  atomically and return the engine facts for the sidecar; ``options`` is an instance of the frozen dataclass its
  registry entry names (:attr:`BackendSpec.options`), whose fields made with :func:`backends.base.cli_option`
  are the backend's options on ``alexnet-deploy build`` (:attr:`BackendSpec.panel`).

:func:`describe_artifact` is the one answer to "what is this artifact" (kind, backend, precision, classes,
preprocessing, input shape, manifest), with the sidecar checked against its schema, the file's sha256 and the
model's real input and output shapes. :func:`runner_for` turns a path into the right runner. Adding a backend
means adding its module and one :func:`register` line below (see docs/BACKENDS.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from alexnet_deploy.backends.base import BackendStatus, Runner
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.limits import check_threads
from alexnet_deploy.core.manifest import Manifest, artifact_file, load_manifest
from alexnet_deploy.core.preprocessing import Preprocessing
from alexnet_deploy.core.vocab import BackendName

__all__ = [
    "Artifact",
    "BackendSpec",
    "BackendStatus",
    "Runner",
    "artifact_kind",
    "backend_spec",
    "backends",
    "describe_artifact",
    "register",
    "runner_for",
]

_SUFFIX_KINDS = {".pt": "checkpoint", ".pth": "checkpoint", ".onnx": "onnx", ".plan": "plan", ".engine": "plan",
                 ".ovblob": "ovblob"}  # fmt: skip


@dataclass(frozen=True)
class BackendSpec:
    """A registry entry: the backend's name, the module that implements it, and what it runs and writes.

    Attributes:
        name: the backend's name (:class:`BackendName`).
        module: the dotted module path (imported only when the backend is used).
        runs: the artifact kind it runs: ``"checkpoint"``, ``"onnx"`` or ``"plan"``.
        suffix: the file ending of the engines it builds (``""``: it builds none).
        aliases: other names the command line accepts (``ort``, ``trt``...).
        options: ``"module:Class"`` of its build options (a frozen dataclass; ``""``: it builds nothing).
        panel: the help panel of those options on ``alexnet-deploy build``.
        forms: the INT8 Q/DQ forms it compiles (names of ``calib.qdq.FORMS``), preferred first.
        also_runs: other artifact kinds it runs (OpenVINO: its exported blobs, ``"ovblob"``).
    """

    name: BackendName
    module: str
    runs: str
    suffix: str = ""
    aliases: tuple[str, ...] = ()
    options: str = ""
    panel: str = ""
    forms: tuple[str, ...] = ()
    also_runs: tuple[str, ...] = ()

    @property
    def builds(self) -> bool:
        return bool(self.suffix)

    def can_run(self, kind: str) -> bool:
        """Whether it runs artifacts of ``kind``."""
        return kind == self.runs or kind in self.also_runs

    def load(self) -> ModuleType:
        """The backend's module."""
        return importlib.import_module(self.module)

    def options_class(self) -> type:
        """The backend's build options class (imports its module, which imports no heavy library).

        Raises:
            ConfigError: the backend builds nothing.
        """
        if not self.options:
            raise ConfigError(f"The {self.name} backend builds no engine, so it has no build options.")
        module, _, name = self.options.partition(":")
        return getattr(importlib.import_module(module), name)

    def default_options(self) -> Any:
        """The backend's build options with every default."""
        return self.options_class()()

    def status(self) -> BackendStatus:
        """What the backend can do on this machine (never raises)."""
        return self.load().status()


_REGISTRY: dict[BackendName, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a backend to the registry.

    Raises:
        ValueError: a backend of that name, or one of its aliases, is already registered.
    """
    taken = {a for s in _REGISTRY.values() for a in (s.name.value, *s.aliases)}
    clash = {spec.name.value, *spec.aliases} & taken
    if clash:
        raise ValueError(f"A backend named {sorted(clash)[0]!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


# The INT8 Q/DQ forms (calib/qdq.py): tensorrt and pooled are symmetric int8 (TensorRT's rules; pooled lifts the
# pairs above max-pooling and reshapes, so int8 flows through them); onnxruntime and pooled-u8 use uint8 activations.
_B = "alexnet_deploy.backends"
_CPU_FORMS, _TRT_FORMS = ("tensorrt", "onnxruntime", "pooled", "pooled-u8"), ("tensorrt", "pooled")
# fmt: off
register(BackendSpec(BackendName.TORCH, f"{_B}.pytorch", runs="checkpoint"))
register(BackendSpec(BackendName.ONNXRUNTIME, f"{_B}.onnxruntime", "onnx", "ort.onnx", aliases=("ort",),
                     options=f"{_B}.onnxruntime:OnnxRuntimeBuildOptions", panel="ONNX Runtime options",
                     forms=_CPU_FORMS))
register(BackendSpec(BackendName.OPENVINO, f"{_B}.openvino", "onnx", "ov.onnx", aliases=("ov",),
                     options=f"{_B}.openvino:OpenVINOBuildOptions", panel="OpenVINO options", forms=_CPU_FORMS,
                     also_runs=("ovblob",)))
register(BackendSpec(BackendName.TENSORRT, f"{_B}.tensorrt", "plan", "plan", aliases=("trt",),
                     options=f"{_B}.tensorrt.builder:TensorRTBuildOptions", panel="TensorRT options",
                     forms=_TRT_FORMS))
register(BackendSpec(BackendName.TENSORRT_RTX, f"{_B}.tensorrt.rtx", "plan", "rtx.plan", aliases=("rtx",),
                     options=f"{_B}.tensorrt.rtx:RTXBuildOptions", panel="TensorRT-RTX options",
                     forms=_TRT_FORMS))
# fmt: on


def backends() -> list[BackendSpec]:
    """Every registered backend, in registration order."""
    return list(_REGISTRY.values())


def backend_spec(name: str | BackendName) -> BackendSpec:
    """The registry entry of ``name`` (or one of its aliases).

    Raises:
        ConfigError: no such backend (``auto`` is a choice of the build, not a backend).
    """
    text = name.value if isinstance(name, BackendName) else str(name).strip().lower()
    for spec in _REGISTRY.values():
        if text == spec.name.value or text in spec.aliases:
            return spec
    choices = ", ".join(s.name.value for s in _REGISTRY.values())
    raise ConfigError(f"Unknown backend '{name}'; choose one of {choices}.")


def artifact_kind(path: str | Path) -> str:
    """``"checkpoint"``, ``"onnx"``, ``"plan"`` or ``"ovblob"`` (an OpenVINO blob) from the file's suffix.

    Raises:
        ArtifactError: the file is missing, a folder, or of an unknown kind.
    """
    path = artifact_file(path)
    try:
        return _SUFFIX_KINDS[path.suffix.lower()]
    except KeyError:
        raise ArtifactError(
            f"Cannot tell what {path.name} is: expected a .pt/.pth checkpoint, an .onnx model, a .plan engine or an "
            ".ovblob OpenVINO blob."
        ) from None


@dataclass
class Artifact:
    """What an artifact is: the one description every command uses.

    Attributes:
        path: the file.
        kind: ``"checkpoint"``, ``"onnx"``, ``"plan"`` or ``"ovblob"``.
        backend: the backend that runs it unless told otherwise (the sidecar's ``engine.backend``, else by kind).
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (from the sidecar, else read from the graph).
        classes: class names in label order (``"0"``, ``"1"``... when only the count is known).
        preprocessing: the eval preset the artifact expects (``None`` when nothing records it).
        model: the model entry (name, width, num_classes, columns) where known.
        input_shape: (C, H, W) of the image input.
        manifest: the sidecar (checked), or ``None`` where there is none.
        fixed_batch: the one batch size an ONNX graph takes (exported for batch 1, say), or ``None``: any.
    """

    path: Path
    kind: str
    backend: BackendName
    precision: str
    classes: list[str]
    preprocessing: Preprocessing | None
    model: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int] = (3, 224, 224)
    manifest: Manifest | None = None
    fixed_batch: int | None = None
    engine: dict[str, Any] = field(init=False)  # the sidecar's engine facts (empty where there are none)

    def __post_init__(self) -> None:
        self.engine = dict(self.manifest.engine) if self.manifest else {}

    def require_preprocessing(self) -> Preprocessing:
        """The preprocessing, or one sentence saying the artifact records none.

        Raises:
            ArtifactError: nothing records how images must be prepared for it.
        """
        if self.preprocessing is None:
            raise ArtifactError(f"{self.path.name} records no preprocessing (its sidecar is missing or lacks it).")
        return self.preprocessing


def describe_artifact(path: str | Path, *, require_manifest: bool = True) -> Artifact:
    """Describe an artifact file: the one place that answers what it is and whether its sidecar fits it.

    Args:
        path: a checkpoint, an ONNX model, a plan or an OpenVINO blob.
        require_manifest: refuse an ONNX model or plan without a sidecar (checkpoints describe themselves).

    Raises:
        ArtifactError: missing, a folder, of an unknown kind; a sidecar that is missing (when required), malformed,
            of another file (sha256), or at odds with the model's real input or output shape.
        CheckpointError: a checkpoint that cannot be read or describes itself inconsistently.
    """
    path = artifact_file(path)
    kind = artifact_kind(path)
    if kind == "checkpoint":
        from alexnet_deploy.core.checkpoint import checkpoint_info

        info = checkpoint_info(path)
        crop = info.preprocessing.crop
        return Artifact(
            path, kind, BackendName.TORCH, "fp32", info.classes, info.preprocessing, dict(info.arch), (3, crop, crop)
        )
    manifest = load_manifest(path, required=require_manifest)
    if manifest is not None and manifest.kind != kind:
        raise ArtifactError(f"The sidecar of {path.name} describes a {manifest.kind}, not a {kind} file.")
    if kind == "onnx":
        return _describe_onnx(path, manifest)
    return _describe_compiled(path, kind, manifest)


def _default_backend(kind: str, manifest: Manifest | None) -> BackendName:
    engine = manifest.engine if manifest else {}
    named = engine.get("backend") or engine.get("flavour") or ""
    for spec in _REGISTRY.values():
        if named == spec.name.value and spec.can_run(kind):
            return spec.name
    return next(s.name for s in _REGISTRY.values() if s.can_run(kind))


def _describe_onnx(path: Path, manifest: Manifest | None) -> Artifact:
    from alexnet_deploy.backends.onnxruntime import onnx_graph_facts

    facts = onnx_graph_facts(path)  # ArtifactError: not ONNX, or not one image input and one logits output
    pre = Preprocessing.from_dict(manifest.preprocessing) if manifest and manifest.preprocessing else None
    height, width = facts.input_shape[1:]
    if pre is not None and any(d > 0 and d != pre.crop for d in (height, width)):
        raise ArtifactError(
            f"{path.name} takes {height} x {width} images, but its sidecar crops them to {pre.crop} x {pre.crop}."
        )
    classes = list(manifest.classes) if manifest and manifest.classes else []
    count = len(classes) or (manifest.num_classes if manifest else 0)
    if facts.num_logits > 0 and count and facts.num_logits != count:
        raise ArtifactError(f"{path.name} gives {facts.num_logits} logits, but its sidecar names {count} classes.")
    count = count or facts.num_logits
    if manifest and manifest.input.get("name") and manifest.input["name"] != facts.input_name:
        raise ArtifactError(
            f"{path.name}'s input is {facts.input_name!r}, but its sidecar says {manifest.input['name']!r}."
        )
    size = pre.crop if pre else (height if height > 0 else 224)
    return Artifact(
        path=path,
        kind="onnx",
        backend=_default_backend("onnx", manifest),
        precision=manifest.precision if manifest else facts.precision,
        classes=classes or [str(i) for i in range(count)],
        preprocessing=pre,
        model=dict(manifest.model) if manifest else {},
        input_shape=(3, size, size),
        manifest=manifest,
        fixed_batch=facts.batch if facts.batch > 0 else None,
    )


def _describe_compiled(path: Path, kind: str, manifest: Manifest | None) -> Artifact:
    """A TensorRT plan or an OpenVINO blob: its bytes are read only by its runtime, after the compatibility check,
    so everything here comes from the sidecar."""
    if manifest is None:
        return Artifact(path, kind, _default_backend(kind, None), "fp32", [], None)
    if not manifest.engine:
        what = "an OpenVINO blob" if kind == "ovblob" else "a TensorRT plan"
        raise ArtifactError(f"{path.name}'s sidecar does not describe {what} (it has no engine facts).")
    pre = Preprocessing.from_dict(manifest.preprocessing) if manifest.preprocessing else None
    shape = manifest.input.get("shape") or [-1, 3, pre.crop if pre else 224, pre.crop if pre else 224]
    return Artifact(
        path=path,
        kind=kind,
        backend=_default_backend(kind, manifest),
        precision=manifest.precision,
        classes=list(manifest.classes) or [str(i) for i in range(manifest.num_classes)],
        preprocessing=pre,
        model=dict(manifest.model),
        input_shape=tuple(int(s) for s in shape[1:4]),  # type: ignore[arg-type]
        manifest=manifest,
    )


def runner_for(
    artifact: str | Path | Artifact,
    backend: str | BackendName | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    precision: str | None = None,
    compile: bool = False,
) -> Runner:
    """The runner for an artifact: by default the backend its sidecar names, else the one for its kind.

    Args:
        artifact: a path or an :class:`Artifact`.
        backend: another backend that runs this kind of artifact (e.g. ``openvino`` for an ONNX file).
        device: ``cpu`` or ``cuda[:N]`` (torch, ONNX Runtime's CUDA EP, TensorRT's device index).
        threads: intra-op threads for CPU backends.
        precision: torch runs only (``fp32``/``fp16``); ONNX files and plans carry their own.
        compile: torch runs only: ``torch.compile``.

    Raises:
        ArtifactError / ConfigError / MissingBackendError: unknown artifact, a backend that cannot run it, or
            an artifact this machine cannot run.
    """
    threads = check_threads(threads)  # before anything is loaded: -3 or 1000 threads is refused with a sentence
    art = artifact if isinstance(artifact, Artifact) else describe_artifact(artifact, require_manifest=False)
    spec = backend_spec(backend) if backend else backend_spec(art.backend)
    if not spec.can_run(art.kind):
        usable = ", ".join(s.name.value for s in _REGISTRY.values() if s.can_run(art.kind))
        raise ConfigError(f"The {spec.name} backend cannot run {art.path.name} (a {art.kind} file); use {usable}.")
    if art.kind != "checkpoint" and (precision not in (None, art.precision) or compile):
        raise ConfigError(f"fp16/compile options apply to checkpoints; {art.path.name} carries its own precision.")
    return spec.load().open_runner(art, device=device, threads=threads, precision=precision, compile=compile)
