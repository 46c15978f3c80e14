"""The paper's training recipe: SGD on a plateau schedule, two-column model parallelism, DDP, checkpoints.

Entry points: :func:`train.loop.fit` (a whole run), :mod:`train.engine` (its pieces), :mod:`train.config`
(the ``paper`` and ``demo`` presets). The CLI front end is ``alexnet-deploy train``.
"""
