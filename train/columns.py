"""The paper's two-GPU model parallelism: AlexNet split into its two columns, each on its own device.

In the paper each GPU holds half of every layer's kernels. A column sees only its own half of the previous
layer's maps, except into conv3 and into each fully-connected layer, where the columns exchange activations.
``alexnet_paper`` (``columns=2``) expresses the same network on one device with ``groups=2`` in conv2, conv4 and
conv5; :class:`TwoColumnAlexNet` takes such a model's weights and places column 0 on ``devices[0]`` and column 1
on ``devices[1]`` (any two torch devices: ``cuda:0,cuda:1``, ``cuda:0,cpu``, ``cpu,cpu``).

Every layer of the grouped model splits between the columns along its output channels (dim 0 of each weight and
bias), so moving between the two forms is a slice or a concatenation. The logits are gathered on ``devices[0]``.

One exchange goes beyond the paper's: ``alexnet_paper`` normalises LRN across all channels, so the two channels
either side of the column boundary see two channels of the other column. Each column receives that two-channel
halo before its LRN, which makes the two forms compute the same function (tested: outputs and gradients).
Dropout is applied by the column that owns the features, before they are exchanged, so that one mask serves
both columns as it does in the grouped model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.models import AlexNetPaper

__all__ = ["LAYER_MAP", "Column", "TwoColumnAlexNet"]

# Column layer name -> the grouped model's module path.
LAYER_MAP = {
    "conv1": "features.0",
    "conv2": "features.4",
    "conv3": "features.8",
    "conv4": "features.10",
    "conv5": "features.12",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}


class Column(nn.Module):
    """One column's layers; the exchanges between columns are done by :class:`TwoColumnAlexNet`."""

    def __init__(self, model: AlexNetPaper, part: int) -> None:
        super().__init__()
        for name, path in LAYER_MAP.items():
            src = model.get_submodule(path)
            rows = _split_rows(src.weight.shape[0])[part]
            if isinstance(src, nn.Conv2d):
                in_ch = src.in_channels // src.groups if src.groups == 2 else src.in_channels
                layer = nn.Conv2d(in_ch, len(rows), src.kernel_size, stride=src.stride, padding=src.padding, bias=True)
            else:
                layer = nn.Linear(src.in_features, len(rows))
            with torch.no_grad():
                layer.weight.copy_(src.weight[rows.start : rows.stop])
                layer.bias.copy_(src.bias[rows.start : rows.stop])
            setattr(self, name, layer)
        p = model.classifier[0].p
        self.drop6, self.drop7 = nn.Dropout(p), nn.Dropout(p)


def _split_rows(n: int) -> tuple[range, range]:
    """Column 0 takes the first ceil(n/2) output channels, column 1 the rest."""
    half = (n + 1) // 2
    return range(0, half), range(half, n)


class TwoColumnAlexNet(nn.Module):
    """``alexnet_paper`` with its two columns on two devices; computes what the grouped model computes.

    Args:
        model: a grouped ``AlexNetPaper`` (``columns=2``); its weights are copied, the model is not kept.
        devices: the two devices, column 0 first. The input may live anywhere; logits come back on devices[0].

    Raises:
        ConfigError: the model is not grouped, too narrow to split, or not two devices were given.
    """

    def __init__(self, model: AlexNetPaper, devices: tuple[str | torch.device, str | torch.device]) -> None:
        super().__init__()
        if not isinstance(model, AlexNetPaper) or model.columns != 2:
            raise ConfigError("Two-column training needs alexnet_paper with columns=2.")
        if len(devices) != 2:
            raise ConfigError(f"Two-column training needs exactly two devices, got {len(devices)}.")
        lrn = model.features[2]
        if model.features[0].out_channels // 2 < lrn.size // 2:
            raise ConfigError("The model is too narrow to split into two columns.")
        self.devices = tuple(torch.device(d) for d in devices)
        self.num_classes = model.classifier[6].out_features
        self.lrn = nn.LocalResponseNorm(lrn.size, alpha=lrn.alpha, beta=lrn.beta, k=lrn.k)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.columns = nn.ModuleList([Column(model, 0).to(self.devices[0]), Column(model, 1).to(self.devices[1])])

    # -- exchanges -------------------------------------------------------------------------------------------

    def _lrn(self, a0: torch.Tensor, a1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LRN of each column with the other column's boundary channels as a halo (see the module docstring)."""
        before, after = self.lrn.size // 2, (self.lrn.size - 1) // 2
        n0 = a0.shape[1]
        ext0 = torch.cat([a0, a1[:, :after].to(a0.device)], dim=1)
        ext1 = torch.cat([a0[:, n0 - before :].to(a1.device), a1], dim=1)
        return self.lrn(ext0)[:, :n0], self.lrn(ext1)[:, before:]

    @staticmethod
    def _both(a0: torch.Tensor, a1: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Both columns' activations on ``device``, column 0's channels first (the grouped model's order)."""
        return torch.cat([a0.to(device), a1.to(device)], dim=1)

    # -- forward ---------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0, c1 = self.columns
        d0, d1 = self.devices
        a0 = F.relu(c0.conv1(x.to(d0)))
        a1 = F.relu(c1.conv1(x.to(d1)))
        a0, a1 = self._lrn(a0, a1)
        a0, a1 = F.relu(c0.conv2(self.pool(a0))), F.relu(c1.conv2(self.pool(a1)))
        a0, a1 = self._lrn(a0, a1)
        a0, a1 = self.pool(a0), self.pool(a1)
        # Exchange 1: conv3 sees both columns.
        a0, a1 = F.relu(c0.conv3(self._both(a0, a1, d0))), F.relu(c1.conv3(self._both(a0, a1, d1)))
        a0, a1 = F.relu(c0.conv4(a0)), F.relu(c1.conv4(a1))
        a0, a1 = F.relu(c0.conv5(a0)), F.relu(c1.conv5(a1))
        a0 = c0.drop6(torch.flatten(self.avgpool(self.pool(a0)), 1))
        a1 = c1.drop6(torch.flatten(self.avgpool(self.pool(a1)), 1))
        # Exchanges 2-4: every fully-connected layer sees both columns.
        a0, a1 = F.relu(c0.fc6(self._both(a0, a1, d0))), F.relu(c1.fc6(self._both(a0, a1, d1)))
        a0, a1 = c0.drop7(a0), c1.drop7(a1)
        a0, a1 = F.relu(c0.fc7(self._both(a0, a1, d0))), F.relu(c1.fc7(self._both(a0, a1, d1)))
        return self._both(c0.fc8(self._both(a0, a1, d0)), c1.fc8(self._both(a0, a1, d1)), d0)

    # -- conversion to and from the grouped layout ----------------------------------------------------------------

    def _merged(self, pick) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        c0, c1 = self.columns
        for name, path in LAYER_MAP.items():
            for kind in ("weight", "bias"):
                t0 = pick(getattr(getattr(c0, name), kind))
                t1 = pick(getattr(getattr(c1, name), kind))
                out[f"{path}.{kind}"] = torch.cat([t0.detach().cpu(), t1.detach().cpu()], dim=0)
        return out

    def grouped_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in ``alexnet_paper``'s state-dict layout (on the CPU), e.g. for a checkpoint."""
        return self._merged(lambda p: p)

    def grouped_grads(self) -> dict[str, torch.Tensor]:
        """The gradients in ``alexnet_paper``'s layout (zeros where a parameter has none)."""
        return self._merged(lambda p: p.grad if p.grad is not None else torch.zeros_like(p))

    def load_grouped_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights given in ``alexnet_paper``'s layout into the two columns."""
        with torch.no_grad():
            for name, path in LAYER_MAP.items():
                for kind in ("weight", "bias"):
                    full = state[f"{path}.{kind}"]
                    rows = _split_rows(full.shape[0])
                    for col, r in zip(self.columns, rows, strict=True):
                        getattr(getattr(col, name), kind).copy_(full[r.start : r.stop])
