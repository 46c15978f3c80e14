"""From artifact specs on the command line to benchmark targets, with the PyTorch baseline added.

A spec is ``PATH`` or ``PATH@OPTION,OPTION``: options name a backend (``torch``, ``onnxruntime``/``ort``,
``tensorrt``/``trt``), a precision for torch runs (``fp32``, ``fp16``) or ``compile`` (``torch.compile``; on CUDA
with CUDA graphs, mode ``reduce-overhead``). Examples: ``best.pt``, ``best.pt@fp16``, ``best.pt@compile``,
``model.int8.qdq.onnx``, ``model.fp16.plan``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alexnet_deploy.backends import artifact_kind
from alexnet_deploy.bench.results import BenchTarget
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError

log = logging.getLogger(__name__)

TORCH_BASELINE = "torch eager fp32"
BACKENDS = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "ort": "onnxruntime",
    "tensorrt": "tensorrt",
    "trt": "tensorrt",
}
_KIND_BACKEND = {"checkpoint": "torch", "onnx": "onnxruntime", "plan": "tensorrt"}


@dataclass(frozen=True)
class TargetSpec:
    """One artifact to bench and how."""

    path: Path
    backend: str | None = None
    precision: str | None = None
    compile: bool = False


def parse_spec(text: str) -> TargetSpec:
    """Parse ``PATH[@OPTION,...]`` (see the module docstring).

    Raises:
        ConfigError: an unknown backend or option.
    """
    path, _, opts = text.partition("@") if not Path(text).exists() and "@" in text else (text, "", "")
    backend, precision, compile_ = None, None, False
    for opt in filter(None, (o.strip().lower() for o in opts.split(","))):
        if opt in BACKENDS:
            backend = BACKENDS[opt]
        elif opt in ("fp32", "fp16"):
            precision = opt
        elif opt in ("compile", "eager"):
            compile_ = opt == "compile"
        else:
            raise ConfigError(
                f"Unknown backend or option '{opt}' in '{text}'; "
                "use torch, onnxruntime, tensorrt, fp32, fp16 or compile."
            )
    return TargetSpec(Path(path), backend, precision, compile_)


def _flops(model_info: dict, image_size: int) -> float | None:
    """2 x multiply-adds per image of the model a manifest or checkpoint describes."""
    from alexnet_deploy.core.models import build_model, profile_model

    try:
        net = build_model(
            model_info["name"],
            num_classes=int(model_info.get("num_classes", 1000)),
            width=float(model_info.get("width", 1.0)),
            columns=int(model_info.get("columns", 2)),
        )
    except (KeyError, ConfigError, ValueError, TypeError):
        return None
    return float(profile_model(net, image_size=image_size).flops)


def _onnx_facts(path: Path) -> tuple[str, tuple[int, int, int]]:
    """(precision, C x H x W) read from the graph itself: Q/DQ or integer ops -> int8, FLOAT16 weights -> fp16."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise ArtifactError(f"{path.name} is not a readable ONNX model: {str(exc)[:120]}.") from None
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"}:
        precision = "int8"
    elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    dims = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    chw = tuple(d.dim_value for d in dims[1:4]) if len(dims) == 4 else ()
    return precision, chw if len(chw) == 3 and all(chw) else (3, 224, 224)


def _torch_target(model, label: str, device: str, precision: str, compile_: bool, threads, **kw) -> BenchTarget:
    from alexnet_deploy.backends.pytorch import TorchRunner

    cuda = device.startswith("cuda")
    runner = TorchRunner(
        model,
        device=device,
        precision=precision,
        compile=compile_,
        # CUDA graphs remove the per-kernel launch cost that dominates small batches on a GPU.
        compile_mode="reduce-overhead" if compile_ and cuda else None,
        threads=threads,
        name=label,
    )
    # torch.compile's CUDA graphs and the inductor cache are not safe to drive from several threads.
    return BenchTarget(
        label=label,
        runner=runner,
        device=device,
        compute_timer=_torch_cuda_timer(runner) if cuda else None,
        thread_safe=not compile_ and not cuda,
        **kw,
    )


def _torch_cuda_timer(runner):
    """CUDA events around the model alone, on a device-resident input (host<->device copies excluded)."""
    import torch

    cache: dict = {}

    def timer(images) -> float:
        x = cache.get(images.shape)
        if x is None:
            x = cache[images.shape] = torch.from_numpy(images).to(runner.device, runner.dtype)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            start.record()
            runner._module(x)  # the runner's (compiled) module; the bench reads it to avoid the copies
            end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return timer


def _target_for(spec: TargetSpec, device: str, threads: int | None) -> tuple[BenchTarget, dict | None]:
    """Build one target; also return the model description (for the baseline) where one is known."""
    from alexnet_deploy.core.manifest import load_manifest

    kind = artifact_kind(spec.path)  # ArtifactError when missing or of an unknown kind
    backend = spec.backend or _KIND_BACKEND[kind]
    if backend != _KIND_BACKEND[kind]:
        raise ConfigError(
            f"The {backend} backend cannot run {spec.path.name} (a {kind} file); use {_KIND_BACKEND[kind]}."
        )
    if kind != "checkpoint" and (spec.precision or spec.compile):
        raise ConfigError(f"fp16/compile options apply to checkpoints; {spec.path.name} carries its own precision.")
    manifest = load_manifest(spec.path, required=False)
    if kind == "checkpoint":
        from alexnet_deploy.core.checkpoint import load_model
        from alexnet_deploy.core.models import profile_model

        loaded = load_model(spec.path)
        size = loaded.preprocessing.crop
        precision = spec.precision or "fp32"
        label = f"torch {'compile' if spec.compile else 'eager'} {precision}"
        target = _torch_target(
            loaded.model,
            label,
            device,
            precision,
            spec.compile,
            threads,
            artifact=str(spec.path),
            flops_per_image=float(profile_model(loaded.model, image_size=size).flops),
            image_shape=(3, size, size),
        )
        return target, {"arch": loaded.arch, "model": loaded.model, "size": size}
    model_info = manifest.model if manifest else {}
    if kind == "onnx":
        from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

        precision, chw = _onnx_facts(spec.path)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        runner = OnnxRuntimeRunner(spec.path, providers=providers, threads=threads, precision=precision)
        thread_safe = True  # InferenceSession.run may be called concurrently
    else:
        if not device.startswith("cuda"):
            raise MissingBackendError(f"{spec.path.name} is a TensorRT plan and needs --device cuda and a GPU.")
        from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner

        runner = TensorRTRunner(spec.path, device=int(device.partition(":")[2] or 0))
        precision = runner.precision
        shape = (manifest.input.get("shape") if manifest else None) or [-1, 3, 224, 224]
        chw = tuple(int(s) for s in shape[1:4])
        thread_safe = False  # one execution context and one set of buffers
    runner.name = f"{runner.backend} {precision}"
    target = BenchTarget(
        label=runner.name,
        runner=runner,
        artifact=str(spec.path),
        device=device,
        flops_per_image=_flops(model_info, chw[-1]) if model_info else None,
        image_shape=chw,
        thread_safe=thread_safe,
    )
    base = None
    if manifest:
        source = Path((manifest.source or {}).get("path") or "")
        if source.suffix in (".pt", ".pth") and source.is_file():
            base = {"checkpoint": source, "size": chw[-1]}
        elif model_info.get("name"):
            base = {"arch": model_info, "size": chw[-1], "random": True}
    return target, base


def _baseline_model(info: dict):
    """The torch model behind a baseline description, and a note on where its weights come from."""
    if "model" in info:
        import copy

        # TorchRunner converts its module in place (device, dtype): each target needs its own copy.
        return copy.deepcopy(info["model"]), ""
    if "checkpoint" in info:
        from alexnet_deploy.core.checkpoint import load_model

        return load_model(info["checkpoint"]).model, f"weights from {info['checkpoint']}"
    from alexnet_deploy.core.models import build_model

    arch = info["arch"]
    model = build_model(
        arch["name"],
        num_classes=int(arch.get("num_classes", 1000)),
        width=float(arch.get("width", 1.0)),
        columns=int(arch.get("columns", 2)),
        **({"init": "kaiming"} if arch["name"] == "alexnet_paper" else {}),
    )
    # Timing does not depend on the weights' values (dense kernels, no sparsity); Kaiming keeps them normal-sized.
    return model, "random weights of the manifest's architecture (its checkpoint was not found)"


def build_targets(
    specs: list[TargetSpec],
    *,
    device: str = "cpu",
    threads: int | None = None,
    compare: bool = False,
    torch_compile: bool = False,
    baseline: str | None = TORCH_BASELINE,
) -> tuple[list[BenchTarget], str | None]:
    """Targets for ``specs``, plus the PyTorch eager FP32 baseline when comparing (and FP16 on CUDA).

    Comparison mode (``compare`` or several specs) adds the baselines users would pick instead: PyTorch eager
    FP32 (the default baseline), ``torch.compile`` with ``torch_compile``, and PyTorch eager FP16 on CUDA.

    Args:
        baseline: label of the target ratios divide by; ``"torch eager fp32"`` is added if needed; ``None`` or
            ``"none"``: no ratios.

    Returns:
        (targets, baseline label or None).

    Raises:
        ArtifactError / ConfigError / MissingBackendError: an unusable spec, or a baseline that cannot be built.
    """
    if not specs:
        raise ConfigError("Give at least one artifact to bench.")
    if threads is None and not device.startswith("cuda"):
        import torch

        # One thread count for every CPU backend, so that no backend wins by using more cores.
        threads = torch.get_num_threads()
    targets: list[BenchTarget] = []
    model_info = None
    for spec in specs:
        target, info = _target_for(spec, device, threads)
        targets.append(target)
        model_info = model_info or info
    compare = compare or len(specs) > 1 or torch_compile
    if baseline in (None, "none") or not compare:
        baseline = None if baseline in (None, "none") or not compare else baseline
        return _unique(targets), baseline
    labels = {t.label for t in targets}
    wanted = [(TORCH_BASELINE, "fp32", False)]
    if device.startswith("cuda"):
        wanted.append(("torch eager fp16", "fp16", False))
    if torch_compile:
        wanted.append(("torch compile fp32", "fp32", True))
    missing = [w for w in wanted if w[0] not in labels]
    if missing:
        if model_info is None:
            raise ConfigError(
                "Cannot build the PyTorch baseline: no artifact is a checkpoint or has a manifest naming its model; "
                "pass a checkpoint too, or --baseline with one of the targets' labels or none."
            )
        for added, (label, precision, compile_) in enumerate(missing):
            model, note = _baseline_model(model_info)
            size = model_info["size"]
            from alexnet_deploy.core.models import profile_model

            targets.insert(  # baselines first, in the order wanted
                added,
                _torch_target(
                    model,
                    label,
                    device,
                    precision,
                    compile_,
                    threads,
                    flops_per_image=float(profile_model(model, image_size=size).flops),
                    image_shape=(3, size, size),
                    notes=note,
                ),
            )
    targets = _unique(targets)
    labels = [t.label for t in targets]
    if baseline not in labels:
        matches = [t.label for t in targets if t.artifact and Path(t.artifact) == Path(baseline)]
        if not matches:
            raise ConfigError(f"The baseline '{baseline}' is none of the targets: {', '.join(labels)}.")
        baseline = matches[0]
    return targets, baseline


def _unique(targets: list[BenchTarget]) -> list[BenchTarget]:
    """Disambiguate equal labels with the artifact's file name."""
    seen: dict[str, int] = {}
    for t in targets:
        seen[t.label] = seen.get(t.label, 0) + 1
    for t in targets:
        if seen[t.label] > 1 and t.artifact:
            t.label = f"{t.label} ({Path(t.artifact).name})"
            t.runner.name = t.label
    return targets
