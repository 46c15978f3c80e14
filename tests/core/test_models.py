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


# ------------------------------------------------------------------ the paper's ablations (issue 14)


@pytest.mark.parametrize("size", [224, 96])
def test_pool2_keeps_every_pooled_map_size_of_pool3(size):
    """At 224 px (and 96 px) 2x2/2 pooling gives the same map sizes as 3x3/2, as in the paper's section 3.4."""
    from alexnet_deploy.core.models import alexnet_paper_pool2

    x = torch.zeros(1, 3, size, size)
    shapes = []
    for model in (alexnet_paper(width=0.25, num_classes=10), alexnet_paper_pool2(width=0.25, num_classes=10)):
        pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
        seen = []
        hooks = [p.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(tuple(out.shape))) for p in pools]
        model(x)
        for h in hooks:
            h.remove()
        shapes.append(seen)
    assert shapes[0] == shapes[1] and len(shapes[0]) == 3
    pool2 = alexnet_paper_pool2(width=0.25, num_classes=10)
    assert {(m.kernel_size, m.stride) for m in pool2.features if isinstance(m, torch.nn.MaxPool2d)} == {(2, 2)}
    assert n_params(pool2) == n_params(alexnet_paper(width=0.25, num_classes=10))


def test_pool2_at_full_width_keeps_the_paper_parameter_count():
    assert n_params(build_model("alexnet_paper_pool2")) == 60_965_224
    with pytest.raises(ConfigError, match="pool must be 2 or 3"):
        AlexNetPaper(pool=4)


def test_convnet4_relu_and_tanh_differ_only_in_the_activation():
    relu, tanh = build_model("convnet4"), build_model("convnet4_tanh")
    kinds = lambda m: {type(x) for x in m.modules()}  # noqa: E731
    assert torch.nn.Tanh in kinds(tanh) and torch.nn.ReLU not in kinds(tanh)
    assert torch.nn.ReLU in kinds(relu) and torch.nn.Tanh not in kinds(relu)
    assert torch.nn.Dropout not in kinds(relu) | kinds(tanh)
    assert n_params(relu) == n_params(tanh) == 85_098
    convs = [m for m in relu.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64] and len(convs) + 1 == 4  # four weight layers
    assert relu(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="Unknown activation"):
        from alexnet_deploy.core.models import ConvNet4

        ConvNet4(activation="gelu")


def test_convnet4_zero_head_starts_both_activations_at_uniform_predictions():
    from alexnet_deploy.core.models import ConvNet4

    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def built(act: str, init: str) -> ConvNet4:
        torch.manual_seed(0)
        return ConvNet4(activation=act, init=init)

    plain = {act: built(act, "kaiming") for act in ("relu", "tanh")}
    with torch.no_grad():
        spread = {act: m(x).std().item() for act, m in plain.items()}
    assert spread["relu"] > 3 * spread["tanh"]  # why the zero head exists: ReLU's logits start far larger
    for act in ("relu", "tanh"):
        zero = built(act, "kaiming-zero-head")
        assert torch.count_nonzero(zero.classifier.weight) == 0
        with torch.no_grad():
            assert torch.equal(zero(x), torch.zeros(64, 10))  # uniform softmax, loss ln 10
        torch.testing.assert_close(zero.features[0].weight, plain[act].features[0].weight, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="kaiming-zero-head"):
        ConvNet4(init="xavier")
