"""AlexNet in two forms, a registry, and a per-layer profile (shapes, parameters, multiply-adds).

* ``alexnet``: torchvision's layout (64-192-384-256-256), state-dict compatible with
  ``torchvision.models.alexnet`` so its checkpoints load unchanged.
* ``alexnet_paper``: the network of Krizhevsky, Sutskever and Hinton (2012): 96-256-384-384-256 kernels,
  LRN after the first two ReLUs, overlapping max-pooling, and the two-GPU column split as ``groups=2``
  in conv2, conv4 and conv5 (``columns=1`` removes the split).
* ``alexnet_paper_pool2``: the same network with non-overlapping 2x2/2 max-pooling (the ablation of the
  paper's section 3.4); at 224 px (and 96 px) every pooled map has the same size as with 3x3/2.
* ``convnet4`` / ``convnet4_tanh``: a four-layer CIFAR-10 network (three 5x5 convolutions and one FC layer)
  with ReLUs or tanh units, for the paper's Figure 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from alexnet_deploy.core.errors import ConfigError

__all__ = [
    "AlexNet",
    "AlexNetPaper",
    "ConvNet4",
    "LayerProfile",
    "ModelProfile",
    "alexnet",
    "alexnet_paper",
    "alexnet_paper_pool2",
    "build_model",
    "convnet4",
    "convnet4_tanh",
    "get_model_builder",
    "list_models",
    "profile_model",
    "register_model",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under ``name``; a second registration of the same name is refused.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def wrapper(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"An entry is already registered under the name '{name}'.")
        _MODELS[name] = fn
        return fn

    return wrapper


def list_models() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(_MODELS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """Return the builder registered under ``name``.

    Raises:
        ConfigError: no model has that name.
    """
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"Unknown model '{name}'; choose one of: {', '.join(list_models())}.") from None


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name with keyword arguments (``num_classes``, ``width``, ...)."""
    return get_model_builder(name)(**kwargs)


def _scaled(channels: int, width: float, multiple: int = 2) -> int:
    """Scale a channel count by ``width``, rounded to a multiple of ``multiple`` (2 keeps groups=2 valid)."""
    if width <= 0:
        raise ConfigError(f"Width must be positive, got {width}.")
    return max(multiple, int(round(channels * width / multiple)) * multiple)


class AlexNet(nn.Module):
    """torchvision's AlexNet layout, with a width multiplier (width 1.0 is torchvision's network)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (_scaled(c, width) for c in (64, 192, 384, 256, 256))
        hidden = _scaled(4096, width)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# The paper writes LRN as a / (k + alpha * sum(a^2))^beta with alpha = 1e-4. torch's LocalResponseNorm and
# ONNX's LRN both divide alpha by the window size, so the paper's alpha is passed as alpha * size.
PAPER_LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


def _paper_lrn() -> nn.LocalResponseNorm:
    size = PAPER_LRN["size"]
    return nn.LocalResponseNorm(size, alpha=PAPER_LRN["alpha"] * size, beta=PAPER_LRN["beta"], k=PAPER_LRN["k"])


class AlexNetPaper(nn.Module):
    """The 2012 paper's AlexNet: 5 conv + 3 FC layers, LRN, overlapping pooling, two columns as groups.

    Args:
        num_classes: size of the last layer.
        dropout: dropout probability before FC6 and FC7 (the paper: 0.5).
        width: multiplier on every channel count and the FC width (1.0 is the paper's network).
        columns: 2 splits conv2, conv4 and conv5 into the paper's two GPU columns (``groups=2``); 1 is ungrouped.
        init: ``"paper"`` (weights N(0, 0.01), bias 1 in conv2/4/5 and FC6/7, else 0) or ``"kaiming"``.
        pool: the max-pooling window, stride 2: 3 overlaps (the paper), 2 does not (its section 3.4 ablation).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.5,
        width: float = 1.0,
        columns: int = 2,
        init: str = "paper",
        pool: int = 3,
    ) -> None:
        super().__init__()
        if columns not in (1, 2):
            raise ConfigError(f"columns must be 1 or 2, got {columns}.")
        if pool not in (2, 3):
            raise ConfigError(f"pool must be 2 or 3 (window of the stride-2 max-pooling), got {pool}.")
        self.columns = columns
        c1, c2, c3, c4, c5 = (_scaled(c, width) for c in (96, 256, 384, 384, 256))
        hidden = _scaled(4096, width)
        g = columns
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),  # conv1 (0)
            nn.ReLU(inplace=True),
            _paper_lrn(),
            nn.MaxPool2d(kernel_size=pool, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=g),  # conv2 (4): own column only
            nn.ReLU(inplace=True),
            _paper_lrn(),
            nn.MaxPool2d(kernel_size=pool, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),  # conv3 (8): sees both columns
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=g),  # conv4 (10)
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=g),  # conv5 (12)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=pool, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, hidden),  # fc6 (1)
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),  # fc7 (4)
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),  # fc8 (6)
        )
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "paper") -> None:
        """Initialise weights as the paper does (``"paper"``) or with Kaiming-normal (``"kaiming"``)."""
        bias_one = {self.features[4], self.features[10], self.features[12], self.classifier[1], self.classifier[4]}
        for m in self.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if init == "paper":
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.constant_(m.bias, 1.0 if m in bias_one else 0.0)
            elif init == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            else:
                raise ConfigError(f"Unknown initialisation '{init}'; choose 'paper' or 'kaiming'.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register_model("alexnet")
def alexnet(*, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.5, **_: object) -> AlexNet:
    """torchvision's AlexNet layout (61,100,840 parameters at 1000 classes, width 1.0)."""
    return AlexNet(num_classes=num_classes, dropout=dropout, width=width)


@register_model("alexnet_paper")
def alexnet_paper(
    *,
    num_classes: int = 1000,
    width: float = 1.0,
    dropout: float = 0.5,
    columns: int = 2,
    init: str = "paper",
    **_: object,
) -> AlexNetPaper:
    """The 2012 paper's AlexNet (60,965,224 parameters grouped, 62,378,344 with ``columns=1``)."""
    return AlexNetPaper(num_classes=num_classes, dropout=dropout, width=width, columns=columns, init=init)


@register_model("alexnet_paper_pool2")
def alexnet_paper_pool2(
    *,
    num_classes: int = 1000,
    width: float = 1.0,
    dropout: float = 0.5,
    columns: int = 2,
    init: str = "paper",
    **_: object,
) -> AlexNetPaper:
    """The paper's AlexNet with non-overlapping 2x2/2 max-pooling instead of 3x3/2 (same parameters)."""
    return AlexNetPaper(num_classes=num_classes, dropout=dropout, width=width, columns=columns, init=init, pool=2)


class ConvNet4(nn.Module):
    """A four-layer CIFAR-10 network in the spirit of the paper's Figure 1 (32x32 inputs, no regularisation).

    Three 5x5 convolutions of 32, 32 and 64 kernels, each followed by the activation and a 3x3/2 max-pool
    (32 -> 15 -> 7 -> 3), then one fully-connected layer: the layout of cuda-convnet's CIFAR-10 example, the
    code base of the paper, without its response normalisation. No dropout, so Figure 1 measures the
    activation alone.

    Args:
        num_classes: size of the last layer.
        activation: ``"relu"`` or ``"tanh"``.
        width: multiplier on the channel counts.
        init: ``"kaiming"`` (normal, fan-in, with the gain of the activation: 2 for ReLU, 5/3 for tanh),
            ``"kaiming-zero-head"`` (the same, but the classifier's weights start at zero, so that both
            activations start from uniform predictions: with ``"kaiming"`` the ReLU network's max-pooled
            activations grow layer by layer and its logits start ~9x larger than the tanh network's, std 5.3 vs
            0.6 on unit-variance input, which the comparison would otherwise measure) or ``"paper"``
            (N(0, 0.01), biases 0).
    """

    def __init__(self, num_classes: int = 10, activation: str = "relu", width: float = 1.0, init: str = "kaiming"):
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ConfigError(f"Unknown activation '{activation}'; choose 'relu' or 'tanh'.")
        act = acts[activation]
        c1, c2, c3 = (_scaled(c, width) for c in (32, 32, 64))
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=5, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=5, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Linear(c3 * 3 * 3, num_classes)
        for m in self.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if init == "kaiming-zero-head" and m is self.classifier:
                nn.init.zeros_(m.weight)
            elif init in ("kaiming", "kaiming-zero-head"):
                gain = "linear" if m is self.classifier else activation
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=gain)
            elif init == "paper":
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                raise ConfigError(f"Unknown initialisation '{init}'; choose 'paper', 'kaiming' or 'kaiming-zero-head'.")
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("convnet4")
def convnet4(*, num_classes: int = 10, width: float = 1.0, init: str = "kaiming", **_: object) -> ConvNet4:
    """Figure 1's four-layer CIFAR-10 network with ReLUs (85,098 parameters at 10 classes)."""
    return ConvNet4(num_classes=num_classes, activation="relu", width=width, init=init)


@register_model("convnet4_tanh")
def convnet4_tanh(*, num_classes: int = 10, width: float = 1.0, init: str = "kaiming", **_: object) -> ConvNet4:
    """Figure 1's four-layer CIFAR-10 network with tanh units (same parameters as ``convnet4``)."""
    return ConvNet4(num_classes=num_classes, activation="tanh", width=width, init=init)


@dataclass
class LayerProfile:
    """One leaf layer's output shape, parameter count and multiply-adds for one image."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass
class ModelProfile:
    """Per-layer profile of a model at one input size, with totals and conv/FC shares."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerProfile] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def share(self, kind: str) -> tuple[float, float]:
        """Return the (parameter, multiply-add) fractions held by layers of ``kind`` (``"Conv2d"``/``"Linear"``)."""
        p = sum(layer.params for layer in self.layers if layer.kind == kind)
        m = sum(layer.macs for layer in self.layers if layer.kind == kind)
        return p / max(self.params, 1), m / max(self.macs, 1)

    @property
    def flops(self) -> int:
        """Floating-point operations per image (2 per multiply-add)."""
        return 2 * self.macs

    def to_dict(self) -> dict:
        conv_p, conv_m = self.share("Conv2d")
        fc_p, fc_m = self.share("Linear")
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "params": self.params,
            "macs": self.macs,
            "conv_share": {"params": conv_p, "macs": conv_m},
            "fc_share": {"params": fc_p, "macs": fc_m},
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "output_shape": list(layer.output_shape),
                    "params": layer.params,
                    "macs": layer.macs,
                }
                for layer in self.layers
            ],
        }


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def profile_model(model: nn.Module, image_size: int = 224, name: str = "") -> ModelProfile:
    """Run one image through ``model`` and record each leaf layer's output shape, parameters and MACs.

    Multiply-adds count convolutions and fully-connected layers (pooling, LRN and ReLU are negligible).
    """
    profile = ModelProfile(model=name or type(model).__name__, input_shape=(1, 3, image_size, image_size))
    hooks = []
    for layer_name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor, layer_name: str = layer_name) -> None:
            profile.layers.append(
                LayerProfile(
                    name=layer_name,
                    kind=type(mod).__name__,
                    output_shape=tuple(out.shape[1:]),
                    params=sum(p.numel() for p in mod.parameters(recurse=False)),
                    macs=_layer_macs(mod, out),
                )
            )

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(profile.input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return profile
