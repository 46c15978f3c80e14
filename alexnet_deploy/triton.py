"""``triton``: a Triton Inference Server model repository from verified artifacts.

Each model folder holds ``config.pbtxt``, ``labels.txt`` (the output's ``label_filename``, so Triton's
classification extension answers with class names) and ``<version>/model.onnx`` or ``model.plan`` with the
artifact's sidecar beside it. How artifacts become models:

* one artifact -> one model ``NAME``;
* several TensorRT plans -> one model ``NAME`` whose version folder holds ``model_<cc>.plan`` per GPU, picked by
  ``cc_model_filenames`` (the compute capability from each sidecar); the plans must share classes, input, output,
  preprocessing and TensorRT version;
* several ONNX files -> one model per file, ``NAME_<precision>`` (``alexnet_int8``, ``alexnet_fp16``): Triton
  picks a file per GPU, never per precision, so precisions are separate models a client chooses between;
* ONNX files and plans together are refused.

Which Triton backend serves each model (the ``platform`` or ``backend`` of its config) comes from the artifact's
sidecar and the options (:mod:`alexnet_deploy.triton_backends`): TensorRT plans on GPUs; an OpenVINO engine on
CPU instances through Triton's OpenVINO backend; other ONNX files through ONNX Runtime; and, with
``python_backend``, any ONNX file through Triton's Python backend running our own runner (``model.py`` and a copy
of the runner code beside the artifact), which a server without those backends can serve.

Only artifacts whose sidecar describes them (same sha256) are taken, and a failed accuracy gate only when forced.
Each model folder is built in a staging folder beside ``DIR/NAME``, checked against Triton's ``ModelConfig``
schema when tritonclient is installed (:mod:`alexnet_deploy.triton_config`), and swapped into place in one step
under the repository's lock (a reader never sees the model missing); on any failure nothing is left behind, and
a killed run's hidden copies are removed by the next run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from alexnet_deploy import __version__
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.files import (
    create_temp_dir,
    exchange,
    fault_point,
    output_lock,
    parse_temp_name,
    refuse_symlink,
    remove_ours,
    rename_new,
    sweep_leftovers,
    temp_name,
    write_error,
)
from alexnet_deploy.core.manifest import Manifest, sidecar_path
from alexnet_deploy.core.text import label_line, pbtxt_comment, safe_name
from alexnet_deploy.triton_backends import Serving, choose_serving, stage_python_model
from alexnet_deploy.triton_config import PLATFORM_FILES, Ident, to_pbtxt, validate_config

log = logging.getLogger(__name__)

PLATFORMS = {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}
MODEL_FILES = {kind: PLATFORM_FILES[platform] for kind, platform in PLATFORMS.items()}  # model.onnx, model.plan
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "int8": "TYPE_INT8",
              "uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64"}  # fmt: skip
LABELS_FILE = "labels.txt"
ONNX_MAX_BATCH_SIZE = 64  # an ONNX model's batch dimension has no upper bound, so the default is ours
RELEASE_NOTES = "https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/"


class InstanceKind(str, Enum):
    """Where Triton runs the model's instances."""

    gpu = "gpu"
    cpu = "cpu"


@dataclass(frozen=True)
class TritonOptions:
    """How the repository is laid out, and how Triton batches and places the model.

    Attributes:
        name: the model name (several ONNX files: the prefix of ``NAME_<precision>``).
        max_batch_size: the largest batch Triton forms; ``None``: the smallest profile max of the plans, or
            :data:`ONNX_MAX_BATCH_SIZE` for ONNX.
        preferred_batch: batch sizes the dynamic batcher aims for (empty: as large as the queue allows, Triton's
            own advice until a measurement says otherwise).
        max_queue_delay_us: how long a request may wait for others to join its batch.
        instances: model instances (per GPU for ``gpu``).
        kind: ``gpu`` or ``cpu`` instances (TensorRT plans run only on GPUs).
        version: the version folder's number.
        force: take artifacts whose accuracy gate failed, and replace existing model folders.
        python_backend: serve ONNX files with Triton's Python backend running our own runner (CPU instances).
        threads: the runtime's threads per instance (ONNX Runtime's ``intra_op_thread_count``, OpenVINO's
            ``INFERENCE_NUM_THREADS``, our runner's threads); ``None``: the runtime's default.
    """

    name: str = "alexnet"
    max_batch_size: int | None = None
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: InstanceKind = InstanceKind.gpu
    version: int = 1
    force: bool = False
    python_backend: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in {k.value for k in InstanceKind}:
            raise ConfigError(f"The instance kind must be gpu or cpu; got {self.kind!r}.")
        object.__setattr__(self, "kind", InstanceKind(self.kind))  # a plain string is accepted too
        object.__setattr__(self, "preferred_batch", tuple(self.preferred_batch))
        safe_name(self.name, "The model name")  # it names a folder and is written into config.pbtxt
        lowest = {"max batch size": 1, "instances": 1, "version": 1, "queue delay": 0, "threads": 1}
        values = (self.max_batch_size, self.instances, self.version, self.max_queue_delay_us, self.threads)
        for (label, least), value in zip(lowest.items(), values, strict=True):
            if value is not None and value < least:
                raise ConfigError(f"The {label} must be at least {least}; got {value}.")
        if any(b < 1 for b in self.preferred_batch):
            raise ConfigError(f"Preferred batch sizes must be positive; got {list(self.preferred_batch)}.")


@dataclass
class ServedArtifact:
    """An ONNX file or plan, with the sidecar that describes it."""

    path: Path
    manifest: Manifest

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def compute_capability(self) -> str:
        return str((self.manifest.engine.get("gpu") or {}).get("compute_capability") or "")


@dataclass
class WrittenModel:
    """One model folder of the repository, as written."""

    name: str
    path: Path
    platform: str  # what serves it: Triton's platform (onnxruntime_onnx, tensorrt_plan) or backend (openvino, python)
    precision: str
    max_batch_size: int
    files: list[str]  # relative to the model folder
    validation: str  # what checked config.pbtxt, or why nothing did
    tensorrt_version: str | None = None
    container_hint: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"path": str(self.path)}


def load_artifact(path: str | Path, force: bool = False) -> ServedArtifact:
    """Read an artifact's sidecar and check that the artifact may be served.

    Raises:
        ArtifactError: the file or its sidecar is missing (``force`` cannot help: the sidecar is what describes the
            inputs, outputs and classes), it is neither ONNX nor a plan, the sidecar describes another file
            (sha256), or its accuracy gate failed and ``force`` is not set.
    """
    from alexnet_deploy.backends import describe_artifact

    path = Path(path)
    if path.suffix.lower() == ".ovblob":
        raise ArtifactError(
            f"{path.name} is an OpenVINO compiled blob, which Triton cannot load (its OpenVINO backend reads ONNX or "
            "IR files); serve the ONNX engine it was exported from instead."
        )
    if path.suffix.lower() not in (".onnx", ".plan", ".engine") and path.is_file():
        raise ArtifactError(f"{path.name} is neither an ONNX model nor a plan, which is what Triton serves.")
    if path.is_file() and not sidecar_path(path).is_file():
        raise ArtifactError(f"{path.name} has no sidecar ({sidecar_path(path).name} is missing), so its inputs, "
                            "outputs and classes are unknown; export or build it with alexnet-deploy.")  # fmt: skip
    # The one description every command uses: schema, sha256 of the file and real input/output shapes checked.
    manifest = describe_artifact(path).manifest
    if manifest.gate.get("status") == "failed" and not force:
        reason = manifest.gate.get("reason") or "see its sidecar"
        raise ArtifactError(f"{path.name} failed its accuracy gate ({reason}); pass --force to serve it anyway.")
    return ServedArtifact(path, manifest)


def group_artifacts(artifacts: Sequence[ServedArtifact], name: str) -> list[tuple[str, list[ServedArtifact]]]:
    """Which artifacts make which model (see the module docstring): ``[(model name, its artifacts)]``.

    Raises:
        ArtifactError: no artifacts, ONNX files mixed with plans, plans of one model that disagree, or two ONNX
            files of one precision.
    """
    kinds = sorted({a.kind for a in artifacts})
    if len(kinds) != 1:
        raise ArtifactError(f"One model cannot mix kinds ({' and '.join(kinds)}); give each its own --name."
                            if kinds else "No artifact was given.")  # fmt: skip
    if kinds == ["onnx"] and len(artifacts) > 1:
        names = [f"{name}_{a.manifest.precision}" for a in artifacts]
        if clash := next((n for n in names if names.count(n) > 1), None):
            raise ArtifactError(f"Two ONNX files would both be model {clash} (same precision); write them under "
                                "different --name values.")  # fmt: skip
        return [(n, [a]) for n, a in zip(names, artifacts, strict=True)]
    first = artifacts[0]
    for other in artifacts[1:]:
        for what in ("classes", "input", "output", "preprocessing"):
            if getattr(first.manifest, what) != getattr(other.manifest, what):
                raise ArtifactError(f"{first.path.name} and {other.path.name} have different {what}, so they are "
                                    "not one model; give each its own --name.")  # fmt: skip
    ccs = [a.compute_capability for a in artifacts]
    if len(artifacts) > 1 and not all(ccs):
        missing = next(a.path.name for a in artifacts if not a.compute_capability)
        raise ArtifactError(f"{missing}'s sidecar records no GPU compute capability, so Triton could not pick it.")
    if dup := next((c for c in ccs if ccs.count(c) > 1), None):
        raise ArtifactError(f"Two plans were built for compute capability {dup}; give one plan per GPU.")
    if len(versions := sorted({str(a.manifest.engine.get("tensorrt_version")) for a in artifacts})) > 1:
        raise ArtifactError(f"The plans need different TensorRT versions ({', '.join(versions)}); a Triton release "
                            "has one TensorRT, so build them all with the same one.")  # fmt: skip
    return [(name, list(artifacts))]


def container_hint(tensorrt_version: str, version_compatible: bool = False) -> str:
    """Which tritonserver container can load a plan built by ``tensorrt_version``."""
    notes = f"each release's notes list its TensorRT: {RELEASE_NOTES}"
    if version_compatible:
        return (f"use a tritonserver container whose TensorRT is {tensorrt_version} or later, started with "
                f"--backend-config=tensorrt,version-compatible=true ({notes})")  # fmt: skip
    return f"use the tritonserver container whose TensorRT is {tensorrt_version} ({notes})"


def _max_batch_size(artifacts: Sequence[ServedArtifact], options: TritonOptions, serving: Serving) -> int:
    first = artifacts[0]
    if first.manifest.input.get("shape", [None])[0] != -1:
        raise ArtifactError(f"{first.path.name} has a fixed batch size; Triton's batching needs a dynamic one.")
    if first.kind != "plan":
        return options.max_batch_size or serving.default_max_batch or ONNX_MAX_BATCH_SIZE
    limits = {}
    for a in artifacts:
        if not (profile_max := (a.manifest.engine.get("profile") or {}).get("max")):
            raise ArtifactError(f"{a.path.name}'s sidecar records no batch profile, so its largest batch is unknown.")
        limits[a.path.name] = int(profile_max[0])
    tightest = min(limits, key=limits.get)
    if options.max_batch_size is not None and options.max_batch_size > limits[tightest]:
        raise ConfigError(f"A max batch size of {options.max_batch_size} is more than {tightest}'s profile allows "
                          f"(at most {limits[tightest]}); ask for at most that, or build the plan with a larger "
                          "max batch.")  # fmt: skip
    return options.max_batch_size or limits[tightest]


def _tensor(info: dict[str, Any], label_file: str | None = None, batched: bool = True) -> dict[str, Any]:
    if (dtype := info.get("dtype", "float32")) not in DATA_TYPES:
        raise ArtifactError(f"Tensor {info.get('name')!r} is {dtype}, which has no Triton data type here.")
    entry = {"name": info["name"], "data_type": Ident(DATA_TYPES[dtype]), "dims": list(info["shape"][int(batched) :])}
    return entry | ({"label_filename": label_file} if label_file else {})


def model_config(name: str, artifacts: Sequence[ServedArtifact], options: TritonOptions) -> tuple[str, dict[str, Any]]:
    """The ``config.pbtxt`` text of one model, and the facts the caller reports.

    Returns:
        ``(text, facts)``; facts: ``max_batch_size``, ``files`` (the model file of each artifact in the version
        folder), ``serving`` (:class:`~alexnet_deploy.triton_backends.Serving`), ``tensorrt_version``,
        ``container_hint``, ``notes``.

    Raises:
        ArtifactError, ConfigError: the artifacts or the options do not make a model Triton can serve.
    """
    first, m = artifacts[0], artifacts[0].manifest
    if first.kind == "plan" and options.kind is InstanceKind.cpu:
        raise ConfigError("TensorRT plans run only on GPU instances; use --kind gpu.")
    serving = choose_serving(first.kind, m.engine, m.precision, instance_kind=options.kind.value,
                             python_backend=options.python_backend, threads=options.threads,
                             instances=options.instances, versions=m.versions)  # fmt: skip
    fixed = int((m.input.get("shape") or [-1])[0])
    if fixed > 0 and first.kind == "onnx":  # a graph exported for one batch size: served as it is, unbatched
        if options.max_batch_size or options.preferred_batch:
            raise ConfigError(f"{first.path.name} has a fixed batch of {fixed}, so Triton serves it without batching "
                              "(max_batch_size 0); drop --max-batch-size and --preferred-batch, or re-export the model "
                              "with a dynamic batch axis.")  # fmt: skip
        max_batch = 0
    else:
        max_batch = _max_batch_size(artifacts, options, serving)
    if too_big := [b for b in options.preferred_batch if b > max_batch]:
        raise ConfigError(f"Preferred batch sizes must be at most the max batch size {max_batch}; got {too_big}.")
    if len(m.classes) != m.output["shape"][-1]:
        raise ArtifactError(f"{first.path.name}'s classes do not match its {m.output['shape'][-1]} outputs.")
    for c in m.classes:
        label_line(c, LABELS_FILE, ArtifactError)
    several = len(artifacts) > 1
    files = [f"model_{a.compute_capability}.plan" if several else MODEL_FILES[a.kind] for a in artifacts]
    preferred = {"preferred_batch_size": list(options.preferred_batch)} if options.preferred_batch else {}
    config: dict[str, Any] = {
        "name": name,
        **serving.config_fields(),
        "max_batch_size": max_batch,
        "input": [_tensor(m.input, batched=max_batch > 0)],
        "output": [_tensor(m.output, LABELS_FILE, batched=max_batch > 0)],
        "dynamic_batching": preferred | {"max_queue_delay_microseconds": options.max_queue_delay_us},
        "instance_group": [{"count": options.instances, "kind": Ident(f"KIND_{options.kind.value.upper()}")}],
    }
    if max_batch == 0:
        del config["dynamic_batching"]  # Triton batches only models with a batch axis of their own
    if several:
        config["cc_model_filenames"] = [
            {"key": a.compute_capability, "value": f} for a, f in zip(artifacts, files, strict=True)
        ]
    pre = m.preprocessing
    comments = [f"Written by alexnet-deploy {__version__}: {m.model.get('name', 'a model')}, {len(m.classes)} classes, "
                f"preprocessing resize {pre.get('resize')} crop {pre.get('crop')} mean {pre.get('mean')} "
                f"std {pre.get('std')} (see the sidecar beside the model file)."]  # fmt: skip
    comments += [f"{f}: from {a.path.name}, {a.manifest.precision}, sha256 {a.manifest.sha256}."
                 for a, f in zip(artifacts, files, strict=True)]  # fmt: skip
    comments += serving.comments
    facts: dict[str, Any] = {"max_batch_size": max_batch, "files": files, "serving": serving,
                             "notes": list(serving.notes), "tensorrt_version": None,
                             "container_hint": None}  # fmt: skip
    if max_batch == 0:
        facts["notes"].append(f"{first.path.name} has a fixed batch of {fixed}: Triton serves it unbatched "
                              "(max_batch_size 0, no dynamic batching).")  # fmt: skip
    if first.kind == "plan":
        trt = str(m.engine.get("tensorrt_version") or "unknown")
        compatible = bool((m.engine.get("build_options") or {}).get("version_compatible"))
        facts |= {"tensorrt_version": trt, "container_hint": container_hint(trt, compatible)}
        comments.append(f"TensorRT plan: needs TensorRT {trt}; {facts['container_hint']}.")
        for a, f in zip(artifacts, files, strict=True):
            gpu, profile = a.manifest.engine.get("gpu") or {}, a.manifest.engine.get("profile") or {}
            comments.append(f"{f} was built on {gpu.get('name', 'an unrecorded GPU')} (compute capability "
                            f"{a.compute_capability or 'unknown'}); it loads only on such GPUs.")  # fmt: skip
            if int((profile.get("min") or [1])[0]) > 1:
                facts["notes"].append(f"{a.path.name}'s profile starts above batch 1, so smaller batches Triton "
                                      "forms will fail; rebuild it with a min batch of 1.")  # fmt: skip
    return "".join(f"# {pbtxt_comment(line)}\n" for line in comments) + to_pbtxt(config), facts


def write_repository(
    paths: Sequence[str | Path], repo: str | Path, options: TritonOptions | None = None
) -> list[WrittenModel]:
    """Write the Triton model(s) of ``paths`` into the model repository ``repo``: all of them or nothing.

    Under the repository's lock (a second writer fails at once), each model folder is staged inside ``repo`` and
    swapped with ``repo/NAME`` in one step (:func:`_swap_in`), so Triton's repository poller never sees a model
    missing; the old folder is removed afterwards. A killed run's staging folders are removed by the next run.

    Returns:
        The models written, in order.

    Raises:
        ArtifactError, ConfigError: an artifact cannot be served, the options do not fit it, a model folder
            exists and ``options.force`` is not set, another process is writing ``repo``, or the written config
            fails validation.
    """
    options, repo = options or TritonOptions(), Path(repo)
    groups = group_artifacts([load_artifact(p, options.force) for p in paths], options.name)
    configs = [(name, arts, *model_config(name, arts, options)) for name, arts in groups]
    refuse_symlink(repo, "model repository")
    created = not repo.exists()
    try:
        with output_lock(repo, folder=True, sweep=False):
            _recover(repo)
            for name, *_ in configs:
                refuse_symlink(repo / name, "model folder")
            if existing := next((repo / n for n, *_ in configs if _exists(repo / n) and not options.force), None):
                raise ArtifactError(f"{existing} already exists; pass --force to replace it.")
            staged: list[tuple[Path, Path]] = []
            try:
                models = []
                for name, arts, text, facts in configs:
                    staged.append((create_temp_dir(repo / name, "staging", 0o755), repo / name))
                    models.append(_stage_model(staged[-1][0], name, arts, text, facts, options))
                _swap_in(staged)
            except OSError as exc:
                sentence = write_error(exc, repo) or f"Cannot write the model repository {repo}: {exc.strerror or exc}."
                raise ArtifactError(sentence) from None
            finally:
                for stage, _ in staged:
                    remove_ours(stage)  # the new model's staging folder on failure, the old model's on success
    finally:
        if created and repo.is_dir() and not any(repo.iterdir()):
            repo.rmdir()  # a failure leaves no empty repository behind either
    return models


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _recover(repo: Path) -> None:
    """Put back a model folder that a run killed mid-replacement on a file system without an atomic swap left only
    as its hidden old copy; then sweep the dead writers' leftovers (staging folders, old copies)."""
    for entry in sorted(repo.iterdir()):
        m = parse_temp_name(entry.name)
        if m is None or m.what != "old" or m.alive or _exists(repo / m.name) or not entry.is_dir():
            continue
        with contextlib.suppress(OSError):
            rename_new(entry, repo / m.name)
            log.warning("Restored %s from an interrupted replacement.", repo / m.name)
    sweep_leftovers(repo, inside=True)


def _stage_model(stage: Path, name: str, artifacts, text: str, facts: dict[str, Any], options) -> WrittenModel:
    """Fill the staging folder of one model and validate its config."""
    stage.chmod(0o755)  # mkdtemp makes an owner-only folder; the server may run as another user
    (stage / str(options.version)).mkdir()
    for artifact, filename in zip(artifacts, facts["files"], strict=True):
        shutil.copyfile(artifact.path, stage / str(options.version) / filename)
        shutil.copyfile(sidecar_path(artifact.path), stage / str(options.version) / f"{filename}.json")
    serving: Serving = facts["serving"]
    extra = stage_python_model(stage / str(options.version)) if serving.backend == "python" else []
    (stage / LABELS_FILE).write_text("".join(f"{c}\n" for c in artifacts[0].manifest.classes))
    (stage / "config.pbtxt").write_text(text)
    try:
        validate_config(text, stage, folder_name=name)
        schema = f"tritonclient {importlib.metadata.version('tritonclient')}"
        validation = f"parsed against Triton's ModelConfig schema ({schema})"
    except MissingBackendError as exc:
        validation = f"validation skipped: {exc}"
    files = ["config.pbtxt", LABELS_FILE] + [f"{options.version}/{f}{s}" for f in facts["files"] for s in ("", ".json")]
    files += [f"{options.version}/{f}" for f in extra]
    return WrittenModel(name=name, path=stage.parent / name, platform=serving.label,
                        precision=artifacts[0].manifest.precision, max_batch_size=facts["max_batch_size"],
                        files=files, validation=validation, tensorrt_version=facts["tensorrt_version"],
                        container_hint=facts["container_hint"], notes=facts["notes"])  # fmt: skip


def _swap_in(staged: list[tuple[Path, Path]]) -> None:
    """Put each staging folder in place of its model folder in one step; if one fails, put every folder back.

    An existing model folder is swapped with its staging folder by ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+,
    ext4, xfs, btrfs, tmpfs): a reader sees the old model or the new one, never none. A file system without it
    (NFS, some FUSE ones) gets two renames with a warning: for that instant the model is missing, and a run
    killed between them leaves the old folder hidden beside it, which the next run puts back (:func:`_recover`).
    Afterwards each staging folder holds the old model, for the caller to remove.
    """
    done: list[tuple[Path, Path, str]] = []
    try:
        for stage, target in staged:
            refuse_symlink(target, "model folder")
            fault_point("before-swap", target)
            if not _exists(target):
                rename_new(stage, target)
                done.append((stage, target, "new"))
            elif exchange(stage, target):
                done.append((stage, target, "swapped"))
            else:
                log.warning("%s cannot swap folders in one step; %s is missing for an instant.", target.parent, target)
                hidden = target.with_name(temp_name(target, "old"))
                os.rename(target, hidden)
                fault_point("between-renames", target)
                os.rename(stage, target)
                os.rename(hidden, stage)
                done.append((stage, target, "swapped"))
            fault_point("after-swap", target)
    except BaseException:
        for stage, target, how in reversed(done):
            with contextlib.suppress(OSError):
                if how == "new":
                    os.rename(target, stage)
                elif not exchange(stage, target):
                    hidden = target.with_name(temp_name(target, "old"))
                    os.rename(target, hidden)
                    os.rename(stage, target)
                    os.rename(hidden, stage)
        raise
