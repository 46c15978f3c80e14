from __future__ import annotations

import pytest
import torch
import torchvision

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.models import (
    AlexNetPaper,
    alexnet,
    alexnet_paper,
    build_model,
    list_models,
    profile_model,
    register_model,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_both_models_and_refuses_duplicates():
    assert {"alexnet", "alexnet_paper"} <= set(list_models())
    with pytest.raises(ValueError, match="already registered"):
        register_model("alexnet")(alexnet)


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="Unknown model 'vgg'"):
        build_model("vgg")


@pytest.mark.parametrize(
    ("name", "kwargs", "params", "macs"),
    [
        ("alexnet", {}, 61_100_840, 714_188_480),
        ("alexnet_paper", {}, 60_965_224, 724_406_816),
        ("alexnet_paper", {"columns": 1}, 62_378_344, 1_135_256_096),
    ],
)
def test_parameter_and_multiply_add_counts(name, kwargs, params, macs):
    model = build_model(name, **kwargs)
    prof = profile_model(model, 224)
    assert n_params(model) == params
    assert prof.params == params
    assert prof.macs == macs


def test_ungrouped_paper_network_shares_match_the_seed():
    prof = profile_model(alexnet_paper(columns=1), 224)
    conv_params, conv_macs = prof.share("Conv2d")
    assert conv_params == pytest.approx(0.060, abs=0.001)
    assert conv_macs == pytest.approx(0.948, abs=0.001)


def test_paper_layers_follow_the_paper():
    m = alexnet_paper()
    convs = [x for x in m.features if isinstance(x, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    lrns = [x for x in m.features if isinstance(x, torch.nn.LocalResponseNorm)]
    assert len(lrns) == 2 and all(x.size == 5 and x.beta == 0.75 and x.k == 2.0 for x in lrns)
    # torch divides alpha by the size; the paper's alpha is 1e-4 undivided.
    assert lrns[0].alpha / lrns[0].size == pytest.approx(1e-4)
    pools = [x for x in m.features if isinstance(x, torch.nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)
    drops = [x for x in m.classifier if isinstance(x, torch.nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.5 for d in drops)


def test_paper_initialisation():
    torch.manual_seed(0)
    m = alexnet_paper()
    f, c = m.features, m.classifier
    for layer in (f[4], f[10], f[12], c[1], c[4]):
        assert torch.all(layer.bias == 1.0)
    for layer in (f[0], f[8], c[6]):
        assert torch.all(layer.bias == 0.0)
    assert c[1].weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert abs(c[1].weight.mean().item()) < 1e-4


def test_kaiming_initialisation_and_bad_init():
    m = alexnet_paper(init="kaiming", width=0.25)
    assert torch.all(m.features[4].bias == 0)
    with pytest.raises(ConfigError):
        AlexNetPaper(init="xavier")


def test_width_and_classes_scale_the_network():
    m = alexnet_paper(width=0.25, num_classes=100)
    out = m.eval()(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 100)
    assert [c.out_channels for c in m.features if isinstance(c, torch.nn.Conv2d)] == [24, 64, 96, 96, 64]
    assert n_params(m) < n_params(alexnet_paper()) / 10


def test_torchvision_state_dict_loads_and_matches_logits():
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = alexnet()
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
