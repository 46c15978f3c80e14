"""The Runner protocol (after Polygraphy): ``activate() / infer(images) / deactivate()``, usable as a context
manager. Subclasses implement only the ``*_impl`` methods; the base guards state and records the time of the
last inference."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from alexnet_deploy.core.errors import AlexNetDeployError


class Runner(ABC):
    """Runs one model on batches of preprocessed images (float32 NCHW) and returns logits (N, classes).

    Attributes:
        name: a short label for reports, e.g. ``"onnxruntime fp32"``.
        inference_time: wall seconds of the last :meth:`infer` call (``None`` before the first).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` as the artifact declares it.
        fixed_batch: the one batch size the model's graph takes (``None``: any). :meth:`infer` then runs any
            batch as batches of that size (the last one padded with zeros, its padding's logits dropped).
    """

    backend = "runner"

    def __init__(self, name: str | None = None, precision: str = "fp32", fixed_batch: int | None = None) -> None:
        self.name = name or self.backend
        self.precision = precision
        self.fixed_batch = fixed_batch
        self.is_active = False
        self.inference_time: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def activate(self) -> None:
        """Load the model and allocate what inference needs."""
        if self.is_active:
            raise AlexNetDeployError(f"Runner {self.name} is already active.")
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        """Release the model and its buffers."""
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- inference ------------------------------------------------------------------------------------------
    def infer(self, images: np.ndarray) -> np.ndarray:
        """Run a batch of preprocessed images (float32, N x 3 x H x W) and return float32 logits (N x classes)."""
        if not self.is_active:
            raise AlexNetDeployError(f"Runner {self.name} must be activated before inference.")
        start = time.perf_counter()
        size = self.fixed_batch
        if size is None or len(images) == size:
            out = self.infer_impl(images)
        else:  # a fixed-batch graph: whole batches of its size, the last one padded
            parts = []
            for first in range(0, len(images), size):
                chunk = images[first : first + size]
                if len(chunk) < size:
                    chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
                parts.append(self.infer_impl(chunk)[: len(images) - first])
            out = np.concatenate(parts)
        self.inference_time = time.perf_counter() - start
        return out

    @property
    def max_batch(self) -> int | None:
        """The largest batch this runner takes in one call, or ``None`` for no limit (a TensorRT profile sets
        one; a fixed-batch graph takes only its own)."""
        return self.fixed_batch

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, images: np.ndarray) -> np.ndarray: ...

    def deactivate_impl(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none to release."""


@dataclass(frozen=True)
class BackendStatus:
    """What a backend can do on this machine, for ``doctor``, ``build --backend auto`` and refusals.

    Attributes:
        name: the backend.
        installed: its library imports (or is installed; heavy ones are probed in a child process).
        version: the library's version, where installed.
        can_build: it can compile an engine here.
        can_run: it can run engines here (a GPU it needs is present).
        reason: why not, in words, when either is false; what it runs on otherwise.
        details: anything else worth showing (devices, providers, capabilities).
    """

    name: str
    installed: bool
    version: str | None = None
    can_build: bool = False
    can_run: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the doctor."""
        if not self.installed:
            return self.reason
        what = [w for w, ok in (("build", self.can_build), ("run", self.can_run)) if ok]
        head = f"{' and '.join(what) or 'neither build nor run'} here"
        return f"{head} ({self.reason})" if self.reason else head


@dataclass(frozen=True)
class CliFlag:
    """How one field of a backend's build options is offered on ``alexnet-deploy build``.

    Attributes:
        flag: the option's name (``--ov-hint``); several backends may share one (the TensorRT flavours' profile).
        help: its help line.
        type: what the command line gives (default: the type of the field's default).
        parse: turns that value into the field's (``None``: taken as it is).
        shared: instead of a flag of its own, the field takes the value of the build command's option of this
            name (``threads``: one ``--threads`` for every CPU backend).
    """

    flag: str = ""
    help: str = ""
    type: object = None
    parse: object = None
    shared: str = ""


def cli_option(default, flag: str, help: str, *, type: object = None, parse: object = None):
    """A dataclass field of a backend's build options that ``alexnet-deploy build`` offers as ``flag``."""
    return field(default=default, metadata={"cli": CliFlag(flag, help, type, parse)})


def shared_option(default, shared: str):
    """A field that takes the value of the build command's own ``--<shared>`` option."""
    return field(default=default, metadata={"cli": CliFlag(shared=shared)})
