"""The ONNX Runtime and OpenVINO runners import and run without torch, as a Triton Python backend needs them to.

A child process makes ``torch`` (and torchvision) unimportable with a ``sys.meta_path`` blocker, imports the
registry and both runners, and runs one inference; its logits must equal ONNX Runtime's in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is blocked: the runners must not need it")
        return None

sys.meta_path.insert(0, NoTorch())
import numpy as np
import alexnet_deploy.backends
from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.backends.openvino import OpenVINORunner
from alexnet_deploy.core.preprocessing import IMAGENET_MEAN, Preprocessing

x = np.load(sys.argv[2])
out = {"pre": Preprocessing.for_crop(8).to_dict(), "mean": list(IMAGENET_MEAN)}
for name, cls in (("onnxruntime", OnnxRuntimeRunner), ("openvino", OpenVINORunner)):
    with cls(sys.argv[1], threads=1) as runner:
        out[name] = runner.infer(x).tolist()
out["loaded"] = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "PIL", "typer"})
print(json.dumps(out))
"""


def _tiny_onnx(path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4),
              "fw": rng.standard_normal((5, 4)), "fb": rng.standard_normal(5)}  # fmt: skip
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
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_runners_import_and_run_with_torch_unimportable(tmp_path):
    import onnxruntime as ort

    model, images = tmp_path / "tiny.onnx", tmp_path / "x.npy"
    _tiny_onnx(model)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(images, x)
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(images)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []  # neither torch nor the CLI's libraries came in through the runners
    assert out["pre"] == {"resize": 9, "crop": 8, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    np.testing.assert_allclose(np.array(out["onnxruntime"]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(out["openvino"]), expected, rtol=1e-4, atol=1e-4)


def test_core_data_still_exports_the_preset():
    from alexnet_deploy.core import data, preprocessing

    assert data.Preprocessing is preprocessing.Preprocessing
    assert (data.IMAGENET_MEAN, data.IMAGENET_STD) == (preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD)
