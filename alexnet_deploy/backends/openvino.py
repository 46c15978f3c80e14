"""The OpenVINO backend: status for the doctor, the engine builder, the runner and the load-time check.

The OpenVINO "engine" is the verified ONNX itself (FP32, FP16 graph or INT8 Q/DQ), copied byte for byte, so the
file verified is the file deployed; OpenVINO compiles it for the device when it loads (well under a second for
AlexNet). ``save_ir`` also writes OpenVINO's IR (``.xml`` + ``.bin``) beside it: reading the IR skips parsing
the ONNX protobuf (about 0.4 s of the ~0.45 s load of the 224 px FP32 AlexNet on a Xeon), and the build checks
that the IR computes exactly the logits the ONNX does. The IR is written with FP32 weights
(``compress_to_fp16=False``): OpenVINO's default would silently halve the weights' precision.

``export_blob`` also writes OpenVINO's compiled model (``CompiledModel.export_model``) as ``NAME.ovblob`` beside
the engine: importing it skips parsing the ONNX and compiling the graph. Like a TensorRT plan, a blob is tied to
the OpenVINO release and the CPU instruction set that compiled it: OpenVINO's CPU plugin records both in the blob
("runtime requirements") and refuses the blob unless they *equal* the importing machine's (measured: a newer ISA
is refused too). The blob's sidecar records them; :func:`check_blob_compatible` compares them with this machine's
before OpenVINO sees the bytes. The properties a blob runs with are those given to ``import_model``, not those it
was compiled with (measured: a blob compiled with f32 ran in bf16 when imported without the hint on an AMX CPU),
so the runner passes the recorded ones again.

``inference_precision=None`` means the model's own arithmetic: OpenVINO is told ``f32`` explicitly, because on
a CPU with AVX512_BF16 or AMX it otherwise runs FP32 models in bf16 by default, and the verified accuracy would
not be the accuracy of what runs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import os
import queue
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends.base import BackendStatus, Runner, cli_option, shared_option
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.files import atomic_path, sha256_file, work_dir
from alexnet_deploy.core.system import this_cpu

MISSING = "OpenVINO is not installed (pip install openvino)."
PRECISIONS = ("f32", "bf16", "f16")
HINTS = ("LATENCY", "THROUGHPUT")
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
COMPILED_PROPERTIES = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                       "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "EXECUTION_DEVICES")  # fmt: skip
_CAPABILITY = {"bf16": "BF16", "f16": "FP16"}  # OPTIMIZATION_CAPABILITIES entry a precision needs


def _ov():
    try:
        import openvino
    except ImportError:
        raise MissingBackendError(MISSING) from None
    return openvino


def openvino_version() -> str | None:
    """The installed OpenVINO's release (``"2026.4.1"``), read without importing it, or ``None``."""
    try:
        return importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """``"2026.4.1-22982-..."`` -> ``(2026, 4, 1)``."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("-")[0]))


def _reason(exc: BaseException) -> str:
    """The last meaningful line of an OpenVINO error (its first lines are C++ source locations)."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip() and not s.strip().startswith("Exception from")]
    return (lines[-1] if lines else type(exc).__name__).rstrip(".:")[:200]


def device_capabilities(device: str = "CPU") -> list[str]:
    """The device's ``OPTIMIZATION_CAPABILITIES`` (``["BF16", "FP32", "INT8", ...]``).

    Raises:
        MissingBackendError: OpenVINO is missing or the device is absent.
    """
    ov = _ov()
    try:
        return list(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError as exc:
        raise MissingBackendError(f"OpenVINO cannot use the {device} device here: {_reason(exc)}.") from None


def precision_supported(precision: str, device: str = "CPU") -> bool:
    """Whether ``device`` can run ``precision`` (``f32``/``bf16``/``f16``) as its inference precision."""
    need = _CAPABILITY.get(precision)
    return need is None or need in device_capabilities(device)


def openvino_status() -> dict[str, Any]:
    """Installed, version, devices, CPU name, bf16 support, usable and the reason; never raises (the doctor)."""
    version = openvino_version()
    status: dict[str, Any] = {"installed": version is not None, "version": version, "devices": [], "cpu": None,
                              "bf16": None, "usable": False, "reason": ""}  # fmt: skip
    if version is None:
        status["reason"] = MISSING.rstrip(".")
        return status
    try:
        import openvino as ov
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything from ImportError to OSError
        status["reason"] = f"OpenVINO {version} is installed but does not import: {_reason(exc)}"
        return status
    try:
        core = ov.Core()
        status["devices"] = list(core.available_devices)
        if "CPU" in status["devices"]:
            status["cpu"] = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
            status["bf16"] = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as exc:  # noqa: BLE001 - the doctor reports whatever went wrong
        status["reason"] = f"OpenVINO {version} cannot list its devices: {_reason(exc)}"
        return status
    status["usable"] = bool(status["devices"])
    status["reason"] = "" if status["usable"] else "OpenVINO finds no device it can run on"
    return status


@dataclass(frozen=True)
class OpenVINOBuildOptions:
    """How the OpenVINO engine is compiled (and, with the runner, how it runs).

    Attributes:
        device: an OpenVINO device (``"CPU"``, ``"GPU"``, ``"GPU.1"``, ``"AUTO"``).
        inference_precision: ``None`` (the model's own arithmetic: f32 for float layers), ``"f32"``, ``"bf16"``
            or ``"f16"`` (``INFERENCE_PRECISION_HINT``); bf16/f16 are refused where the device lacks them.
        performance_hint: ``"LATENCY"`` (one stream, all threads on each request) or ``"THROUGHPUT"``.
        threads: ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default, one per core); CPU only.
        num_streams: ``NUM_STREAMS`` (``None``: what the hint chooses).
        save_ir: also write OpenVINO IR (``.xml``/``.bin``) beside the engine, for a faster load.
        export_blob: also write the compiled model (``NAME.ovblob``, with its own sidecar) beside the engine, for
            the fastest load; CPU only, tied to this OpenVINO release and CPU instruction set.
    """

    device: str = "CPU"
    inference_precision: str | None = None
    performance_hint: str = cli_option("LATENCY", "--ov-hint", "LATENCY or THROUGHPUT.", parse=str.upper)
    threads: int | None = shared_option(None, "threads")
    num_streams: int | None = cli_option(None, "--ov-streams", "OpenVINO NUM_STREAMS.", type=int | None)
    save_ir: bool = False
    export_blob: bool = cli_option(
        False,
        "--export-blob",
        "Also write the compiled model, NAME.ovblob (+ sidecar), verified itself; tied to this OpenVINO release "
        "and CPU.",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device.strip():
            raise ConfigError(f"The OpenVINO device must be a name such as CPU or GPU, got {self.device!r}.")
        if self.inference_precision not in (None, *PRECISIONS):
            raise ConfigError(
                f"Unknown OpenVINO inference precision {self.inference_precision!r}; use f32, bf16, f16 or none."
            )
        if self.performance_hint not in HINTS:
            raise ConfigError(
                f"Unknown OpenVINO performance hint {self.performance_hint!r}; use LATENCY or THROUGHPUT."
            )
        for name in ("threads", "num_streams"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"OpenVINO {name} must be a positive integer or None, got {value!r}.")
        if self.threads is not None and not self.device.startswith("CPU"):
            raise ConfigError(f"OpenVINO threads apply to the CPU device only, not to {self.device}.")
        if self.export_blob and not self.device.startswith("CPU"):
            raise ConfigError(f"OpenVINO blobs are exported for the CPU device only, not for {self.device}.")
        if self.inference_precision in _CAPABILITY and not precision_supported(self.inference_precision, self.device):
            raise ConfigError(
                f"The {self.device} device here cannot run {self.inference_precision} inference (its OpenVINO "
                f"OPTIMIZATION_CAPABILITIES lack {_CAPABILITY[self.inference_precision]}); use f32."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def compile_config(self) -> dict[str, Any]:
        """The properties passed to ``compile_model``; ``inference_precision=None`` pins f32 (module docstring)."""
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint,
                                  "INFERENCE_PRECISION_HINT": self.inference_precision or "f32"}  # fmt: skip
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.num_streams:
            config["NUM_STREAMS"] = self.num_streams
        return config


def _read_model(core, model: str | Path | bytes):
    """An ``ov.Model`` from an ONNX path or bytes (through the ONNX frontend alone: no guessing of formats,
    which makes TensorFlow's parser print to stderr on a broken file) or from an IR ``.xml``.

    Raises:
        ArtifactError: the file is missing or OpenVINO cannot read it.
    """
    from openvino.frontend import FrontEndManager

    label = "the model bytes" if isinstance(model, bytes) else Path(model).name
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise ArtifactError(f"Model not found: {model}.")
    try:
        if not isinstance(model, bytes) and Path(model).suffix.lower() == ".xml":
            return core.read_model(str(model))
        frontend = FrontEndManager().load_by_framework("onnx")
        return frontend.convert(frontend.load(io.BytesIO(model) if isinstance(model, bytes) else str(model)))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own frontend failures
        raise ArtifactError(f"OpenVINO cannot read {label}: {_reason(exc)}.") from None


def _check_io(model, label: str) -> None:
    """Refuse anything but one N x 3 x H x W float input and one N x classes output (one sentence)."""
    ins, outs = list(model.inputs), list(model.outputs)

    def describe(ports) -> str:
        return ", ".join(f"{p.get_any_name()}{p.get_partial_shape()} {p.get_element_type().to_string()}" for p in ports)

    def rank(port) -> int:
        shape = port.get_partial_shape()
        return shape.rank.get_length() if shape.rank.is_static else -1

    ok_in = len(ins) == 1 and rank(ins[0]) == 4 and ins[0].get_element_type().is_real()
    ok_in = ok_in and ins[0].get_partial_shape()[1].is_static and ins[0].get_partial_shape()[1].get_length() == 3
    ok_out = len(outs) == 1 and rank(outs[0]) == 2
    if not (ok_in and ok_out):
        raise ArtifactError(
            f"The model must have one N x 3 x H x W float input and one N x classes output; {label} has inputs "
            f"{describe(ins) or 'none'} and outputs {describe(outs) or 'none'}."
        )


def _json_value(value: Any) -> Any:
    if hasattr(value, "to_string"):  # ov.Type
        return value.to_string()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return getattr(value, "name", str(value))


def compiled_properties(compiled) -> dict[str, Any]:
    """The properties in effect in a compiled model (JSON-ready), read back from OpenVINO."""
    return {key: _json_value(compiled.get_property(key)) for key in COMPILED_PROPERTIES}


def _compile(core, model, device: str, config: dict[str, Any], label: str):
    try:
        return core.compile_model(model, device, config)
    except RuntimeError as exc:
        raise ArtifactError(f"OpenVINO cannot compile {label} for {device}: {_reason(exc)}.") from None


def build_openvino_engine(
    onnx_path: str | Path, out_path: str | Path, options: OpenVINOBuildOptions | None = None
) -> dict[str, Any]:
    """Compile ``onnx_path`` once (to prove it loads), then write it byte for byte to ``out_path`` (atomically;
    no sidecar), with the IR beside it when ``options.save_ir``.

    Returns:
        The engine facts for the sidecar's ``engine`` field: backend, OpenVINO version, device, the options, the
        compiled properties in effect, read and compile seconds, and the IR's files, hashes and load figures.

    Raises:
        ArtifactError: the model is unreadable, of the wrong shape, or does not compile; or cannot be written.
        MissingBackendError: OpenVINO is missing.
    """
    ov = _ov()
    options = options or OpenVINOBuildOptions()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    core = ov.Core()
    t0 = time.perf_counter()
    model = _read_model(core, onnx_path)
    t1 = time.perf_counter()
    _check_io(model, onnx_path.name)
    compiled = _compile(core, model, options.device, options.compile_config(), onnx_path.name)
    t2 = time.perf_counter()
    try:
        device_name = str(core.get_property(options.device, "FULL_DEVICE_NAME"))
    except RuntimeError:  # a virtual device (AUTO) has none
        device_name = options.device
    facts: dict[str, Any] = {
        "backend": "openvino",
        "openvino_version": openvino_version(),
        "openvino_build": ov.get_version(),
        "device": options.device,
        "device_name": device_name,
        "options": options.to_dict(),
        "compiled": compiled_properties(compiled),
        "read_seconds": round(t1 - t0, 4),
        "compile_seconds": round(t2 - t1, 4),
        "graph": "deployable ONNX; compiled at load",
        "ir": None,
    }
    with atomic_path(out_path) as tmp:
        shutil.copyfile(onnx_path, tmp)
        if options.save_ir:
            facts["ir"] = _save_ir(ov, model, compiled, onnx_path, out_path, options)
    if options.export_blob:
        facts["blob"] = export_blob(compiled, onnx_path, blob_path(out_path), options, facts)
    return facts


def blob_path(engine_path: str | Path) -> Path:
    """Where the exported blob of an engine lives: ``model.int8.ov.onnx`` -> ``model.int8.ov.ovblob``."""
    return Path(engine_path).with_suffix(".ovblob")


@functools.lru_cache(maxsize=4)
def runtime_requirements(device: str = "CPU") -> str:
    """What OpenVINO requires of a machine to import a blob compiled here (``"meta=1.0;ov=2026.4.1;isa=Intel
    AVX2"``): the ``RUNTIME_REQUIREMENTS`` of a one-operation model compiled on ``device`` (~0.1 s, once).

    Raises:
        MissingBackendError: OpenVINO is missing or cannot compile for the device.
    """
    ov = _ov()
    from openvino import opset13

    param = opset13.parameter([1], np.float32)
    probe = ov.Model([opset13.relu(param)], [param], "probe")
    try:
        return str(ov.Core().compile_model(probe, device).get_property("RUNTIME_REQUIREMENTS"))
    except RuntimeError as exc:
        raise MissingBackendError(f"OpenVINO cannot compile for the {device} device here: {_reason(exc)}.") from None


def _requirement(requirements: str, key: str) -> str:
    """One field of OpenVINO's runtime requirements (``isa``, ``ov``), or ``""``."""
    for piece in str(requirements).split(";"):
        name, _, value = piece.partition("=")
        if name == key:
            return value
    return ""


def export_blob(
    compiled, onnx_path: Path, path: Path, options: OpenVINOBuildOptions, engine_facts: dict[str, Any]
) -> dict[str, Any]:
    """Write ``compiled`` as an OpenVINO blob at ``path`` (atomically), import it in a fresh core, check it
    computes the logits the compiled ONNX does, and time both loads.

    Returns:
        The blob's engine facts (its sidecar's ``engine``): what it was compiled for (OpenVINO release, runtime
        requirements, instruction set, the CPU's model and SIMD flags, OPTIMIZATION_CAPABILITIES), the options and
        the properties in effect after import, the sha256 of the ONNX it came from, the file's name, size and
        sha256, and the load times of the ONNX (read + compile) and of the blob (import).

    Raises:
        ArtifactError: OpenVINO cannot export or import it, or the imported blob computes other logits.
    """
    ov = _ov()
    try:
        data = compiled.export_model().getvalue()
    except RuntimeError as exc:
        raise ArtifactError(f"OpenVINO cannot export {path.name}: {_reason(exc)}.") from None
    # The blob is imported and checked before it is written: a blob that computes otherwise is never placed.
    imported, import_s = _import_blob(ov, path, options, data)
    input_shape = [d.get_length() if d.is_static else 2 for d in compiled.inputs[0].get_partial_shape()]
    x = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
    a = compiled.create_infer_request().infer({0: x})[0]
    b = imported.create_infer_request().infer({0: x})[0]
    diff = float(np.max(np.abs(a - b)))
    if diff > 1e-6 * max(1.0, float(np.max(np.abs(a)))):
        raise ArtifactError(f"OpenVINO's blob {path.name} computes other logits than the ONNX (by {diff:.3g}).")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    del data
    requirements = str(compiled.get_property("RUNTIME_REQUIREMENTS"))
    cpu = this_cpu()
    core = ov.Core()
    return {
        "backend": "openvino",
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "openvino_version": openvino_version(),
        "openvino_build": ov.get_version(),
        "device": options.device,
        "device_name": engine_facts.get("device_name", options.device),
        "runtime_requirements": requirements,
        "cpu_isa": _requirement(requirements, "isa"),
        "cpu_model": cpu.get("cpu_model"),
        "cpu_features": cpu.get("simd", []),
        "optimization_capabilities": list(core.get_property(options.device, "OPTIMIZATION_CAPABILITIES")),
        "options": options.to_dict(),
        "compiled": compiled_properties(imported),
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": sha256_file(onnx_path),
        "max_abs_diff_vs_onnx": diff,
        "load_seconds": {
            "onnx_read_compile": round(_load_seconds(ov, onnx_path, options), 4),
            "blob_import": round(import_s, 4),
        },  # fmt: skip
        "graph": "OpenVINO's compiled model (CompiledModel.export_model); imported at load, not compiled",
    }


def _import_blob(ov, path: Path, options: OpenVINOBuildOptions, data: bytes | None = None):
    """Import a blob (``path``'s bytes, or ``data`` when given: a blob not yet written there) in a fresh core with
    the options' properties; return the compiled model and the seconds.

    Raises:
        ArtifactError: OpenVINO cannot import it (a corrupt or foreign blob).
    """
    data = Path(path).read_bytes() if data is None else data
    t0 = time.perf_counter()
    try:
        compiled = ov.Core().import_model(data, options.device, options.compile_config())
    except RuntimeError as exc:
        raise ArtifactError(f"OpenVINO cannot import {Path(path).name}: {_reason(exc)}.") from None
    return compiled, time.perf_counter() - t0


def ir_paths(engine_path: str | Path) -> tuple[Path, Path]:
    """Where the IR of an engine lives: ``model.ov.onnx`` -> ``model.ov.xml`` and ``model.ov.bin``."""
    engine_path = Path(engine_path)
    return engine_path.with_suffix(".xml"), engine_path.with_suffix(".bin")


def _load_seconds(ov, source: Path, options: OpenVINOBuildOptions) -> float:
    core = ov.Core()  # a fresh core: nothing cached from the build
    t0 = time.perf_counter()
    _compile(core, _read_model(core, source), options.device, options.compile_config(), source.name)
    return time.perf_counter() - t0


def _save_ir(ov, model, compiled, onnx_path: Path, out_path: Path, options: OpenVINOBuildOptions) -> dict[str, Any]:
    """Write the IR atomically beside ``out_path``, check it computes the ONNX's logits, time both loads."""
    xml, bin_ = ir_paths(out_path)
    with (
        work_dir(out_path, "ir") as work,
        atomic_path(xml) as tmp_xml,
        atomic_path(bin_) as tmp_bin,
    ):
        staged = Path(work) / "model.xml"
        try:
            ov.save_model(model, str(staged), compress_to_fp16=False)
        except RuntimeError as exc:
            raise ArtifactError(f"OpenVINO cannot save the IR of {out_path.name}: {_reason(exc)}.") from None
        core = ov.Core()
        from_ir = _compile(core, _read_model(core, staged), options.device, options.compile_config(), xml.name)
        shape = [d.get_length() if d.is_static else 2 for d in model.inputs[0].get_partial_shape()]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        a = compiled.create_infer_request().infer({0: x})[0]
        b = from_ir.create_infer_request().infer({0: x})[0]
        diff = float(np.max(np.abs(a - b)))
        if diff > 1e-6 * max(1.0, float(np.max(np.abs(a)))):
            raise ArtifactError(
                f"OpenVINO's IR of {out_path.name} computes other logits than the ONNX (by {diff:.3g})."
            )
        onnx_s = _load_seconds(ov, onnx_path, options)
        ir_s = _load_seconds(ov, staged, options)
        os.replace(staged, tmp_xml)
        os.replace(staged.with_suffix(".bin"), tmp_bin)
    return {
        "xml": xml.name,
        "bin": bin_.name,
        "xml_sha256": sha256_file(xml),
        "bin_sha256": sha256_file(bin_),
        "openvino_version": openvino_version(),
        "max_abs_diff_vs_onnx": diff,
        "load_seconds": {"onnx": round(onnx_s, 4), "ir": round(ir_s, 4)},
    }


class OpenVINORunner(Runner):
    """Runs an ONNX file, its bytes, an OpenVINO IR ``.xml`` or an exported blob ``.ovblob`` with OpenVINO.

    The batch dimension stays dynamic: OpenVINO's CPU plugin keeps the kernels of each batch size it has seen,
    so alternating batch sizes costs nothing after the first call of each (no reshape, no recompile).
    ``infer`` may be called from several threads at once: each call takes one of the compiled model's
    ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` requests, so with ``performance_hint="THROUGHPUT"`` concurrent callers
    run on separate streams (on 2 cores: ~1.5x the batch-1 images/s of LATENCY). A single large batch is *not*
    split across streams: measured on 2 cores, that was no faster than one request using both cores.

    Args:
        model: path to a ``.onnx`` (or IR ``.xml``, or blob ``.ovblob``: imported, not compiled, with these
            properties; check it with :func:`check_blob_compatible` first) file, or ONNX bytes.
        device: the OpenVINO device.
        performance_hint: ``"LATENCY"`` or ``"THROUGHPUT"``.
        threads: ``INFERENCE_NUM_THREADS`` (``None``: one per core).
        inference_precision: ``None`` (the model's own: f32), ``"f32"``, ``"bf16"`` or ``"f16"``.
        num_streams: ``NUM_STREAMS`` (``None``: what the hint chooses).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` as the artifact declares it (for reports).
    """

    backend = "openvino"

    def __init__(
        self,
        model: str | Path | bytes,
        device: str = "CPU",
        performance_hint: str = "LATENCY",
        threads: int | None = None,
        inference_precision: str | None = None,
        num_streams: int | None = None,
        precision: str = "fp32",
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"openvino {precision}", precision)
        self.model = model
        self.device = device
        self.performance_hint = performance_hint
        self.threads = threads
        self.inference_precision = inference_precision
        self.num_streams = num_streams
        self.compiled = None
        self.properties: dict[str, Any] = {}
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # idle infer requests
        self._dtype = np.float32

    def activate_impl(self) -> None:
        ov = _ov()
        options = OpenVINOBuildOptions(
            self.device, self.inference_precision, self.performance_hint, self.threads, self.num_streams
        )
        label = "the model bytes" if isinstance(self.model, bytes) else Path(self.model).name
        if not isinstance(self.model, bytes) and Path(self.model).suffix.lower() == ".ovblob":
            if not Path(self.model).is_file():
                raise ArtifactError(f"Model not found: {self.model}.")
            self.compiled, _ = _import_blob(ov, Path(self.model), options)
            _check_io(self.compiled, label)
        else:
            core = ov.Core()
            model = _read_model(core, self.model)
            _check_io(model, label)
            self.compiled = _compile(core, model, self.device, options.compile_config(), label)
        self.properties = compiled_properties(self.compiled)
        self._dtype = self.compiled.inputs[0].get_element_type().to_dtype()
        batch = self.compiled.inputs[0].get_partial_shape()[0]
        if batch.is_static:
            self.fixed_batch = batch.get_length()  # a graph exported for one batch size takes only that one
        for _ in range(max(1, int(self.properties["OPTIMAL_NUMBER_OF_INFER_REQUESTS"]))):
            self._requests.put(self.compiled.create_infer_request())

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=self._dtype)
        request = self._requests.get()
        try:
            # share_inputs: OpenVINO reads the caller's array in place (the call is synchronous)
            out = request.infer({0: images}, share_inputs=True)[0]
        finally:
            self._requests.put(request)
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def deactivate_impl(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None


def check_openvino_compatible(engine_facts: dict[str, Any], *, use_ir: bool = True) -> None:
    """Refuse, before loading, an engine whose sidecar says it needs what this machine lacks: a device that is
    absent, an inference precision the device cannot run, or (``use_ir``) an IR saved by a newer OpenVINO than
    the one installed. The ONNX itself loads on any OpenVINO.

    Raises:
        ArtifactError: the facts are not an OpenVINO engine's, or its IR is too new.
        MissingBackendError: OpenVINO, the device or the precision is not available here.
    """
    if not isinstance(engine_facts, dict) or engine_facts.get("backend") != "openvino":
        backend = engine_facts.get("backend") if isinstance(engine_facts, dict) else None
        raise ArtifactError(f"The sidecar describes a {backend or 'unknown'} engine, not an OpenVINO one.")
    ov = _ov()
    device = str(engine_facts.get("device") or "CPU")
    available = list(ov.Core().available_devices)
    family = device.split(".")[0].split(":")[0]
    if family not in VIRTUAL_DEVICES and device not in available and family not in {a.split(".")[0] for a in available}:
        raise MissingBackendError(
            f"This engine was built for the OpenVINO {device} device, which this machine lacks "
            f"(available: {', '.join(available) or 'none'})."
        )
    precision = (engine_facts.get("options") or {}).get("inference_precision")
    if family not in VIRTUAL_DEVICES and precision in _CAPABILITY and not precision_supported(precision, device):
        raise MissingBackendError(
            f"This engine was built for {precision} inference, which the {device} device here cannot run "
            f"(its OPTIMIZATION_CAPABILITIES lack {_CAPABILITY[precision]}); rebuild it with f32."
        )
    ir = engine_facts.get("ir") or {}
    installed = openvino_version() or "0"
    if use_ir and ir and _release(str(ir.get("openvino_version", "0"))) > _release(installed):
        raise ArtifactError(
            f"This engine's IR was saved by OpenVINO {ir.get('openvino_version')}, newer than the installed "
            f"{installed}; upgrade OpenVINO or load the ONNX instead."
        )


def check_blob_compatible(blob_facts: dict[str, Any], openvino_here: str, requirements_here: str) -> None:
    """Refuse a blob whose sidecar says it was compiled for another OpenVINO release or CPU instruction set than
    this machine's (``requirements_here``: :func:`runtime_requirements`), with one sentence naming both sides.
    OpenVINO's own rule is equality of the two runtime requirements; ``examples/cpp/sidecar.hpp``
    (``checkBlobCompatible``) applies the same rule with the same sentence.

    Raises:
        ArtifactError: the blob cannot be imported here.
    """
    recorded = str(blob_facts.get("runtime_requirements") or "")
    if recorded == requirements_here:
        return
    version = str(blob_facts.get("openvino_version") or "an unknown release")
    isa_blob, isa_here = _requirement(recorded, "isa"), _requirement(requirements_here, "isa")
    problems = []
    if _release(version) != _release(openvino_here):
        problems.append("blobs load only on the OpenVINO release that compiled them")
    if isa_blob != isa_here:
        problems.append("blobs load only on CPUs of the instruction set they were compiled for")
    if not problems:
        problems.append(f"OpenVINO's runtime requirements differ ({recorded} against {requirements_here})")
    unknown = "an unknown instruction set"
    raise ArtifactError(
        f"This blob was compiled by OpenVINO {version} for {isa_blob or unknown}; this machine has OpenVINO "
        f"{openvino_here} and {isa_here or unknown}: {'; '.join(problems)}. Rebuild the blob on this machine "
        "(alexnet-deploy build --backend openvino --export-blob) or load the ONNX it came from."
    )


def openvino_blob_runner_for(
    blob: str | Path, blob_facts: dict[str, Any], *, threads: int | None = None, precision: str = "fp32"
) -> OpenVINORunner:
    """The runner for an exported blob, with the properties its sidecar recorded (``threads`` overrides its
    threads), after :func:`check_openvino_compatible` and :func:`check_blob_compatible`: both run before OpenVINO
    reads the blob.

    Raises:
        ArtifactError / MissingBackendError: as those two checks.
    """
    check_openvino_compatible(blob_facts, use_ir=False)
    device = str(blob_facts.get("device") or "CPU")
    check_blob_compatible(blob_facts, openvino_version() or "0", runtime_requirements(device))
    options = blob_facts.get("options") or {}
    return OpenVINORunner(
        Path(blob),
        device=device,
        performance_hint=options.get("performance_hint") or "LATENCY",
        threads=threads if threads is not None else options.get("threads"),
        inference_precision=options.get("inference_precision"),
        num_streams=options.get("num_streams"),
        precision=precision,
    )


def openvino_runner_for(
    engine_path: str | Path,
    engine_facts: dict[str, Any],
    *,
    threads: int | None = None,
    precision: str = "fp32",
    use_ir: bool | None = None,
) -> OpenVINORunner:
    """The runner for a built engine, configured as its sidecar says (device, inference precision, hint,
    streams, threads unless ``threads`` overrides them), after :func:`check_openvino_compatible`.

    Args:
        use_ir: ``None`` loads the IR when the sidecar lists one whose files are present, unchanged and not newer
            than this OpenVINO (else the ONNX); ``True`` insists on the IR; ``False`` loads the ONNX.

    Raises:
        ArtifactError / MissingBackendError: as :func:`check_openvino_compatible`; or the IR is required but
            missing or changed.
    """
    check_openvino_compatible(engine_facts, use_ir=bool(use_ir))
    options = engine_facts.get("options") or {}
    source: Path = Path(engine_path)
    ir = engine_facts.get("ir") or {}
    if use_ir is not False and ir:
        xml, bin_ = ir_paths(engine_path)
        intact = xml.is_file() and bin_.is_file() and sha256_file(xml) == ir.get("xml_sha256")
        intact = intact and sha256_file(bin_) == ir.get("bin_sha256")
        too_new = _release(str(ir.get("openvino_version", "0"))) > _release(openvino_version() or "0")
        if intact and not too_new:
            source = xml
        elif use_ir:
            raise ArtifactError(
                f"The IR of {Path(engine_path).name} is missing or differs from what the sidecar lists."
            )
    return OpenVINORunner(
        source,
        device=str(engine_facts.get("device") or "CPU"),
        performance_hint=options.get("performance_hint") or "LATENCY",
        threads=threads if threads is not None else options.get("threads"),
        inference_precision=options.get("inference_precision"),
        num_streams=options.get("num_streams"),
        precision=precision,
    )


# -- the registry's interface (alexnet_deploy.backends) -----------------------------------------------------------
compile_engine = build_openvino_engine


def status() -> BackendStatus:
    """OpenVINO builds and runs wherever it imports and finds a device (CPU on x86 and ARM)."""
    found = openvino_status()
    usable = bool(found["usable"])
    extra = f"{', '.join(found['devices'])}" + ("; bf16" if found.get("bf16") else "")
    return BackendStatus(
        "openvino",
        bool(found["installed"]),
        found["version"],
        can_build=usable,
        can_run=usable,
        reason=extra if usable else str(found["reason"]),
        details={k: found[k] for k in ("devices", "cpu", "bf16")},
    )


def open_runner(artifact, *, device: str = "cpu", threads=None, precision=None, compile: bool = False):
    """A runner for an ONNX :class:`~alexnet_deploy.backends.Artifact`: as its sidecar's engine facts say for an
    OpenVINO engine (device, inference precision, hint, IR), else OpenVINO's CPU plugin in f32; for an exported
    blob, after its compatibility check."""
    if artifact.kind == "ovblob":
        if not artifact.manifest:
            raise ArtifactError(
                f"{artifact.path.name} has no sidecar ({artifact.path.name}.json), which records the OpenVINO "
                "release and CPU it was compiled for; a blob is not loaded without it."
            )
        return openvino_blob_runner_for(artifact.path, artifact.engine, threads=threads, precision=artifact.precision)
    if artifact.engine.get("backend") == "openvino":
        runner = openvino_runner_for(artifact.path, artifact.engine, threads=threads, precision=artifact.precision)
    else:
        runner = OpenVINORunner(artifact.path, threads=threads, precision=artifact.precision)
    runner.fixed_batch = artifact.fixed_batch
    return runner
