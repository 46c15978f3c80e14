from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from alexnet_deploy.backends import artifact_kind, runner_for
from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.backends.pytorch import TorchRunner
from alexnet_deploy.core.errors import AlexNetDeployError, ArtifactError, ConfigError


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def tiny_onnx(path, net: TinyNet) -> None:
    """The same network as TinyNet written directly as ONNX (fast, no exporter)."""
    w = net.conv.weight.detach().numpy()
    b = net.conv.bias.detach().numpy()
    fw = net.fc.weight.detach().numpy()
    fb = net.fc.bias.detach().numpy()
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w", "b"], ["c"]),
            helper.make_node("GlobalAveragePool", ["c"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fw, "fw"), (fb, "fb"))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_torch_and_onnxruntime_runners_agree(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    tiny_onnx(tmp_path / "tiny.onnx", net)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with TorchRunner(net) as tr, OnnxRuntimeRunner(tmp_path / "tiny.onnx") as orr:
        a, b = tr.infer(x), orr.infer(x)
        assert orr.input_name == "images" and orr.output_name == "logits"
        assert tr.inference_time is not None and tr.inference_time > 0
    assert a.shape == (3, 5)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert not tr.is_active and orr.session is None


def test_runner_state_is_guarded(tmp_path):
    r = TorchRunner(TinyNet())
    with pytest.raises(AlexNetDeployError, match="must be activated"):
        r.infer(np.zeros((1, 3, 8, 8), np.float32))
    r.activate()
    with pytest.raises(AlexNetDeployError, match="already active"):
        r.activate()
    r.deactivate()


def test_wrong_shaped_onnx_is_refused_with_one_sentence(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    )
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ArtifactError, match=r"one N x 3 x H x W image input; it takes x\['N', 10\]"):
        OnnxRuntimeRunner(path).activate()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load the model"):
        OnnxRuntimeRunner(garbage).activate()
    with pytest.raises(ArtifactError, match="not found"):
        OnnxRuntimeRunner(tmp_path / "missing.onnx").activate()


def test_artifact_kind_and_runner_for(tmp_path):
    torch.manual_seed(0)
    tiny_onnx(tmp_path / "m.onnx", TinyNet())
    assert artifact_kind(tmp_path / "m.onnx") == "onnx"
    assert isinstance(runner_for(tmp_path / "m.onnx"), OnnxRuntimeRunner)
    with pytest.raises(ConfigError, match=r"torch backend cannot run m.onnx \(a onnx file\)"):
        runner_for(tmp_path / "m.onnx", backend="torch")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="Cannot tell what m.bin is"):
        artifact_kind(tmp_path / "m.bin")
    with pytest.raises(ArtifactError, match="not found"):
        artifact_kind(tmp_path / "none.onnx")


def test_a_folder_given_as_an_artifact_says_it_is_a_folder(tmp_path):
    from calib.qdq import load_graph

    torch.manual_seed(0)
    out = tmp_path / "out"
    out.mkdir()
    tiny_onnx(out / "model.onnx", TinyNet())
    with pytest.raises(ArtifactError) as info:
        artifact_kind(out)
    assert str(info.value) == f"{out} is a folder, not an artifact: pass one of the files inside it (model.onnx)."
    with pytest.raises(ArtifactError, match=r"is a folder, not an ONNX model: pass one of the files inside it"):
        OnnxRuntimeRunner(out).activate()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match=r"empty is a folder, not an ONNX file: pass a \.onnx file \(it holds"):
        load_graph(empty)
