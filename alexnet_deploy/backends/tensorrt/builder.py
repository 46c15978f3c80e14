"""Compile an ONNX model into a TensorRT plan: one strongly typed build shared by TensorRT 10.x/11.x and TensorRT-RTX.

Every precision decision lives in the ONNX graph (an FP16 graph, or Q/DQ nodes for INT8), so the build sets no
precision flag: on 10.x the network is created STRONGLY_TYPED, on 11.x and TensorRT-RTX strong typing is the only
mode. :func:`compile_plan` is the build both libraries share (parser with errors naming the node, profile,
``build_serialized_network``, atomic write, io facts); a :class:`TensorRTFlavour` holds what differs: the module
and its import, the network flags, whether the build needs a GPU, and the flavour's own config settings
(TensorRT: optimisation and hardware-compatibility levels, timing cache, layer report; TensorRT-RTX, in
:mod:`alexnet_deploy.backends.tensorrt.rtx`: target compute capabilities).

Status: the shared build runs in CI against the real TensorRT-RTX 1.7 library (CPU only). The TensorRT 10/11
calls were written against the TensorRT 10.x/11.x Python API documentation and have NOT been executed against
TensorRT on any machine of this project (none has TensorRT or a GPU). Every name used was checked to exist, with
these signatures, in the real ``tensorrt_bindings`` of 10.16.1 and 11.4.0 (imported against stub libraries, no
GPU); 10.0.1 lacks only ``SAME_COMPUTE_CAPABILITY``. The TensorRT-specific control flow of :func:`build_plan` is
tested with a stand-in module, and the real build by ``@pytest.mark.tensorrt`` tests that skip where TensorRT is
not usable.

``import tensorrt`` happens only inside functions, after a child process has confirmed that a GPU exists:
without one TensorRT can log CUDA error 35 and segfault on the next call.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alexnet_deploy.backends.base import cli_option
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.files import atomic_path, write_bytes_atomic, write_json_atomic
from alexnet_deploy.core.paths import require_file
from alexnet_deploy.core.system import GPU, probe_gpus, tensorrt_status
from alexnet_deploy.core.vocab import HardwareCompat

log = logging.getLogger(__name__)

SUPPORTED_MAJORS = (10, 11)
# Our option value -> the member of trt.HardwareCompatibilityLevel.
HARDWARE_COMPATIBILITY = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}
# trt.DataType member name -> the dtype name the sidecar records (numpy/torch spelling where one exists).
DTYPE_NAMES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "FP8": "fp8",
    "INT4": "int4",
    "FP4": "fp4",
}


@dataclass(frozen=True)
class ProfileOptions:
    """The build options every TensorRT flavour shares: the batch profile and the workspace.

    Attributes:
        min_batch, opt_batch, max_batch: the optimisation profile's batch sizes (TensorRT tunes for ``opt_batch``
            and accepts any batch in ``[min_batch, max_batch]``).
        workspace_mib: the builder's workspace memory pool limit.

    Raises:
        ConfigError: an option out of range (checked on construction).
    """

    min_batch: int = cli_option(1, "--min-batch", "Profile's smallest batch.")
    opt_batch: int = cli_option(8, "--opt-batch", "Batch TensorRT tunes for.")
    max_batch: int = cli_option(32, "--max-batch", "Profile's largest batch.")
    workspace_mib: int = cli_option(1024, "--workspace-mib", "Builder workspace limit (MiB).")

    def __post_init__(self) -> None:
        for name in ("min_batch", "opt_batch", "max_batch", "workspace_mib"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}.")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"The batch profile needs min <= opt <= max; got min {self.min_batch}, opt {self.opt_batch}, "
                f"max {self.max_batch}."
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values, for the sidecar."""
        return asdict(self)

    def profile_shapes(self, chw: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes for an image of ``chw``."""
        return tuple((batch, *chw) for batch in (self.min_batch, self.opt_batch, self.max_batch))  # type: ignore[return-value]


@dataclass(frozen=True)
class TensorRTBuildOptions(ProfileOptions):
    """How to build a TensorRT 10.x/11.x plan: the batch profile and workspace of :class:`ProfileOptions`, and

    Attributes:
        timing_cache: a timing cache file to load (if it exists) and save after the build; speeds up rebuilds.
        optimization_level: ``builder_optimization_level`` (0-5; TensorRT's default is 3, higher builds longer).
        hardware_compatibility: ``"none"`` (this GPU model only), ``"same_compute_capability"`` or
            ``"ampere_plus"`` (any Ampere or newer GPU, possibly slower).
        version_compatible: build with ``BuilderFlag.VERSION_COMPATIBLE`` so later TensorRT versions can load it.
        layer_report: write the engine inspector's per-layer JSON here (builds with DETAILED profiling verbosity).

    Raises:
        ConfigError: an option out of range (checked on construction).
    """

    timing_cache: Path | None = cli_option(None, "--timing-cache", "Timing cache file.", type=Path | None)
    optimization_level: int = cli_option(3, "--opt-level", "Builder optimisation level 0-5.")
    hardware_compatibility: str = cli_option(
        "none", "--hardware-compat", "Hardware compatibility level.", type=HardwareCompat, parse=lambda v: v.value
    )
    version_compatible: bool = cli_option(False, "--version-compatible", "Plan loadable by later TensorRT versions.")
    layer_report: Path | None = cli_option(None, "--layer-report", "Per-layer JSON report.", type=Path | None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.optimization_level, int) or not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"optimization_level must be 0 to 5, not {self.optimization_level!r}.")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise ConfigError(
                f"Unknown hardware compatibility {self.hardware_compatibility!r}; "
                f"choose one of {', '.join(HARDWARE_COMPATIBILITY)}."
            )
        # Accept strings for the paths (CLI callers), store Paths: the dataclass is frozen, hence object.__setattr__.
        for name in ("timing_cache", "layer_report"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values (paths as strings), for the sidecar."""
        d = asdict(self)
        for name in ("timing_cache", "layer_report"):
            d[name] = str(d[name]) if d[name] is not None else None
        return d


# -- versions ----------------------------------------------------------------------------------------------------
def tensorrt_major(version: str) -> int:
    """The major version of a supported TensorRT version string (``"10.8.0.43"`` -> 10).

    Raises:
        MissingBackendError: the version is not 10.x or 11.x (or cannot be read).
    """
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise MissingBackendError(
            f"Cannot read the TensorRT version {version!r}; alexnet-deploy needs 10.x or 11.x."
        ) from None
    if major not in SUPPORTED_MAJORS:
        raise MissingBackendError(
            f"TensorRT {version} is not supported: alexnet-deploy builds strongly typed plans with TensorRT 10.x or "
            "11.x only (pip install 'tensorrt-cu12>=10')."
        )
    return major


def network_flag_names(version: str) -> tuple[str, ...]:
    """The ``NetworkDefinitionCreationFlag`` members to set for this TensorRT version.

    10.x: ``STRONGLY_TYPED`` (so the ONNX graph's types decide every precision). 11.x: none — strong typing is
    always on (the flag is accepted and ignored) and ``EXPLICIT_BATCH`` no longer exists.

    Raises:
        MissingBackendError: TensorRT older than 10 or newer than 11.
    """
    return ("STRONGLY_TYPED",) if tensorrt_major(version) == 10 else ()


def network_flags(trt: Any) -> int:
    """The ``create_network`` flags bitmask for the imported ``tensorrt`` module (see :func:`network_flag_names`)."""
    return flag_bits(trt, network_flag_names(trt.__version__))


def flag_bits(trt: Any, names: tuple[str, ...]) -> int:
    """The ``create_network`` bitmask of these ``NetworkDefinitionCreationFlag`` members (0 for none)."""
    flags = 0
    for name in names:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return flags


def dtype_name(trt_dtype: Any) -> str:
    """The sidecar's name for a ``trt.DataType`` (``FLOAT`` -> ``"float32"``)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    return DTYPE_NAMES.get(name, name.lower())


# -- the ONNX input, read without TensorRT -----------------------------------------------------------------------
def onnx_image_input(onnx_path: str | Path) -> tuple[str, tuple[int, int, int]]:
    """The name and (C, H, W) of the model's single image input, read with ``onnx`` (no weights loaded).

    Raises:
        ArtifactError: the file is missing or not ONNX, or its input is not one N x 3 x H x W tensor with fixed H, W.
    """
    import onnx

    path = require_file(onnx_path, ArtifactError, "ONNX model", (".onnx",))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several private types
        raise ArtifactError(f"{path.name} is not a readable ONNX model: {str(exc).splitlines()[0][:200]}.") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ArtifactError(f"{path.name} must have one image input for TensorRT's profile; it has {names}.")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    if len(dims) != 4 or shape[1] != 3 or not all(isinstance(s, int) and s > 0 for s in shape[2:]):
        raise ArtifactError(
            f"The input {inputs[0].name!r} of {path.name} must be N x 3 x H x W with a fixed H and W; it is {shape}."
        )
    return inputs[0].name, (3, int(shape[2]), int(shape[3]))


# -- TensorRT, imported only once it is known to be safe ---------------------------------------------------------
def import_tensorrt() -> Any:
    """Import ``tensorrt`` after checking, in child processes, that it is installed, supported and has a GPU.

    Raises:
        MissingBackendError: with one sentence saying what is missing.
    """
    status = tensorrt_status()
    if not status["usable"]:
        raise MissingBackendError(f"TensorRT is not usable here: {status['reason']}.")
    import tensorrt as trt

    tensorrt_major(trt.__version__)
    return trt


def visible_gpus() -> list[GPU]:
    """The GPUs as CUDA numbers them in this process (``CUDA_VISIBLE_DEVICES`` applied), falling back to the probe.

    A GPU's existence is first confirmed by :func:`alexnet_deploy.core.system.probe_gpus` in a child process, so this
    never initialises CUDA on a machine without one.

    Raises:
        MissingBackendError: no NVIDIA GPU.
    """
    gpus, how = probe_gpus()
    if not gpus:
        raise MissingBackendError(f"No NVIDIA GPU was found ({how}), and TensorRT needs one.")
    try:
        import torch

        if torch.cuda.is_available():
            found = []
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                found.append(GPU(p.name, f"{p.major}.{p.minor}", round(p.total_memory / 2**30, 1)))
            return found
    except Exception as exc:  # noqa: BLE001 - a torch without CUDA support: nvidia-smi's list will do
        log.debug("torch could not list CUDA devices (%s); using %s", exc, how)
    return list(gpus)


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards TensorRT's messages to Python logging and keeps the errors for our sentences."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= 1:
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif level == 2:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

        def last_error(self) -> str:
            return self.errors[-1].strip().rstrip(".") if self.errors else "TensorRT logged no error"

    return _Logger()


def _attach_timing_cache(config: Any, path: Path | None) -> Any:
    """Load ``path`` (when it exists) into a timing cache on ``config``; an incompatible cache is replaced."""
    if path is None:
        return None
    previous = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(previous)
    if not config.set_timing_cache(cache, False):
        # A cache from another GPU or TensorRT version: start afresh rather than fail the build.
        log.warning("The timing cache %s does not fit this GPU/TensorRT; starting a new one.", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _network_io(network: Any) -> list[dict[str, Any]]:
    io = []
    for mode, count, get in (
        ("input", network.num_inputs, network.get_input),
        ("output", network.num_outputs, network.get_output),
    ):
        for i in range(count):
            tensor = get(i)
            io.append(
                {"name": tensor.name, "mode": mode, "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape)}
            )
    return io


def _write_layer_report(trt: Any, logger: Any, plan: Any, path: Path, version_compatible: bool) -> None:
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True  # a version-compatible plan embeds the lean runtime; we built it
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ArtifactError(f"The plan just built could not be loaded for the layer report: {logger.last_error()}.")
    text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        write_json_atomic(path, json.loads(text))
    except json.JSONDecodeError:
        write_bytes_atomic(path, text.encode())


# -- the parser's errors, as one sentence ------------------------------------------------------------------------
def _error_field(error: Any, name: str) -> Any:
    """``error.name()`` of a ``ParserError``, or None where this TensorRT's error lacks it (or is a string)."""
    method = getattr(error, name, None)
    try:
        return method() if callable(method) else None
    except Exception:  # noqa: BLE001 - a binding that cannot answer is as good as a missing one
        return None


def describe_parser_error(error: Any) -> str:
    """One parser error as a clause naming the ONNX node: ``node 'fancy_1' (FancyOp): invalid node (...)``.

    Uses ``node_name()``, ``node_operator()``, ``code()`` and ``desc()`` (TensorRT 10.2+, TensorRT-RTX); an error
    without a node (a model-level failure), or from a binding without those, falls back to ``str(error)``.
    """
    name, operator = _error_field(error, "node_name"), _error_field(error, "node_operator")
    if not name and not operator:
        return str(error).strip()
    code = _error_field(error, "code")
    kind = getattr(code, "name", str(code or "error")).lower().replace("_", " ")
    desc = str(_error_field(error, "desc") or "").strip()
    quoted = re.findall(r'"([^"]+)"', desc)  # an assertion's message: 'creator && "Plugin not found, ..."'
    detail = quoted[-1] if quoted else ("" if desc.lower() in ("", "false", "true") else desc)
    return f"node {name or '?'!r} ({operator or 'unknown operator'}): {kind}" + (f" ({detail})" if detail else "")


def parser_failure(label: str, onnx_path: Path, parser: Any, logger: Any) -> str:
    """The sentence for a failed ``parse_from_file``: the first three errors, each naming its node."""
    errors = [describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    shown = "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")
    return f"{label}'s ONNX parser rejected {onnx_path.name}: {shown or logger.last_error()}."


# -- one build for every flavour ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorRTFlavour:
    """What differs between the TensorRT libraries we build with; :func:`compile_plan` shares everything else.

    Attributes:
        name: the backend's name and the sidecar's ``engine.flavour`` (``"tensorrt"``, ``"tensorrt-rtx"``).
        module: the Python module (``tensorrt``, ``tensorrt_rtx``).
        label: how sentences name the library.
        build_needs_gpu: TensorRT 10/11 times its kernels on the GPU it builds on; TensorRT-RTX compiles ahead of
            time on the CPU (and just in time on the GPU that runs the plan).
        import_module: imports the module once that is known to be safe, else raises ``MissingBackendError``.
        network_flag_names: library version -> the ``NetworkDefinitionCreationFlag`` members to set.
        prepare: ``(trt, options) -> facts``: checks and facts that need no builder, before the (slow) parse.
        configure: ``(trt, config, options, facts) -> state``: the flavour's builder-config settings.
        finish: ``(trt, logger, plan, options, state) -> None``: work after the plan is written (caches, reports).
    """

    name: str
    module: str
    label: str
    build_needs_gpu: bool
    import_module: Callable[[], Any]
    network_flag_names: Callable[[str], tuple[str, ...]]
    prepare: Callable[[Any, Any], dict[str, Any]]
    configure: Callable[[Any, Any, Any, dict[str, Any]], Any]
    finish: Callable[[Any, Any, Any, Any, Any], None] | None = None


def compile_plan(flavour: TensorRTFlavour, onnx_path: Path, plan_path: Path, options: ProfileOptions) -> dict[str, Any]:
    """The build every flavour shares: parse, profile, ``build_serialized_network``, atomic write, the io facts.

    Strongly typed (no precision flags): the ONNX graph's types and Q/DQ nodes decide every precision.

    Returns:
        The engine facts: ``flavour``, the flavour's own facts (from ``prepare``), ``io``, ``profile``,
        ``build_options``, ``network_flags``, ``strongly_typed``, ``plan_bytes``, ``build_seconds``.

    Raises:
        ArtifactError: the ONNX is unusable, or the parser rejects it (naming the node), or the build fails;
            nothing is left at ``plan_path`` then.
        MissingBackendError / ConfigError: from the flavour's import and checks.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    input_name, chw = onnx_image_input(onnx_path)  # refuse a bad model before paying for TensorRT
    trt = flavour.import_module()
    facts = flavour.prepare(trt, options)
    start = time.perf_counter()

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flag_names = flavour.network_flag_names(trt.__version__)
    network = builder.create_network(flag_bits(trt, flag_names))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise ArtifactError(parser_failure(flavour.label, onnx_path, parser, logger))
    if network.num_inputs != 1 or network.get_input(0).name != input_name:
        raise ArtifactError(f"{flavour.label} sees other inputs in {onnx_path.name} than the ONNX file declares.")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    fixed = int(network.get_input(0).shape[0])
    # A graph exported for one batch size takes only that one: the profile is that shape, whatever was asked.
    shapes = ((fixed, *chw),) * 3 if fixed > 0 else options.profile_shapes(chw)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    if config.add_optimization_profile(profile) < 0:
        raise ArtifactError(
            f"{flavour.label} refused the batch profile {shapes} for {input_name!r}: {logger.last_error()}."
        )
    state = flavour.configure(trt, config, options, facts)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"{flavour.label} could not build a plan from {onnx_path.name}: {logger.last_error()}.")
    with atomic_path(plan_path) as tmp, open(tmp, "wb") as f:
        f.write(plan)
    if flavour.finish is not None:
        flavour.finish(trt, logger, plan, options, state)

    return {
        "flavour": flavour.name,
        **facts,
        "io": _network_io(network),
        "profile": {"input": input_name, "min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])},
        "build_options": options.to_dict(),
        "network_flags": list(flag_names),
        "strongly_typed": True,
        "plan_bytes": plan_path.stat().st_size,
        "build_seconds": round(time.perf_counter() - start, 1),
    }


# -- the TensorRT 10.x/11.x flavour ------------------------------------------------------------------------------
def _tensorrt_prepare(trt: Any, options: TensorRTBuildOptions) -> dict[str, Any]:
    level_name = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
    if getattr(trt.HardwareCompatibilityLevel, level_name, None) is None:
        # SAME_COMPUTE_CAPABILITY arrived during 10.x (absent from 10.0).
        raise ConfigError(
            f"TensorRT {trt.__version__} has no {options.hardware_compatibility} hardware compatibility level; "
            "use a later TensorRT or another level."
        )
    gpu = visible_gpus()[0]  # the builder uses the current CUDA device, device 0
    return {
        "tensorrt_version": trt.__version__,
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "layer_report": str(options.layer_report) if options.layer_report is not None else None,
    }


def _tensorrt_configure(trt: Any, config: Any, options: TensorRTBuildOptions, facts: dict[str, Any]) -> Any:
    config.builder_optimization_level = options.optimization_level
    level_name = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level_name)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.layer_report is not None:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return _attach_timing_cache(config, options.timing_cache)


def _tensorrt_finish(trt: Any, logger: Any, plan: Any, options: TensorRTBuildOptions, cache: Any) -> None:
    if cache is not None:
        write_bytes_atomic(options.timing_cache, bytes(cache.serialize()))
    if options.layer_report is not None:
        _write_layer_report(trt, logger, plan, options.layer_report, options.version_compatible)


TENSORRT = TensorRTFlavour(
    name="tensorrt",
    module="tensorrt",
    label="TensorRT",
    build_needs_gpu=True,
    import_module=import_tensorrt,
    network_flag_names=network_flag_names,
    prepare=_tensorrt_prepare,
    configure=_tensorrt_configure,
    finish=_tensorrt_finish,
)


def build_plan(onnx_path: Path, plan_path: Path, options: TensorRTBuildOptions | None = None) -> dict[str, Any]:
    """Build a TensorRT 10.x/11.x plan from an ONNX model (strongly typed, no precision flags), atomically.

    Written against the TensorRT 10.x/11.x Python API documentation; its shared part (:func:`compile_plan`) runs
    in CI with TensorRT-RTX, the TensorRT-specific part only against a stand-in.

    Args:
        onnx_path: an FP32, FP16 or Q/DQ INT8 ONNX model with one N x 3 x H x W input.
        plan_path: where the plan goes (the caller writes the sidecar from the returned facts).
        options: profile, workspace, timing cache, optimisation and compatibility levels, layer report.

    Returns:
        The engine facts for the sidecar's ``engine`` key: ``flavour`` (``"tensorrt"``), ``tensorrt_version``,
        ``gpu`` (name, compute_capability), ``io`` (name, mode, dtype, shape per tensor), ``profile`` (input,
        min, opt, max), ``build_options``, ``network_flags``, ``strongly_typed``, ``layer_report``,
        ``plan_bytes``, ``build_seconds``.

    Raises:
        ArtifactError: the ONNX is unusable or TensorRT rejects it or fails to build.
        MissingBackendError: TensorRT or a GPU is missing, or TensorRT is not 10.x/11.x.
    """
    return compile_plan(TENSORRT, onnx_path, plan_path, options or TensorRTBuildOptions())
