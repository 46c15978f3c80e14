"""From artifact specs on the command line to benchmark targets, with the PyTorch baseline added.

A spec is ``PATH`` or ``PATH@OPTION,OPTION``: options name a backend of the registry (``torch``,
``onnxruntime``/``ort``, ``openvino``/``ov``, ``tensorrt``/``trt``, ``tensorrt-rtx``/``rtx``), a precision for torch
runs (``fp32``, ``fp16``) or ``compile`` (``torch.compile``; on CUDA with CUDA graphs, mode ``reduce-overhead``).
Examples: ``best.pt``, ``best.pt@fp16``, ``best.pt@compile``, ``model.int8.onnx@openvino``,
``model.int8.qdq.onnx``, ``model.fp16.plan``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alexnet_deploy.backends import backend_spec, backends, describe_artifact, runner_for
from alexnet_deploy.bench.results import BenchTarget
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.limits import check_threads
from alexnet_deploy.core.vocab import BackendName

log = logging.getLogger(__name__)

TORCH_BASELINE = "torch eager fp32"


@dataclass(frozen=True)
class TargetSpec:
    """One artifact to bench and how."""

    path: Path
    backend: BackendName | None = None
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
        if opt in ("fp32", "fp16"):
            precision = opt
        elif opt in ("compile", "eager"):
            compile_ = opt == "compile"
        else:
            try:
                backend = backend_spec(opt).name
            except ConfigError:
                names = ", ".join(s.name.value for s in backends())
                raise ConfigError(
                    f"Unknown backend or option '{opt}' in '{text}'; use {names}, fp32, fp16 or compile."
                ) from None
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
            runner.forward_on_device(x)  # the model alone: the input is already on the device
            end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return timer


def _target_for(spec: TargetSpec, device: str, threads: int | None) -> tuple[BenchTarget, dict | None]:
    """Build one target; also return the model description (for the baseline) where one is known."""
    art = describe_artifact(spec.path, require_manifest=False)  # one sentence when missing, foreign or mismatched
    if art.kind == "checkpoint":
        from alexnet_deploy.core.checkpoint import load_model
        from alexnet_deploy.core.models import profile_model

        if spec.backend not in (None, BackendName.TORCH):
            raise ConfigError(f"The {spec.backend} backend cannot run {spec.path.name} (a checkpoint); use torch.")
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
    runner = runner_for(art, spec.backend, device=device, threads=threads, precision=spec.precision,
                        compile=spec.compile)  # fmt: skip
    precision, chw, manifest, model_info = art.precision, art.input_shape, art.manifest, art.model
    # One ONNX Runtime session or OpenVINO compiled model may be run from several threads; a plan has one
    # execution context and one set of buffers.
    thread_safe = art.kind in ("onnx", "ovblob")
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
    threads = check_threads(threads)
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
        if model_info is None and baseline in labels:  # no model to rebuild in torch: ratios against that target
            return _unique(targets), baseline
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
