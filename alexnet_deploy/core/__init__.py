"""The ground floor every stage stands on; it imports nothing above it.

:mod:`~alexnet_deploy.core.models` (torchvision's layout and the paper's two-column AlexNet, the registry, counts),
:mod:`~alexnet_deploy.core.data` (presets, image folders, the synthetic set), :mod:`~alexnet_deploy.core.images`
(images decoded once for evaluation and calibration), :mod:`~alexnet_deploy.core.accuracy` (metrics, comparison,
the gate), :mod:`~alexnet_deploy.core.checkpoint` (``weights_only`` loading), :mod:`~alexnet_deploy.core.manifest`
(the sidecar, atomic writes), :mod:`~alexnet_deploy.core.errors` and :mod:`~alexnet_deploy.core.system` (probes).
"""
