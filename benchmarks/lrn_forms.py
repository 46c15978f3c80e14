"""LRN written as a banded 1x1 convolution: the form that makes the paper's AlexNet fast in ONNX Runtime on a CPU.

ONNX defines ``LRN(X) = X / (bias + alpha / size * S) ** beta`` with ``S[c]`` the sum of ``X[i] ** 2`` over the
``size`` channels around ``c``. That window sum is a 1x1 convolution of ``X * X`` with a banded C x C weight
(``alpha / size`` inside the band) and ``bias`` as its bias, so one LRN becomes ``Mul, Conv, Pow, Div``: the
convolution runs on ONNX Runtime's blocked (NCHWc) kernels next to the real convolutions, where the native LRN
kernel (and the ``AveragePool``-over-5D decomposition torch's exporter writes) is slow and forces layout
reorders. It costs C x C multiply-adds per pixel (~76 M per image for the paper's two LRNs, ~10% of the net).

TensorRT has a native LRN layer: this rewrite is for the ONNX Runtime CPU engine only. It is measured by
``ort_tuning.py``; where it belongs is the export (graph form), see docs/BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def lrn_as_conv(src: Path, dst: Path) -> int:
    """Rewrite every ``LRN`` node of ``src`` as Mul -> banded 1x1 Conv -> Pow -> Div; return how many."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    from alexnet_deploy.core.files import atomic_path

    model = onnx.load(str(src))
    inferred = shape_inference.infer_shapes(model)
    channels = {
        v.name: v.type.tensor_type.shape.dim[1].dim_value
        for v in list(inferred.graph.value_info) + list(inferred.graph.input)
        if len(v.type.tensor_type.shape.dim) == 4
    }
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type != "LRN":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        size, alpha = int(attrs["size"]), float(attrs.get("alpha", 1e-4))
        beta, bias = float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
        x, y, c = node.input[0], node.output[0], channels[node.input[0]]
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # ONNX: floor below, ceil above
        band = np.zeros((c, c, 1, 1), np.float32)
        for o in range(c):
            band[o, max(0, o - lo) : min(c, o + hi + 1), 0, 0] = alpha / size
        p = f"{node.name or y}_lrnconv"
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(band, f"{p}_w"),
                numpy_helper.from_array(np.full(c, bias, np.float32), f"{p}_b"),
                numpy_helper.from_array(np.array(beta, np.float32), f"{p}_beta"),
            ]
        )
        nodes += [
            helper.make_node("Mul", [x, x], [f"{p}_sq"], name=f"{p}_sq"),
            helper.make_node("Conv", [f"{p}_sq", f"{p}_w", f"{p}_b"], [f"{p}_den"], name=f"{p}_sum"),
            helper.make_node("Pow", [f"{p}_den", f"{p}_beta"], [f"{p}_pow"], name=f"{p}_pow"),
            helper.make_node("Div", [x, f"{p}_pow"], [y], name=f"{p}_div"),
        ]
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return count


def lrn_conv_node_names(path: Path) -> list[str]:
    """Names of the nodes the rewrite made (to keep them out of INT8: squares and their sums need float range)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [n.name for n in model.graph.node if "_lrnconv_" in n.name]
