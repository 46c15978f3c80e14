"""The training recipe as a dataclass: the paper's recipe (the defaults) and the CPU demo preset.

A run's configuration is resolved in layers, each overriding the one before:

1. a preset (``paper`` or ``demo``), or the configuration stored in the checkpoint being resumed;
2. a JSON or TOML file of ``field = value`` pairs (a ``preset`` key in it chooses step 1);
3. ``--set field=value`` pairs and the named CLI options.

The resolved configuration is saved as ``config.json`` beside the checkpoints and inside each of them.
Every departure of a preset from the paper is written in its ``departures`` list, so it travels with the run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.limits import check_count, check_number, check_threads, finite
from alexnet_deploy.core.paths import require_file

__all__ = ["PRESETS", "TrainConfig", "load_config_file", "parse_overrides", "preset", "resolve_config"]

SCHEDULES = ("plateau", "warmup_cosine", "constant")
AUGMENTATIONS = ("paper", "rrc", "none")
LOADERS = ("folder", "memory")
MAX_WIDTH = 4.0
WIDTH_WHY = "4x the paper's channels already has ~16x its parameters (about 1 billion, 12 GB with momentum)"


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults are the 2012 paper's recipe (section 5 of the paper).

    Batch size is global: under DDP each of ``world_size`` processes takes ``batch_size // world_size``.
    """

    preset: str = "paper"
    data: str = ""  # dataset root holding train/ and val/ (ImageFolder layout)
    output: str = "runs/train"
    # model
    model: str = "alexnet_paper"
    width: float = 1.0
    columns: int = 2
    init: str = "paper"  # N(0, 0.01) weights, bias 1 in conv2/4/5 and FC6/7
    dropout: float = 0.5
    # input and augmentation
    image_size: int = 224  # the crop the network sees
    resize: int = 256  # shorter side before cropping (train: central square; eval: centre crop)
    augment: str = "paper"  # paper: random crop of the resized square + flip + PCA; rrc: random-resized crop
    rrc_scale: tuple[float, float] = (0.08, 1.0)  # area fraction range of the random-resized crop
    pca_sigma: float = 0.1
    loader: str = "folder"  # folder: decode JPEGs in workers; memory: decode once into a uint8 tensor
    workers: int = 4
    max_train_images: int = 0  # 0 = all; else a class-stratified subset (smoke runs, tests)
    max_val_images: int = 0
    # optimisation
    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "plateau"  # plateau: /10 when val error stops improving; warmup_cosine; constant
    plateau_factor: float = 0.1
    plateau_patience: int = 2  # epochs without a new best val error before the lr is divided
    plateau_max_drops: int = 3
    warmup_epochs: float = 0.0
    final_lr_fraction: float = 0.0  # warmup_cosine: lr at the end, as a fraction of the peak
    # evaluation
    ten_crop: bool = False  # after training, evaluate best.pt with the paper's 10-crop test
    # run
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    devices: str = ""  # "" = auto (cuda:LOCAL_RANK or cpu); one device; or two for the paper's two columns
    channels_last: bool = False
    max_minutes: float = 0.0  # wall-clock budget of the whole run; 0 = none
    time_schedule: bool = False  # with max_minutes: the lr schedule advances with time spent as well as steps
    log_every: int = 20
    departures: list[str] = field(default_factory=list)  # how this recipe differs from the paper's

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check values that would otherwise fail deep inside a run.

        Raises:
            ConfigError: a value out of range or a choice that does not exist.
        """
        for name, choices in (("schedule", SCHEDULES), ("augment", AUGMENTATIONS), ("loader", LOADERS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got '{getattr(self, name)}'.")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError(f"batch_size and epochs must be positive, got {self.batch_size} and {self.epochs}.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}.")
        if self.image_size > self.resize:
            raise ConfigError(f"image_size ({self.image_size}) cannot exceed resize ({self.resize}).")
        if self.image_size < 63 and self.model.startswith("alexnet"):
            # conv1 (11/4) and three 3/2 max-pools leave nothing below 63 px (convnet4 takes 32 px CIFAR).
            raise ConfigError(f"image_size must be at least 63 px for AlexNet's conv stack, got {self.image_size}.")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("dropout and label_smoothing must lie in [0, 1).")
        lo, hi = self.rrc_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"rrc_scale must satisfy 0 < low <= high <= 1, got {self.rrc_scale}.")
        self._check_bounds()

    def _check_bounds(self) -> None:
        """NaN and infinity nowhere; every number within what it can mean (and threads within the machine)."""
        for name in ("width", "dropout", "pca_sigma", "lr", "momentum", "weight_decay", "label_smoothing",
                     "plateau_factor", "warmup_epochs", "final_lr_fraction", "max_minutes"):  # fmt: skip
            finite(getattr(self, name), name)
        for value in self.rrc_scale:
            finite(value, "rrc_scale")
        check_number(self.width, "width", low=0.0, low_open=True)
        if self.width > MAX_WIDTH:
            raise ConfigError(f"width {self.width:g} is more than {MAX_WIDTH:g}: {WIDTH_WHY}.")
        check_number(self.momentum, "momentum", low=0.0, high=0.999)
        check_number(self.plateau_factor, "plateau_factor", low=0.0, low_open=True, high=0.999)
        check_number(self.final_lr_fraction, "final_lr_fraction", low=0.0, high=1.0)
        for name in ("weight_decay", "pca_sigma", "warmup_epochs", "max_minutes"):
            check_number(getattr(self, name), name, low=0.0)
        lowest = {"image_size": 1, "resize": 1, "log_every": 1, "plateau_patience": 1, "plateau_max_drops": 0,
                  "max_train_images": 0, "max_val_images": 0, "seed": 0}  # fmt: skip
        for name, low in lowest.items():
            check_count(getattr(self, name), name, low)
        if self.columns not in (1, 2):
            raise ConfigError(f"columns must be 1 or 2 (the paper's two-GPU split), got {self.columns}.")
        check_threads(self.threads, "threads", allow_zero=True)
        check_threads(self.workers, "workers", allow_zero=True)

    @property
    def preprocessing(self) -> Preprocessing:
        """The evaluation preset this model expects: resize the shorter side, centre crop, ImageNet mean/std."""
        return Preprocessing(resize=self.resize, crop=self.image_size)

    @property
    def device_list(self) -> list[str]:
        return [d.strip() for d in self.devices.split(",") if d.strip()]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rrc_scale"] = list(self.rrc_scale)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain dict (a config file or a checkpoint's ``config``), coercing each value's type.

        Raises:
            ConfigError: an unknown field or a value of the wrong type.
        """
        return dataclasses.replace(cls(), **_coerce_all(d))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (coerced and validated)."""
        return dataclasses.replace(self, **_coerce_all(changes))


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Convert a value (possibly a CLI string) to the type of field ``name``."""
    if name not in _FIELDS:
        raise ConfigError(f"Unknown training option '{name}'; known options: {', '.join(sorted(_FIELDS))}.")
    hint = typing.get_type_hints(TrainConfig)[name]
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return low in ("true", "1", "yes", "on")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
        if origin is tuple:
            parts = value.split(",") if isinstance(value, str) else list(value)
            if len(parts) != 2:
                raise ValueError(value)
            return (float(parts[0]), float(parts[1]))
        if origin is list:
            if isinstance(value, str):
                return [s.strip() for s in value.split(";") if s.strip()]
            return [str(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"Option '{name}' expects a {_type_name(hint)}, got {value!r}.") from None
    raise ConfigError(f"Option '{name}' has an unsupported type {hint}.")  # pragma: no cover


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "pair of numbers (e.g. 0.35,1.0)"
    if typing.get_origin(hint) is list:
        return "list"
    return hint.__name__ if isinstance(hint, type) and not isinstance(hint, types.GenericAlias) else str(hint)


def _coerce_all(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _coerce(k, v) for k, v in d.items()}


def _paper() -> TrainConfig:
    return TrainConfig(preset="paper", departures=[])


def _demo() -> TrainConfig:
    return TrainConfig(
        preset="demo",
        data="../shared/data/tiny-imagenet-100",
        output="runs/demo",
        width=0.25,
        init="kaiming",
        dropout=0.25,
        image_size=112,
        resize=128,
        augment="rrc",
        rrc_scale=(0.30, 1.0),
        pca_sigma=0.1,
        loader="memory",
        workers=0,
        epochs=40,
        batch_size=128,
        lr=0.04,
        nesterov=True,
        label_smoothing=0.1,
        schedule="warmup_cosine",
        warmup_epochs=1.0,
        threads=2,
        max_minutes=28.0,
        time_schedule=True,
        departures=[
            "width 0.25 (a quarter of the paper's channels and FC width) so that it trains on 2 CPU cores",
            "64 px Tiny-ImageNet photos upscaled to 128 and cropped to 112 px instead of 256/224",
            "Kaiming-normal initialisation: the paper's N(0, 0.01) left this narrow network at chance",
            "random-resized crops (area 30-100%) and flips instead of fixed-size 224 crops of a 256 square",
            "peak lr 0.04 with Nesterov momentum, 1-epoch linear warm-up, then cosine decay to 0",
            "the schedule advances with wall time (28-minute budget) instead of dividing by 10 on plateaus",
            "label smoothing 0.1 and dropout 0.25 instead of 0.5: short training underfits rather than overfits",
            "images decoded once into memory and augmented as batched tensors (same pixels, no JPEG decode per epoch)",
        ],
    )


PRESETS = {"paper": _paper, "demo": _demo}


def preset(name: str) -> TrainConfig:
    """The named preset's configuration.

    Raises:
        ConfigError: no preset has that name.
    """
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"Unknown preset '{name}'; choose one of: {', '.join(PRESETS)}.") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) file of option values into a dict.

    Raises:
        ConfigError: missing, unreadable, or not a flat table of options.
    """
    path = require_file(path, ConfigError, "Config file", (".json", ".toml"))
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise ConfigError("TOML config files need Python 3.11 or newer; use JSON instead.") from None
            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"Config file {path} is not valid {kind}: {exc}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a table of options, not a {type(data).__name__}.")
    return data


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn ``["lr=0.1", "nesterov=true"]`` into a dict (values stay strings until coerced).

    Raises:
        ConfigError: a pair without ``=``.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Expected --set NAME=VALUE, got '{pair}'.")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def command_overrides(pairs: list[str], named: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides of ``train``'s command line: the ``--set NAME=VALUE`` pairs, then the named options that were
    given (``None``: not given). A crop size without a resize keeps the paper's 256/224 ratio.

    Raises:
        ConfigError: a pair without ``=``.
    """
    overrides: dict[str, Any] = parse_overrides(pairs)
    overrides.update({k: str(v) if isinstance(v, Path) else v for k, v in named.items() if v is not None})
    if named.get("image_size") is not None and "resize" not in overrides:
        overrides["resize"] = round(named["image_size"] * 256 / 224)
    return overrides


def resolve_config(
    base: str | TrainConfig | Mapping[str, Any] = "paper",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Resolve a run's configuration: base (preset name, config, or dict), then file, then overrides.

    A ``preset`` key in the file replaces a base given by name; a base given as a config (a resumed run's)
    is kept.

    Raises:
        ConfigError: an unknown preset or option, or a bad value.
    """
    file_values = load_config_file(config_file) if config_file else {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(base, TrainConfig):
        cfg = base
    elif isinstance(base, Mapping):
        cfg = TrainConfig.from_dict(base)
    else:
        name = str(overrides.get("preset") or file_values.get("preset") or base)
        cfg = preset(name)
    changes = {**file_values, **overrides}
    if not isinstance(base, (TrainConfig, Mapping)):
        changes.pop("preset", None)  # already applied by choosing the base
    return cfg.replace(**changes)
