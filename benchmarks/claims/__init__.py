"""The paper's three claims, re-measured (research code, not part of the installed toolkit).

:mod:`claims.trainer` is the chunked trainer and the curve arithmetic; :mod:`claims.runs` holds the recipes and
one run function per claim. ``benchmarks/paper_claims.py`` is the command line. Both reuse ``train/``'s loop
(``train_one_epoch``, ``evaluate``, the schedule), so a claim trains exactly as ``alexnet-deploy train`` does.
"""
