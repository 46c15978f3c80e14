"""Recipe presets and their resolution from presets, config files and overrides."""

from __future__ import annotations

import json

import pytest

from alexnet_deploy.core.errors import ConfigError
from train.config import TrainConfig, parse_overrides, preset, resolve_config


def test_paper_preset_is_the_2012_recipe():
    cfg = preset("paper")
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (0.01, 0.9, 5e-4, 128, 90)
    assert (cfg.schedule, cfg.plateau_factor, cfg.plateau_max_drops) == ("plateau", 0.1, 3)
    assert (cfg.init, cfg.augment, cfg.pca_sigma, cfg.dropout, cfg.width, cfg.columns) == (
        "paper",
        "paper",
        0.1,
        0.5,
        1.0,
        2,
    )
    assert (cfg.image_size, cfg.resize, cfg.nesterov, cfg.label_smoothing) == (224, 256, False, 0.0)
    assert cfg.departures == []


def test_demo_preset_states_its_departures_and_fits_the_conv_stack():
    cfg = preset("demo")
    assert cfg.departures and any("Kaiming" in d for d in cfg.departures)
    assert cfg.max_minutes <= 30 and cfg.time_schedule and cfg.image_size >= 63


def test_layers_file_then_overrides(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "demo"\nlr = 0.02\nepochs = 5\nrrc_scale = [0.5, 1.0]\n')
    cfg = resolve_config("paper", toml, {"epochs": "7", "nesterov": "false"})
    assert cfg.preset == "demo" and cfg.lr == 0.02 and cfg.epochs == 7 and cfg.nesterov is False
    assert cfg.rrc_scale == (0.5, 1.0) and cfg.width == 0.25
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"batch_size": 64}))
    assert resolve_config("paper", js).batch_size == 64
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, "Unknown training option 'colour'"),
        ({"epochs": "many"}, "'epochs' expects a int"),
        ({"nesterov": "perhaps"}, "'nesterov' expects a bool"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"image_size": 32, "resize": 36}, "at least 63 px"),
        ({"preset": "imagenet22k"}, "Unknown preset"),
    ],
)
def test_bad_values_say_which_option(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("paper", overrides=overrides)


def test_bad_files_and_pairs(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config("paper", tmp_path / "missing.toml")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_config("paper", broken)
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_overrides(["lr"])
