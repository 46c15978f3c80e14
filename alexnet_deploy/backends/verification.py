"""The one way a file is verified: run it on prepared images, compare with a reference's logits, judge the gate.

``verify`` (the command), the build's candidates, calibration's scoring of its trials and the sensitivity ranking
all call :func:`verify_file`, so "run, compare, gate" is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from alexnet_deploy.backends import Artifact, describe_artifact, runner_for
from alexnet_deploy.core.accuracy import EvalRequest, Verification, judge, run_logits
from alexnet_deploy.core.vocab import BackendName

if TYPE_CHECKING:
    from alexnet_deploy.core.images import PreparedImages, ProgressFn


def verify_file(
    artifact: str | Path | Artifact,
    images: PreparedImages,
    reference_logits: np.ndarray | None = None,
    request: EvalRequest | None = None,
    backend: BackendName | str | None = None,
    progress: ProgressFn | None = None,
) -> Verification:
    """Run ``artifact`` on ``images`` and judge it against ``reference_logits`` (when given) with the request's gate.

    Args:
        artifact: a path (described here; an ONNX file without a sidecar is run as its graph says) or an
            :class:`~alexnet_deploy.backends.Artifact`.
        images: prepared images; their targets score top-1/top-5 (``-1`` targets score nothing).
        reference_logits: the FP32 reference's logits on the same images.
        request: gate, batch size and threads (:class:`EvalRequest` defaults).
        backend: another backend that runs this kind of file (default: the one its sidecar names).

    Raises:
        ArtifactError / ConfigError / MissingBackendError: the file cannot be described or run here.
    """
    request = request or EvalRequest()
    art = artifact if isinstance(artifact, Artifact) else describe_artifact(artifact, require_manifest=False)
    with runner_for(art, backend, threads=request.threads) as runner:
        logits = run_logits(runner, images, request.batch_size, progress, task=f"Verifying {art.path.name}")
        name = runner.name
    return judge(logits, images.targets, len(art.classes), reference_logits, request.gate, name)
