"""TensorRT for RTX: real plans built on any machine (no GPU needed), run on RTX/Ampere-or-newer GPUs.

The build is :func:`.builder.compile_plan`, shared with TensorRT 10/11; what differs lives
in :data:`TENSORRT_RTX`: the ``tensorrt_rtx`` module, ``create_network(0)`` (strong typing is the only mode; the
``STRONGLY_TYPED`` flag is deprecated and ignored), no GPU probe before the build (the builder compiles ahead of
time on the CPU), explicit target compute capabilities, and no timing cache (in TensorRT-RTX it has no effect on
the plan and makes the build look for a GPU). Kernels are compiled just in time when the first execution context
is created on the GPU that runs the plan; :class:`TensorRTRTXRunner` keeps a runtime cache beside the plan
(``NAME.plan.rtcache``) so that happens once per GPU and release.

Measured with the real library (1.7.1.116, ``tensorrt-rtx`` from PyPI), on a CPU-only machine:
  * a plan holds code for the targets it was built for (default here: 8.0, 8.6, 8.9, 12.0, 12.1, i.e. every
    supported GPU but Turing); targeting Turing (7.5) fails for FP32 graphs ("FP32 GEMM is not supported").
    ``CURRENT`` needs a GPU ("cudaError 35" without one), so ``"current"`` is resolved through the GPU probe.
  * a plan starts with a 64-byte header: the magic tag ``b"vtrt"`` and, at byte 16, the plan's total size as a
    little-endian uint64 (the deserialiser asserts both: ``header.magicTag == kEXPECTED_MAGIC_TAG``,
    ``plan.header.size == blobSize``). :func:`check_rtx_plan_bytes` checks them (the sidecar's sha256 is checked
    when it is loaded), so a file that is not a plan is refused with our sentence before TensorRT-RTX sees it.
  * without a GPU, ``Runtime.get_engine_validity`` returns ``(INVALID, 0)`` after logging CUDA error 35 (and a
    malformed file ``(INVALID, MALFORMED_ENGINE)``); ``deserialize_cuda_engine`` logs errors and returns None.
    Neither is ever called in this process without a GPU: :func:`plan_validity` asks a child process.
Not measured (no supported GPU here): running a plan, the JIT compile, the runtime cache round trip; the runner's
control flow runs here against a stand-in module, its calls were checked against the installed bindings.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alexnet_deploy.backends.base import BackendStatus, cli_option
from alexnet_deploy.backends.tensorrt.builder import (
    ProfileOptions,
    TensorRTFlavour,
    compile_plan,
    make_logger,
    visible_gpus,
)
from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.files import write_bytes_atomic
from alexnet_deploy.core.manifest import load_manifest
from alexnet_deploy.core.system import GPU, probe_gpus

log = logging.getLogger(__name__)

FLAVOUR = "tensorrt-rtx"
PIP_HINT = "pip install 'alexnet-deploy[tensorrt-rtx]'"
# Our spelling of a compute capability -> the member of trt.ComputeCapability (1.7 has exactly these).
COMPUTE_CAPABILITIES = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}
# Every supported GPU but Turing: FP32 GEMMs cannot target Turing, and NVIDIA advises Turing-only plans for it.
DEFAULT_COMPUTE_CAPABILITIES = ("8.0", "8.6", "8.9", "12.0", "12.1")
CURRENT = "current"
_ARCHITECTURES = {"7": "Volta/Turing", "8": "Ampere/Ada", "9": "Hopper", "10": "Blackwell", "12": "Blackwell"}
SUPPORTED_SENTENCE = "an RTX/Ampere-or-newer GPU, SM75-SM121, not Hopper"
PLAN_MAGIC = b"vtrt"
PLAN_HEADER_BYTES = 64
RUNTIME_CACHE_SUFFIX = ".rtcache"


# -- target compute capabilities ---------------------------------------------------------------------------------
def _normalise_capability(text: str) -> str:
    s = text.strip().lower().replace("sm_", "").replace("sm", "")
    if s == CURRENT:
        return CURRENT
    if "." not in s and s.isdigit() and len(s) in (2, 3):  # "86" -> "8.6", "120" -> "12.0"
        s = f"{s[:-1]}.{s[-1]}"
    major, _, minor = s.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ConfigError(f"{text.strip()!r} is not a compute capability; write them like 8.6,8.9,12.0.")
    return f"{int(major)}.{int(minor)}"


def parse_compute_capabilities(value: str | Sequence[str]) -> tuple[str, ...]:
    """Targets as ``("8.6", "8.9")`` from ``"8.6,8.9"``, ``["sm86", "8.9"]`` or ``"current"``.

    Raises:
        ConfigError: empty, unknown (``9.0`` is Hopper, which TensorRT-RTX cannot run), or ``current`` mixed with
            others (it means this machine's GPU, alone).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    found: list[str] = []
    for item in items:
        if not str(item).strip():
            continue
        cc = _normalise_capability(str(item))
        if cc != CURRENT and cc not in COMPUTE_CAPABILITIES:
            arch = _ARCHITECTURES.get(cc.split(".")[0])
            why = "is Hopper, which TensorRT-RTX does not support" if arch == "Hopper" else "cannot be targeted"
            raise ConfigError(
                f"Compute capability {cc} {why}; TensorRT-RTX targets {', '.join(COMPUTE_CAPABILITIES)} "
                f"(or {CURRENT}, this machine's GPU)."
            )
        if cc not in found:
            found.append(cc)
    if not found:
        raise ConfigError(f"Give at least one compute capability, e.g. {','.join(DEFAULT_COMPUTE_CAPABILITIES)}.")
    if CURRENT in found and len(found) > 1:
        raise ConfigError(f"{CURRENT!r} targets this machine's GPU alone; it cannot be combined with other targets.")
    return tuple(found)


def gpu_problem(gpu: GPU) -> str | None:
    """Why TensorRT-RTX cannot run on ``gpu`` (Hopper, or a compute capability it has no code for), or None."""
    try:
        cc = _normalise_capability(str(gpu.compute_capability))
    except ConfigError:
        return f"{gpu.name} reports no compute capability ({gpu.compute_capability!r})"
    if cc in COMPUTE_CAPABILITIES:
        return None
    if _ARCHITECTURES.get(cc.split(".")[0]) == "Hopper":
        return f"{gpu.name} is a Hopper GPU (compute {cc}), which TensorRT-RTX cannot run on"
    return f"{gpu.name} (compute {cc}) is not a GPU TensorRT-RTX runs on ({', '.join(COMPUTE_CAPABILITIES)})"


@dataclass(frozen=True)
class RTXBuildOptions(ProfileOptions):
    """How to build a TensorRT-RTX plan: the batch profile and workspace of ``ProfileOptions``, and

    Attributes:
        compute_capabilities: the GPUs the plan will run on, as ``("8.6", "8.9")`` (a comma-separated string
            is accepted). Default: every supported GPU but Turing (8.0, 8.6, 8.9, 12.0, 12.1), which costs
            nothing measurable: at width 1.0, 224 px (one run, 1.7.1, CPU) the torchvision-layout FP32 plan is
            244,724,932 bytes for the five targets, 244,726,820 for 8.6 alone and 244,726,828 for 8.6,8.9,12.0,
            all built in 2.0-2.5 s (kernels are compiled just in time on the GPU, so targets add little).
            ``("current",)`` builds for this machine's GPU only and needs one; ``7.5`` (Turing) is best built
            alone, and FP32 graphs cannot target it at all.

    Raises:
        ConfigError: a bad batch profile or target (checked on construction).
    """

    compute_capabilities: tuple[str, ...] = cli_option(
        DEFAULT_COMPUTE_CAPABILITIES, "--compute-capability", "Target GPUs, e.g. 8.6,8.9,12.0.", type=str
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "compute_capabilities", parse_compute_capabilities(self.compute_capabilities))

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values, for the sidecar."""
        d = asdict(self)
        d["compute_capabilities"] = list(self.compute_capabilities)
        return d


# -- the TensorRT-RTX flavour ------------------------------------------------------------------------------------
def rtx_major(version: str) -> int:
    """The major version of a supported TensorRT-RTX (``"1.7.1.116"`` -> 1).

    Raises:
        MissingBackendError: not 1.x.
    """
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = -1
    if major != 1:
        raise MissingBackendError(f"TensorRT-RTX {version} is not supported; alexnet-deploy builds with 1.x.")
    return major


def import_tensorrt_rtx() -> Any:
    """Import ``tensorrt_rtx``: safe without a GPU (importing and building touch no CUDA device).

    Raises:
        MissingBackendError: not installed, its libraries do not load, or not 1.x.
    """
    if importlib.util.find_spec("tensorrt_rtx") is None:
        raise MissingBackendError(f"TensorRT-RTX is not installed ({PIP_HINT}).")
    try:
        import tensorrt_rtx as trt
    except (ImportError, OSError) as exc:
        raise MissingBackendError(f"TensorRT-RTX is installed but does not load: {str(exc).splitlines()[0]}.") from None
    rtx_major(trt.__version__)
    return trt


def _resolve_targets(options: RTXBuildOptions) -> tuple[list[str], str]:
    """(the compute capabilities the plan will hold, what it was built on); ``current`` asks the GPU probe."""
    if options.compute_capabilities != (CURRENT,):
        return list(options.compute_capabilities), "cpu (ahead of time, no GPU used)"
    gpus, how = probe_gpus()  # a child process: never touch CUDA here without knowing a GPU exists
    if not gpus:
        raise MissingBackendError(
            f"Compute capability {CURRENT!r} builds for this machine's GPU, and none was found ({how}); name the "
            f"targets instead, e.g. {','.join(DEFAULT_COMPUTE_CAPABILITIES)}."
        )
    gpu = visible_gpus()[0]  # the builder targets the current CUDA device: CUDA's numbering, not nvidia-smi's
    problem = gpu_problem(gpu)
    if problem:
        raise MissingBackendError(f"Cannot build for {CURRENT!r}: {problem}.")
    return [_normalise_capability(gpu.compute_capability)], f"{gpu.name} ({CURRENT})"


def _rtx_prepare(trt: Any, options: RTXBuildOptions) -> dict[str, Any]:
    targets, built_on = _resolve_targets(options)
    for cc in targets:
        if getattr(trt.ComputeCapability, COMPUTE_CAPABILITIES[cc], None) is None:
            raise ConfigError(f"TensorRT-RTX {trt.__version__} cannot target compute capability {cc}.")
    return {
        "tensorrt_rtx_version": trt.__version__,
        "compute_capabilities": targets,
        "built_on": built_on,
        "engine_run": False,  # a build never runs the plan; whoever verifies it on a GPU sets this
    }


def _rtx_configure(trt: Any, config: Any, options: RTXBuildOptions, facts: dict[str, Any]) -> None:
    current = options.compute_capabilities == (CURRENT,)
    members = (
        [trt.ComputeCapability.CURRENT]
        if current
        else [getattr(trt.ComputeCapability, COMPUTE_CAPABILITIES[cc]) for cc in facts["compute_capabilities"]]
    )
    config.num_compute_capabilities = len(members)
    for i, member in enumerate(members):
        if not config.set_compute_capability(member, i):
            raise ConfigError(f"TensorRT-RTX refused the target compute capability {member.name}.")


TENSORRT_RTX = TensorRTFlavour(
    name=FLAVOUR,
    module="tensorrt_rtx",
    label="TensorRT-RTX",
    build_needs_gpu=False,
    import_module=import_tensorrt_rtx,
    network_flag_names=lambda version: (),  # create_network(0): strong typing is the only mode
    prepare=_rtx_prepare,
    configure=_rtx_configure,
)


def build_rtx_plan(onnx_path: str | Path, plan_path: str | Path, options: RTXBuildOptions | None = None) -> dict:
    """Build a TensorRT-RTX plan from an FP32, FP16 or Q/DQ INT8 ONNX, on any machine (no GPU needed).

    Returns:
        The engine facts for the sidecar's ``engine`` key: ``flavour`` (``"tensorrt-rtx"``),
        ``tensorrt_rtx_version``, ``compute_capabilities`` (the targets), ``built_on``, ``engine_run``
        (False: facts only), ``io``, ``profile``, ``build_options``, ``network_flags``, ``strongly_typed``,
        ``plan_bytes``, ``build_seconds``.

    Raises:
        ArtifactError: the ONNX is unusable, the parser rejects it (naming the node) or the build fails; no
            file is left at ``plan_path`` then.
        MissingBackendError: TensorRT-RTX is not installed (or ``current`` was asked for without a GPU).
        ConfigError: a target this release cannot build for.
    """
    return compile_plan(TENSORRT_RTX, Path(onnx_path), Path(plan_path), options or RTXBuildOptions())


# -- what this machine can do ------------------------------------------------------------------------------------
_VERSION_PROBE = "import json, tensorrt_rtx; print(json.dumps({'version': tensorrt_rtx.__version__}))"


def _child(code: str, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return -1, "", f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stdout, proc.stderr


def rtx_status() -> dict[str, Any]:
    """Whether TensorRT-RTX can build and run here, for the doctor; never imports it in this process.

    Returns:
        ``installed``, ``version``, ``can_build`` (importable: no GPU needed), ``can_run`` (a supported GPU is
        present), ``reason`` (why it cannot build or run; empty when it can do both), ``gpus`` (name and
        compute capability of each GPU it can run on).
    """
    status: dict[str, Any] = {
        "installed": False, "version": None, "can_build": False, "can_run": False, "reason": "", "gpus": [],
    }  # fmt: skip
    if importlib.util.find_spec("tensorrt_rtx") is None:
        status["reason"] = f"the tensorrt_rtx package is not installed ({PIP_HINT})"
        return status
    status["installed"] = True
    rc, out, err = _child(_VERSION_PROBE)
    if rc != 0:
        status["reason"] = f"importing tensorrt_rtx failed: {(err.strip().splitlines() or [f'exit code {rc}'])[-1]}"
        return status
    status["version"] = json.loads(out.strip().splitlines()[-1])["version"]
    try:
        rtx_major(status["version"])
    except MissingBackendError as exc:
        status["reason"] = str(exc).rstrip(".")
        return status
    status["can_build"] = True
    gpus, how = probe_gpus()
    usable = [g for g in gpus if gpu_problem(g) is None]
    status["gpus"] = [{"name": g.name, "compute_capability": g.compute_capability} for g in usable]
    status["can_run"] = bool(usable)
    if not gpus:
        status["reason"] = f"running a plan needs {SUPPORTED_SENTENCE}; none found here ({how})"
    elif not usable:
        status["reason"] = f"running a plan needs {SUPPORTED_SENTENCE}: {'; '.join(map(gpu_problem, gpus))}"
    return status


def rtx_verification(status: dict[str, Any] | None = None) -> dict[str, Any]:
    """How ``build`` can verify a TensorRT-RTX plan here: run the plan, or (no supported GPU) its deployable ONNX.

    Returns:
        The sidecar's ``engine_run`` (True: the plan itself is run on a GPU) and ``verified_on`` (a sentence:
        what the accuracy figures were measured with).
    """
    status = status if status is not None else rtx_status()
    if status["can_run"]:
        gpu = status["gpus"][0]
        where = f"TensorRT-RTX {status['version']} on {gpu['name']} (compute {gpu['compute_capability']})"
        return {"engine_run": True, "verified_on": f"the plan itself, run by {where}"}
    why = status["reason"] or "it cannot run here"
    return {"engine_run": False, "verified_on": f"the deployable ONNX in ONNX Runtime, not the plan ({why})"}


# -- refusing a plan before TensorRT-RTX sees it -----------------------------------------------------------------
def check_rtx_plan_compatible(engine_facts: dict, rtx_version: str, gpus: Sequence[GPU], *, device: int = 0) -> None:
    """Refuse, from the sidecar alone, a plan this machine's TensorRT-RTX or GPU cannot run.

    Rules: the same TensorRT-RTX release, exactly (an engine never loads on another one); a GPU TensorRT-RTX runs
    on (not Hopper); and one of the compute capabilities the plan was built for.

    Raises:
        ArtifactError: incompatible (one sentence naming the plan's release and targets and this machine's), not
            a TensorRT-RTX plan, or a sidecar without the facts to decide.
        MissingBackendError: no GPU here.
        ConfigError: ``device`` is not one of this machine's GPUs.
    """
    if engine_facts.get("flavour") not in (None, FLAVOUR):
        raise ArtifactError(
            f"This plan was built by {engine_facts.get('flavour')}, not TensorRT-RTX; run it with that backend."
        )
    built_version, targets = engine_facts.get("tensorrt_rtx_version"), engine_facts.get("compute_capabilities")
    if not built_version or not targets:
        raise ArtifactError(
            "The plan's sidecar does not record the TensorRT-RTX release and target compute capabilities that built "
            "it, so its compatibility cannot be checked; rebuild it with `alexnet-deploy build --backend tensorrt-rtx`."
        )
    if not gpus:
        raise MissingBackendError(
            f"No NVIDIA GPU was found, and running a TensorRT-RTX plan needs {SUPPORTED_SENTENCE}."
        )
    if not 0 <= device < len(gpus):
        raise ConfigError(f"GPU {device} does not exist here; this machine has {len(gpus)} GPU(s).")
    here = gpus[device]
    unsupported = gpu_problem(here)
    cc = here.compute_capability if unsupported else _normalise_capability(here.compute_capability)
    problems = []
    if str(built_version).strip() != str(rtx_version).strip():
        problems.append("an engine loads only on the TensorRT-RTX release that built it")
    if unsupported:
        problems.append(unsupported)
    elif cc not in [_normalise_capability(t) for t in targets]:
        problems.append(f"the plan holds no code for compute {cc}")
    if problems:
        fix = (
            "build a TensorRT plan for this GPU instead (--backend tensorrt)"
            if unsupported
            else f"rebuild it with `alexnet-deploy build --backend tensorrt-rtx --compute-capability {cc}`"
        )
        raise ArtifactError(
            f"This plan was built by TensorRT-RTX {built_version} for compute {', '.join(targets)}; this machine has "
            f"TensorRT-RTX {rtx_version} and {here.name} (compute {cc}): {'; '.join(problems)}; {fix}."
        )


def check_rtx_plan_bytes(data: bytes, name: str) -> None:
    """Refuse bytes that are not a whole TensorRT-RTX plan: the header's magic tag and recorded size. (Whether
    they are the bytes the sidecar describes is checked once, by ``load_manifest``'s sha256.)

    Raises:
        ArtifactError: one sentence saying which check failed.
    """
    if len(data) < PLAN_HEADER_BYTES or data[:4] != PLAN_MAGIC:
        raise ArtifactError(f"{name} is not a TensorRT-RTX plan: it does not start with a plan header.")
    size = int.from_bytes(data[16:24], "little")
    if size != len(data):
        raise ArtifactError(f"{name} is damaged: its plan header says {size} bytes, the file holds {len(data)}.")


_VALIDITY_PROBE = """
import json, sys
import tensorrt_rtx as trt
class Logger(trt.ILogger):
    def __init__(self):
        trt.ILogger.__init__(self)
        self.errors = []
    def log(self, severity, msg):
        if int(severity) <= 1:
            self.errors.append(msg)
logger = Logger()
runtime = trt.Runtime(logger)
with open(sys.argv[1], "rb") as f:
    header = f.read(runtime.engine_header_size)
validity, bits = runtime.get_engine_validity(header)
flags = trt.EngineInvalidityDiagnostics
diagnostics = [m for m in flags.__members__ if bits & int(getattr(flags, m))]
print(json.dumps({"validity": validity.name, "diagnostics": diagnostics, "errors": logger.errors}))
"""


def plan_validity(plan_path: str | Path, timeout: float = 120.0) -> dict[str, Any]:
    """``Runtime.get_engine_validity`` of a plan's header, asked in a child process (safe without a GPU).

    Returns:
        ``validity`` (``VALID``, ``SUBOPTIMAL``, ``INVALID``), ``diagnostics`` (``EngineInvalidityDiagnostics``
        names, e.g. ``MALFORMED_ENGINE``, ``VERSION_MISMATCH``, ``UNSUPPORTED_CC``) and the ``errors`` TensorRT-RTX
        logged. Without a GPU the answer is ``INVALID`` with no diagnostics and a CUDA error 35 logged.

    Raises:
        MissingBackendError: the child could not import TensorRT-RTX or crashed.
    """
    rc, out, err = _child(_VALIDITY_PROBE, str(plan_path), timeout=timeout)
    if rc != 0:
        last = (err.strip().splitlines() or [f"exit code {rc}"])[-1]
        raise MissingBackendError(f"Asking TensorRT-RTX about {Path(plan_path).name} failed: {last}.")
    return json.loads(out.strip().splitlines()[-1])


# -- running a plan ----------------------------------------------------------------------------------------------
def runtime_cache_path(plan_path: str | Path) -> Path:
    """Where the runner keeps a plan's runtime cache: ``NAME.plan.rtcache`` beside it."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + RUNTIME_CACHE_SUFFIX)


class TensorRTRTXRunner(TensorRTRunner):
    """Runs a plan built by :func:`build_rtx_plan` on one supported GPU; I/O, buffers and timing as
    :class:`~alexnet_deploy.backends.tensorrt.runner.TensorRTRunner`.

    Activation refuses, before TensorRT-RTX sees the plan, a plan from another release or for another GPU (the
    sidecar), a file that is not the plan (sha256, header), and a machine without a supported GPU (the GPU probe,
    in a child process); then asks ``get_engine_validity``, deserialises, and creates the execution context with
    a runtime config that carries the runtime cache (the JIT compile happens there, once per GPU and release).

    Args:
        plan_path: the plan; its sidecar (``NAME.plan.json``) must be beside it.
        device: CUDA device index.
        include_copies: see ``TensorRTRunner``.
        name: label for reports (default ``"tensorrt-rtx PRECISION"``).
        runtime_cache: keep the JIT-compiled kernels in ``NAME.plan.rtcache`` (loaded on activation, saved on
            deactivation).

    Attributes:
        jit_seconds: how long creating the execution context (the JIT compile) took.
        runtime_cache_loaded: whether a saved runtime cache was accepted on activation.
    """

    backend = FLAVOUR

    def __init__(
        self,
        plan_path: str | Path,
        device: int = 0,
        include_copies: bool = True,
        name: str | None = None,
        runtime_cache: bool = True,
    ) -> None:
        super().__init__(plan_path, device=device, include_copies=include_copies, name=name)
        if name is None:
            self.name = f"{FLAVOUR} {self.precision}"
        self.runtime_cache_file = runtime_cache_path(self.plan_path) if runtime_cache else None
        self.jit_seconds: float | None = None
        self.runtime_cache_loaded = False

    def activate_impl(self) -> None:
        if not self.plan_path.is_file():
            raise ArtifactError(f"TensorRT-RTX plan not found: {self.plan_path}.")
        manifest = load_manifest(self.plan_path, required=True)
        if manifest.kind != "plan" or not manifest.engine:
            raise ArtifactError(f"{self.plan_path.name}'s sidecar does not describe a TensorRT-RTX plan.")
        self.engine_facts = dict(manifest.engine)
        status = rtx_status()  # child processes: tensorrt_rtx's version, then the GPU probe
        if not status["can_run"]:
            raise MissingBackendError(f"TensorRT-RTX cannot run plans here: {status['reason']}.")
        check_rtx_plan_compatible(self.engine_facts, str(status["version"]), visible_gpus(), device=self.device)
        data = self.plan_path.read_bytes()
        check_rtx_plan_bytes(data, self.plan_path.name)  # load_manifest already matched the sha256

        import tensorrt_rtx as trt
        import torch

        if not torch.cuda.is_available():
            raise MissingBackendError("This torch has no CUDA support, and the TensorRT-RTX runner uses its buffers.")
        self._trt, self._torch = trt, torch
        with torch.cuda.device(self.device):
            self._logger = make_logger(trt)
            self._runtime = trt.Runtime(self._logger)
            self._check_validity(data)
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise ArtifactError(f"TensorRT-RTX could not load {self.plan_path.name}: {self._logger.last_error()}.")
            self._runtime_config = self._engine.create_runtime_config()
            if self.runtime_cache_file is not None:
                self._attach_runtime_cache()
            start = time.perf_counter()
            self._context = self._engine.create_execution_context(runtime_config=self._runtime_config)
            self.jit_seconds = time.perf_counter() - start
            if self._context is None:
                raise ArtifactError(f"TensorRT-RTX could not create an execution context: {self._logger.last_error()}.")
            self._setup_io()

    def _check_validity(self, data: bytes) -> None:
        trt = self._trt
        validity, bits = self._runtime.get_engine_validity(data[: self._runtime.engine_header_size])
        if validity == trt.EngineValidity.INVALID:
            diagnostics = trt.EngineInvalidityDiagnostics
            names = [m for m in diagnostics.__members__ if int(bits) & int(getattr(diagnostics, m))]
            raise ArtifactError(
                f"TensorRT-RTX says {self.plan_path.name} cannot run on this GPU: "
                f"{', '.join(n.lower().replace('_', ' ') for n in names) or self._logger.last_error()}."
            )
        if validity == trt.EngineValidity.SUBOPTIMAL:
            log.warning("TensorRT-RTX says %s will run here, possibly slower than it could.", self.plan_path.name)

    def _attach_runtime_cache(self) -> None:
        self._runtime_cache = self._runtime_config.create_runtime_cache()
        path = self.runtime_cache_file
        if path is not None and path.is_file():
            # Rejected (False) when made by another release, GPU or driver: it is then rebuilt and replaced.
            self.runtime_cache_loaded = bool(self._runtime_cache.deserialize(path.read_bytes()))
            if not self.runtime_cache_loaded:
                log.info("The runtime cache %s does not fit this GPU/release; it will be replaced.", path)
        if not self._runtime_config.set_runtime_cache(self._runtime_cache):
            log.warning("TensorRT-RTX refused the runtime cache; kernels will be compiled afresh each time.")

    def deactivate_impl(self) -> None:
        cache = getattr(self, "_runtime_cache", None)
        if cache is not None and self.runtime_cache_file is not None:
            try:
                write_bytes_atomic(self.runtime_cache_file, bytes(cache.serialize()))
            except ArtifactError as exc:  # a read-only folder costs the next run a JIT compile, nothing more
                log.warning("The runtime cache was not saved: %s", exc)
        # The context before the runtime config and its cache (they must outlive it), then engine and runtime.
        for attr in ("_context", "_runtime_config", "_runtime_cache"):
            if hasattr(self, attr):
                delattr(self, attr)
        super().deactivate_impl()


# -- the registry's interface (alexnet_deploy.backends) -----------------------------------------------------------
compile_engine = build_rtx_plan


def status() -> BackendStatus:
    """TensorRT-RTX builds wherever it is installed (no GPU needed) and runs on a supported GPU."""
    found = rtx_status()
    return BackendStatus(
        "tensorrt-rtx",
        bool(found["installed"]),
        found["version"],
        can_build=bool(found["can_build"]),
        can_run=bool(found["can_run"]),
        reason=str(found["reason"]),
        details={"gpus": found["gpus"]},
    )


def open_runner(artifact, *, device: str = "cpu", threads=None, precision=None, compile: bool = False):
    """A :class:`TensorRTRTXRunner` for a plan on ``cuda:N`` (GPU 0 for the default device); the sidecar, the
    plan's bytes and the GPU are checked when it activates, before TensorRT-RTX sees the plan."""
    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    return TensorRTRTXRunner(artifact.path, device=index)
