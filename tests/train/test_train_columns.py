"""Two-column model parallelism computes what the grouped single-device alexnet_paper computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alexnet_deploy.core.errors import CheckpointError, ConfigError
from alexnet_deploy.core.models import alexnet_paper
from train.columns import TwoColumnAlexNet


def _pair(devices, num_classes=7):
    torch.manual_seed(0)
    grouped = alexnet_paper(width=0.25, num_classes=num_classes, dropout=0.0, init="kaiming")
    return grouped, TwoColumnAlexNet(grouped, devices)


def _check_equivalence(devices):
    grouped, columns = _pair(devices)
    x = torch.randn(3, 3, 112, 112)
    y = torch.tensor([1, 6, 3])
    out_g, out_c = grouped(x), columns(x)
    assert out_c.device == torch.device(devices[0]) and out_c.shape == (3, 7)
    torch.testing.assert_close(out_c.cpu(), out_g, rtol=1e-5, atol=1e-5)
    F.cross_entropy(out_g, y).backward()
    F.cross_entropy(out_c, y.to(out_c.device)).backward()
    grads = columns.grouped_grads()
    for name, p in grouped.named_parameters():
        assert p.grad.abs().max() > 0, name  # every layer really received a gradient
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_outputs_and_gradients_match_the_grouped_model_on_cpu_cpu():
    _check_equivalence(("cpu", "cpu"))


@pytest.mark.gpu
def test_outputs_and_gradients_match_across_gpu_and_cpu():
    _check_equivalence(("cuda:0", "cpu"))


def test_weights_round_trip_exactly_and_one_sgd_step_agrees():
    grouped, columns = _pair(("cpu", "cpu"), num_classes=5)  # odd class count: FC8 splits 3 + 2
    state = columns.grouped_state_dict()
    assert set(state) == set(grouped.state_dict())
    assert all(torch.equal(state[k], v) for k, v in grouped.state_dict().items())
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for m in (grouped, columns)]
    x, y = torch.randn(2, 3, 96, 96), torch.tensor([0, 4])
    for model, opt in zip((grouped, columns), opts, strict=True):
        F.cross_entropy(model(x), y).backward()
        opt.step()
    after = columns.grouped_state_dict()
    for k, v in grouped.state_dict().items():
        torch.testing.assert_close(after[k], v, rtol=1e-5, atol=1e-6, msg=k)
    columns.load_grouped_state_dict(grouped.state_dict())
    assert all(torch.equal(columns.grouped_state_dict()[k], v) for k, v in grouped.state_dict().items())


def test_the_lrn_halo_is_what_makes_them_equal():
    # Bright inputs make LRN's sum of squares matter (with k=2 it barely acts on small activations).
    grouped, columns = _pair(("cpu", "cpu"))
    x = 30 * torch.randn(2, 3, 112, 112)
    reference = grouped(x)
    torch.testing.assert_close(columns(x), reference, rtol=1e-4, atol=1e-4)
    # Normalising each column on its own (no two-channel exchange) changes the output: the test can fail.
    columns._lrn = lambda a0, a1: (columns.lrn(a0), columns.lrn(a1))
    gap = (columns(x) - reference).abs().max() / reference.abs().max()
    assert gap > 1e-3


def test_only_a_grouped_paper_network_splits():
    with pytest.raises(ConfigError, match="columns=2"):
        TwoColumnAlexNet(alexnet_paper(width=0.25, columns=1), ("cpu", "cpu"))


def test_training_on_two_columns_writes_a_checkpoint_the_grouped_model_loads(tmp_path, tiny20):
    from alexnet_deploy.core.checkpoint import load_model
    from train.config import resolve_config
    from train.loop import fit

    cfg = resolve_config(
        "demo",
        overrides={
            "data": str(tiny20),
            "output": str(tmp_path),
            "devices": "cpu,cpu",
            "width": 0.125,
            "image_size": 64,
            "resize": 72,
            "epochs": 1,
            "batch_size": 32,
            "max_train_images": 64,
            "max_val_images": 20,
            "max_minutes": 0,
            "threads": 0,
        },
    )
    result = fit(cfg)
    assert isinstance(result.placed.core, TwoColumnAlexNet)
    loaded = load_model(tmp_path / "best.pt")
    x = torch.randn(2, 3, 64, 64)
    result.placed.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), result.placed.module(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="resume it with the same --devices"):
        fit(cfg.replace(devices="cpu", epochs=2), resume=tmp_path / "last.pt")
