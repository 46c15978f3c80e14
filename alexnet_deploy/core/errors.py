"""One exception family for the whole toolkit.

Library code raises these; only the CLI turns them into a one-sentence message and a non-zero exit.
"""

from __future__ import annotations


class AlexNetDeployError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class ConfigError(AlexNetDeployError):
    """A bad option, model name or configuration value."""


class DataError(AlexNetDeployError):
    """A dataset or image that cannot be used (missing, empty, unreadable, wrong classes)."""


class CheckpointError(AlexNetDeployError):
    """A checkpoint that is missing, corrupt, foreign or of another architecture."""


class ArtifactError(AlexNetDeployError):
    """An ONNX model, plan or sidecar that cannot be used (wrong shape, wrong version, corrupt)."""


class MissingBackendError(AlexNetDeployError):
    """A backend (TensorRT, a GPU, an execution provider) that is not available on this machine."""


class GateError(AlexNetDeployError):
    """An engine whose accuracy fell more than the gate allows."""
