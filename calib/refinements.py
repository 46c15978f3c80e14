"""The calibration's fifth step: each Q/DQ form's chosen calibration with its weights refined (:mod:`calib.refine`:
bias correction, learned rounding, or both, as ``CalibrationRequest.refine`` says).

Each variant's Q/DQ file is written, scored on the same held-out calibration images as the methods
(:func:`calib.results.score_file`), and the best by the same ranking is kept, plain rounding included: a refinement
is kept only where it is closer to FP32. Every variant tried is a trial of the calibration record, with its
seconds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.images import ProgressFn
from alexnet_deploy.core.vocab import Refinement
from calib.qdq import describe_qdq, write_qdq
from calib.refine import refine
from calib.results import CalibrationTrial, score_file


def refine_forms(
    source,
    data,
    results: dict[str, Any],
    kinds: tuple[Refinement, ...],
    reference: np.ndarray | None,
    work: Path,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Each form's result with its weights refined as the best of ``kinds`` (by the trials' ranking) keeps them.

    Args:
        source: the :class:`calib.pipeline.SourceModel`.
        data: the :class:`calib.reader.CalibrationData` (calibration images refine, held-out images score).
        results: ``{form name: CalibrationResult}`` with each form's chosen method, its Q/DQ file in ``work``.
        kinds: the refinements to try (``none`` among them: plain rounding stays a contender).
        reference: FP32 logits on the held-out images (``None``: nothing to choose, the refinement asked for is
            kept).
        work: the folder the refined Q/DQ files are written into (the chosen one is the form's file).

    Returns:
        ``{form name: CalibrationResult}``: the kept file, its refinement (``None``: plain rounding) and every
        trial, the refinements' included.
    """
    refined_kinds = [k for k in kinds if k is not Refinement.NONE]
    if not refined_kinds:
        return results
    added: list[CalibrationTrial] = []
    kept = {}
    for form_name, result in results.items():
        base = result.trial
        tried = [(base, None, result.path)] if Refinement.NONE in kinds else []
        for kind in refined_kinds:
            refined = refine(source.path, result.ranges, result.form, data.calibration, source.input_name, kind,
                             exclude=tuple(result.excluded), progress=progress)  # fmt: skip
            name = f"{base.method}-{form_name}-{kind.value.replace('+', '-')}.onnx"
            path = write_qdq(source.path, work / name, result.ranges, result.form, exclude=result.excluded,
                             weights=refined.weights)  # fmt: skip
            score = score_file(path, data.holdout, reference) if reference is not None else None
            trial = CalibrationTrial(base.method, form_name, base.cache, round(refined.seconds, 2), score,
                                     base.vs_minmax, kind.value)  # fmt: skip
            added.append(trial)
            tried.append((trial, refined, path))
        kept[form_name] = max(tried, key=lambda t: t[0].rank) if reference is not None else tried[-1]
    trials = next(iter(results.values())).trials + tuple(added)
    out = {}
    for form_name, result in results.items():
        _, refined, path = kept[form_name]
        structure = describe_qdq(path) if refined is not None else result.structure
        out[form_name] = replace(result, trials=trials, refinement=refined, path=path, structure=structure)
    return out
