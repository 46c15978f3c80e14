"""Which weight refinement each Q/DQ form keeps: the one hook of :mod:`calib.refine` into the calibration.

After :func:`calib.pipeline.calibrate_forms` has chosen each form's method, :func:`refine_forms` refines that
calibration's weights (bias correction, learned rounding, or both, as ``CalibrationOptions.refine`` says),
writes each variant's Q/DQ ONNX, scores it on the same held-out calibration images as the methods, and keeps
the best by the methods' ranking (plain rounding included: a refinement is kept only where it is closer to
FP32). Every variant tried is a candidate of the calibration record, with its seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.files import work_dir
from alexnet_deploy.core.images import ProgressFn
from alexnet_deploy.core.vocab import Refinement
from calib.qdq import write_qdq
from calib.refine import AUTO_REFINEMENTS, RefineOptions, refine


def kinds_for(choice: Refinement | str) -> tuple[Refinement, ...]:
    """The refinements a choice stands for (``auto``: none, bias and adaround+bias)."""
    choice = Refinement.parse(choice)
    return AUTO_REFINEMENTS if choice is Refinement.AUTO else (choice,)


def refine_forms(
    source,
    data,
    results: dict[str, Any],
    choice: Refinement | str,
    reference: np.ndarray | None,
    score: Callable[[Path, Any, np.ndarray], dict[str, Any]],
    rank: Callable[[Any], tuple],
    *,
    options: RefineOptions | None = None,
    work_beside: Path | None = None,
    progress: ProgressFn | None = None,
) -> None:
    """Refine each form's chosen calibration and keep the best variant (in place: ``result.refinement``).

    Args:
        source: the :class:`calib.pipeline.SourceModel`.
        data: the :class:`calib.reader.CalibrationData` (calibration images refine, held-out images score).
        results: ``{form name: CalibrationResult}`` of :func:`calib.pipeline.calibrate_forms`; their shared
            candidate list gains one candidate per variant.
        choice: ``CalibrationOptions.refine``.
        reference: FP32 logits on the held-out images (``None``: no choice to make, the one asked for is kept).
        score: the pipeline's held-out scorer ``(onnx path, images, reference) -> figures``.
        rank: the pipeline's ranking of a scored candidate (larger is better), the one the methods use.
    """
    from calib.pipeline import Candidate

    kinds = [k for k in kinds_for(choice) if k is not Refinement.NONE]
    if not kinds:
        return
    keep_plain = Refinement.NONE in kinds_for(choice)
    with work_dir(work_beside or source.path, "refine") as work:
        for form_name, result in results.items():
            base = result.chosen_candidate
            tried = [(base, None)] if keep_plain else []
            for kind in kinds:
                refined = refine(source.path, result.ranges, result.form, data.calibration, source.input_name, kind,
                                 options, exclude=tuple(result.excluded), progress=progress)  # fmt: skip
                cand = Candidate(base.method, form_name, base.cache, round(refined.seconds, 2), refine=kind.value)
                cand.vs_minmax = base.vs_minmax
                if reference is not None:
                    trial = work / f"{base.method}-{form_name}-{kind.value.replace('+', '-')}.onnx"
                    write_qdq(source.path, trial, result.ranges, result.form, exclude=result.excluded,
                              weights=refined.weights)  # fmt: skip
                    cand.holdout = score(trial, data.holdout, reference)
                result.candidates.append(cand)  # the list all forms share
                tried.append((cand, refined))
            best = max(tried, key=lambda pair: rank(pair[0])) if reference is not None else tried[-1]
            result.refinement = best[1]
