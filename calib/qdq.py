"""Q/DQ insertion: an FP32 ONNX plus calibration ranges -> an INT8 Q/DQ ONNX, written by onnxruntime's
``quantize_static`` (QDQ format) with the ranges we computed.

Three forms:

* **tensorrt** (TensorRT's explicit-quantization rules, and what ``--target tensorrt`` always writes):
  QuantizeLinear/DequantizeLinear pairs on the *inputs* of every Conv and Gemm/MatMul (the FC layers included):
  activations per tensor, weights per output channel (axis 0 of Conv and of Gemm's transposed B), symmetric
  int8 with zero-point 0; biases stay float (TensorRT quantizes only weights and activations and folds the bias
  into the fused kernel; an int32 bias DequantizeLinear is not part of its rules); outputs of Conv/Gemm are not
  quantized, so Conv+bias+ReLU fuse and the logits stay float. TensorRT then runs each Conv/FC as an int8
  kernel and propagates the scales through ReLU/max-pool by itself. Everything else (LRN, pooling, reshapes)
  stays as the graph says.
* **onnxruntime** (ONNX Runtime's own CPU form): asymmetric uint8 activations, int8 per-channel weights,
  int32 biases, and Q/DQ around ReLU, max-pool and reshapes as well, so ONNX Runtime fuses QLinearConv/QGemm
  chains. ``--target onnxruntime`` uses it only where it measures more accurate than the tensorrt form.
* **pooled** (int8 through pooling and reshapes): the tensorrt form's symmetric int8, per-channel weights and
  float biases, but each activation's Q/DQ pair sits where the value is made, after the ReLU (or LRN), *before*
  the MaxPool / Reshape / Flatten chain that leads to the Conv or Gemm: ``Relu -> Q -> DQ -> MaxPool -> Conv``.
  The inputs of AveragePool are quantized the same way. This is NNCF's placement and TensorRT's own guidance
  (max-pooling and reshapes commute with Q/DQ, so TensorRT propagates the DQ down to the weighted layer), and it
  lets OpenVINO fuse the quantization into the producing Conv+ReLU and pool in int8 instead of pooling in float
  and quantizing again. Max-pooling and reshapes commute with a monotonic per-tensor quantizer, so with the same
  range the pooled form computes exactly what the tensorrt form computes; calibration measures the tensor the
  pair sits on (the pre-pool tensor), which matters for the histogram methods.
* **pooled-u8** (ONNX Runtime and OpenVINO only): the pooled placement with uint8 activations where a tensor is
  never negative (everything after a ReLU: zero-point 0, all 256 steps instead of the 128 a symmetric int8 scale
  leaves it) and symmetric int8 where it can be (the image input): the types NNCF writes. On the demo model it
  cut the top-1 answers that differ from FP32 by about 40% (95.8 -> 97.5% agreement, minmax, OpenVINO). An
  asymmetric uint8 image input (zero-point 114) cost OpenVINO 3-7% of its speed, hence int8 there. TensorRT
  takes no uint8 Q/DQ.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.files import atomic_path, link_into, scratch_dir
from alexnet_deploy.core.paths import require_file
from alexnet_deploy.core.vocab import QuantTarget
from calib.lift import lift_pairs, lifted_tensor, pooled_dq
from calib.methods import Ranges, ort_method

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
#: Ops that commute with a per-tensor quantizer (they only move or pick values): the pooled form lifts an
#: activation's Q/DQ pair above them, to the tensor the value is computed in.
LIFT_THROUGH = ("MaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity")


@dataclass(frozen=True)
class QdqForm:
    """How the Q/DQ graph is laid out; see the module docstring."""

    name: str
    activation_type: str  # "int8" or "uint8"
    symmetric_activations: bool
    op_types: tuple[str, ...]  # node types whose tensors are quantized
    quantize_outputs: bool  # Q/DQ also on the outputs of Conv/Gemm
    quantize_bias: bool  # int32 bias through DequantizeLinear
    lift_through: tuple[str, ...] = ()  # activation Q/DQ moved above these ops (the pooled form)
    pooled_inputs: tuple[str, ...] = ()  # ops whose input also gets a Q/DQ pair, lifted the same way
    signed_where_negative: bool = False  # uint8 form: a tensor that can be negative gets symmetric int8 instead

    def extra_options(self) -> dict[str, Any]:
        """quantize_static's ``extra_options`` for this form."""
        extra: dict[str, Any] = {
            "ActivationSymmetric": self.symmetric_activations,
            "WeightSymmetric": True,
            "QuantizeBias": self.quantize_bias,
            # MatMul weights are (in, out): their output channels are axis 1.
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        }
        if not self.quantize_outputs:
            extra["OpTypesToExcludeOutputQuantization"] = list(WEIGHTED_OPS)
        return extra


TENSORRT_FORM = QdqForm("tensorrt", "int8", True, WEIGHTED_OPS, quantize_outputs=False, quantize_bias=False)
ONNXRUNTIME_FORM = QdqForm(
    "onnxruntime",
    "uint8",
    False,
    (*WEIGHTED_OPS, "Relu", "MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze"),
    quantize_outputs=True,
    quantize_bias=True,
)
POOLED_FORM = QdqForm(
    "pooled",
    "int8",
    True,
    WEIGHTED_OPS,
    quantize_outputs=False,
    quantize_bias=False,
    lift_through=LIFT_THROUGH,
    pooled_inputs=("AveragePool",),
)
POOLED_U8_FORM = QdqForm(
    "pooled-u8",
    "uint8",
    False,
    WEIGHTED_OPS,
    quantize_outputs=False,
    quantize_bias=False,
    lift_through=LIFT_THROUGH,
    pooled_inputs=("AveragePool",),
    signed_where_negative=True,
)
FORMS = {f.name: f for f in (TENSORRT_FORM, ONNXRUNTIME_FORM, POOLED_FORM, POOLED_U8_FORM)}


def form_named(name: str) -> QdqForm:
    """The Q/DQ form called ``name`` (``tensorrt``, ``onnxruntime``, ``pooled`` or ``pooled-u8``).

    Raises:
        ConfigError: no such form.
    """
    if name in FORMS:
        return FORMS[name]
    raise ConfigError(f"Unknown Q/DQ form '{name}'; choose {', '.join(FORMS)}.")


def forms_for(target: QuantTarget | str) -> tuple[QdqForm, ...]:
    """The forms a target may use, preferred first: TensorRT only its own; ONNX Runtime either."""
    target = QuantTarget.parse(target)
    return (TENSORRT_FORM,) if target is QuantTarget.TENSORRT else (TENSORRT_FORM, ONNXRUNTIME_FORM)


@dataclass(frozen=True)
class Layer:
    """A weighted layer that can be quantized: the node name, its type, and a readable label (conv1, fc6...)."""

    node: str
    op_type: str
    label: str
    activation: str  # the input tensor that gets Q/DQ
    weight: str


def load_graph(path: str | Path):
    """An ONNX model's graph, weights included.

    Raises:
        ArtifactError: missing or not readable ONNX.
    """
    import onnx

    path = require_file(path, ArtifactError, "ONNX file", (".onnx",))
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError, among others
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(exc).__name__}).") from None


def quantizable_layers(model) -> list[Layer]:
    """The Conv and Gemm/MatMul nodes with a constant weight, in graph order, labelled like the paper's layers
    (conv1..convN, then fc(N+1)..)."""
    if isinstance(model, (str, Path)):
        model = load_graph(model)
    inits = {i.name for i in model.graph.initializer}
    layers, convs, fcs = [], 0, 0
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits]
    num_convs = sum(n.op_type == "Conv" for n in weighted)
    for n in weighted:
        if n.op_type == "Conv":
            convs += 1
            label = f"conv{convs}"
        else:
            fcs += 1
            label = f"fc{num_convs + fcs}"
        layers.append(Layer(n.name, n.op_type, label, n.input[0], n.input[1]))
    return layers


def quantization_points(model, form: QdqForm) -> dict[str, str]:
    """For a form with lifted pairs (pooled): ``{tensor a quantized op reads: tensor its Q/DQ pair sits on}``,
    for the weighted layers' inputs and the inputs of ``form.pooled_inputs`` ops; ``{}`` for the other forms."""
    if not (form.lift_through or form.pooled_inputs):
        return {}
    if isinstance(model, (str, Path)):
        model = load_graph(model)
    read = [layer.activation for layer in quantizable_layers(model)]
    read += [n.input[0] for n in model.graph.node if n.op_type in form.pooled_inputs]
    return {t: lifted_tensor(model, t, form.lift_through) for t in read}


def tensors_to_calibrate(model, form: QdqForm) -> set[str]:
    """The activation tensors a form quantizes, hence the ones calibration must measure."""
    if isinstance(model, (str, Path)):
        model = load_graph(model)
    inits = {i.name for i in model.graph.initializer}
    points = quantization_points(model, form)
    if points:
        return set(points.values())
    if form.op_types == WEIGHTED_OPS and not form.quantize_outputs:
        return {layer.activation for layer in quantizable_layers(model)}
    tensors: set[str] = set()
    for n in model.graph.node:
        if n.op_type in form.op_types:
            tensors.update(t for t in (*n.input, *n.output) if t and t not in inits)
    return tensors


class _DropRootWarnings(logging.Filter):
    """quantize_static logs 'consider pre-processing' on the root logger; it does not apply here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage() and "pre_process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root = logging.getLogger()
    flt = _DropRootWarnings()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def write_qdq(
    fp32_path: str | Path,
    out_path: str | Path,
    ranges: Ranges,
    form: QdqForm = TENSORRT_FORM,
    *,
    exclude: Iterable[str] = (),
    only: Iterable[str] | None = None,
    weights: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write the Q/DQ ONNX of an FP32 ONNX for ``form`` with the given ranges (atomically, no sidecar).

    Args:
        exclude: node names to leave in float (the fallback's most sensitive layers).
        only: quantize just these nodes (sensitivity: one layer at a time).
        weights: initializers to use instead of the file's (a refinement's weights, already on the int8 grid:
            :mod:`calib.refine`), by name.

    Raises:
        ArtifactError: the model cannot be quantized or written.
        ConfigError: ``ranges`` lack a tensor the form quantizes, or ``weights`` name no initializer.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    out_path = Path(out_path)
    act = QuantType.QInt8 if form.activation_type == "int8" else QuantType.QUInt8
    points = quantization_points(fp32_path, form)
    if points:
        missing = sorted(set(points.values()) - set(ranges.values))
        if missing:
            raise ConfigError(f"The ranges lack {missing[:3]}, which the {form.name} form quantizes.")
        # quantize_static puts each pair on the tensor the layer reads, with the range of the tensor the pair
        # will sit on; lift_pairs then moves it up there.
        ranges = Ranges(ranges.method, {**ranges.values, **{x: ranges.values[t] for x, t in points.items()}})
    try:  # outside the scratch folder: a full disk is recognised there first, before its files are removed
        with scratch_dir("alexnet-deploy-qdq-") as work:
            cache = work / "ranges.json"
            save_tensors_data(ranges.to_tensors_data(), cache)
            source = _with_weights(fp32_path, weights, work / "refined.onnx") if weights else Path(fp32_path)
            with _quiet_quantizer(), atomic_path(out_path) as tmp:
                quantize_static(
                    str(link_into(work, source, "model.onnx")),  # its MODEL-inferred.onnx goes to work/
                    str(tmp),
                    calibration_data_reader=None,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(form.op_types),
                    per_channel=True,
                    reduce_range=False,
                    activation_type=act,
                    weight_type=QuantType.QInt8,
                    nodes_to_quantize=list(only) if only is not None else None,
                    nodes_to_exclude=list(exclude),
                    calibrate_method=ort_method(ranges.method),
                    extra_options=form.extra_options(),
                    calibration_cache_path=cache,
                )
                if points:
                    params = {t: activation_params(ranges.values[t], form) for t in points.values()}
                    lift_pairs(tmp, points, params, form.lift_through, form.pooled_inputs)
                if form.signed_where_negative:
                    _signed_where_negative(tmp, ranges)
                _mark_int8(tmp)
    except (ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"onnxruntime could not quantize {Path(fp32_path).name}: {first[:200]}.") from None
    return out_path


@dataclass(frozen=True)
class QdqTrial:
    """One Q/DQ file written for a method and a form, and the activation tensors that form quantizes."""

    method: str
    form: str
    path: Path
    tensors: frozenset[str]


def write_trials(
    fp32_path: str | Path,
    ranges: dict[Any, Ranges],
    forms: Iterable[str],
    folder: Path,
    exclude: Iterable[str] = (),
) -> list[QdqTrial]:
    """Write one Q/DQ ONNX per method (the keys of ``ranges``) and form into ``folder``: ``METHOD-FORM.onnx``."""
    graph = load_graph(fp32_path)
    trials = []
    for form in (form_named(f) for f in forms):
        tensors = frozenset(tensors_to_calibrate(graph, form))
        for method, r in ranges.items():
            name = getattr(method, "value", str(method))
            path = write_qdq(fp32_path, folder / f"{name}-{form.name}.onnx", r, form, exclude=exclude)
            trials.append(QdqTrial(name, form.name, path, tensors))
    return trials


def _signed_where_negative(path: Path, ranges: Ranges) -> None:
    """Turn each uint8 activation pair on a tensor that can be negative into symmetric int8 (zero-point 0)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    changed = False
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] not in ranges.values or ranges.values[n.input[0]][0] >= 0:
            continue
        scale, zero = activation_params(ranges.values[n.input[0]], TENSORRT_FORM)
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(np.array(scale, dtype=np.float32), n.input[1]))
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(zero, n.input[2]))  # the DQ reads the same two
        changed = True
    if changed:
        onnx.save(model, str(path))


def activation_params(bounds: tuple[float, float], form: QdqForm) -> tuple[np.float32, np.ndarray]:
    """An activation's (scale, zero-point) in ``form``, computed as quantize_static computes them."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    lo, hi = (np.array(v, dtype=np.float32) for v in bounds)
    if form.activation_type == "int8":
        qmin, qmax = np.array(-127 if form.symmetric_activations else -128, np.int8), np.array(127, np.int8)
    else:
        qmin, qmax = np.array(0, np.uint8), np.array(255, np.uint8)
    zero, scale = compute_scale_zp(lo, hi, qmin, qmax, symmetric=form.symmetric_activations)
    return np.float32(scale), np.asarray(zero, dtype=qmin.dtype)


def symmetric_scale(bounds: tuple[float, float]) -> np.float32:
    """The symmetric int8 scale of a range, computed as quantize_static computes it (amax / 127)."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    lo, hi = (np.array(v, dtype=np.float32) for v in bounds)
    _, scale = compute_scale_zp(lo, hi, np.array(-127, np.int8), np.array(127, np.int8), symmetric=True)
    return np.float32(scale)


def _with_weights(fp32_path: str | Path, weights: Mapping[str, np.ndarray], out: Path) -> Path:
    """A copy of the FP32 ONNX with some initializers replaced (same names, shapes and dtype)."""
    import onnx
    from onnx import numpy_helper

    model = load_graph(fp32_path)
    inits = {i.name: i for i in model.graph.initializer}
    unknown = sorted(set(weights) - set(inits))
    if unknown:
        raise ConfigError(f"The refined weights name no initializer of {Path(fp32_path).name}: {unknown[:3]}.")
    for name, value in weights.items():
        old = numpy_helper.to_array(inits[name])
        if value.shape != old.shape:
            raise ConfigError(f"The refined {name} has shape {value.shape}, the model's {old.shape}.")
        inits[name].CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=old.dtype), name))
    onnx.save(model, str(out))
    return out


def _mark_int8(path: Path) -> None:
    """Say in the file's own metadata that it is int8 now (exports store their facts in metadata_props)."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "precision":
            prop.value = json.dumps("int8")
            onnx.save(model, str(path))
            return


def describe_qdq(model) -> dict[str, Any]:
    """What a Q/DQ ONNX quantizes, layer by layer: the activation's scale, zero-point and type (found above
    max-pooling and reshapes too, where the pooled form puts it), the weight's type, per-channel axis and number
    of scales, and how the bias is stored ("float", "int32" or none).

    Returns:
        ``{"layers": [...], "quantized": [labels], "float": [labels], "op_counts": {...}}``.
    """
    from onnx import numpy_helper

    if isinstance(model, (str, Path)):
        model = load_graph(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consts = dict(inits)
    for n in model.graph.node:  # Constant nodes hold scales in some exports
        if n.op_type == "Constant" and n.attribute:
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    def dq_facts(tensor: str, through: Iterable[str] = ()) -> dict[str, Any] | None:
        node = pooled_dq(producer, tensor, through)
        if node is None:
            return None
        scale = consts.get(node.input[1])
        zero = consts.get(node.input[2]) if len(node.input) > 2 else None
        source = consts.get(node.input[0])
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        return {
            "dtype": str(zero.dtype if zero is not None else (source.dtype if source is not None else "?")),
            "scale": scale.tolist() if scale is not None and scale.size == 1 else None,
            "num_scales": int(scale.size) if scale is not None else 0,
            "zero_point_max_abs": int(np.abs(zero.astype(np.int64)).max()) if zero is not None else 0,
            "axis": axis if scale is not None and scale.size > 1 else None,
            "constant_input": source is not None,
        }

    layers = []
    for layer in quantizable_layers(model_without_qdq(model)):
        node = next((n for n in model.graph.node if n.name == layer.node), None)
        if node is None:
            continue
        bias = None
        if len(node.input) > 2 and node.input[2]:
            b = dq_facts(node.input[2])
            bias = b["dtype"] if b else "float"
        layers.append(
            {
                "node": layer.node,
                "label": layer.label,
                "op_type": layer.op_type,
                "activation": dq_facts(node.input[0], LIFT_THROUGH),  # the pooled form's pair sits higher
                "weight": dq_facts(node.input[1]),
                "bias": bias,
                "output_quantized": any(
                    n.op_type == "QuantizeLinear" and node.output[0] in n.input for n in model.graph.node
                ),
            }
        )
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return {
        "layers": layers,
        "quantized": [x["label"] for x in layers if x["activation"] and x["weight"]],
        "float": [x["label"] for x in layers if not (x["activation"] and x["weight"])],
        "op_counts": counts,
    }


def model_without_qdq(model):
    """A view of a Q/DQ graph with each DequantizeLinear's output renamed back to its float source, so the
    weighted layers (and their labels) are found as in the FP32 graph."""
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    producer = {o: n for n in clone.graph.node for o in n.output}
    inits = {i.name for i in clone.graph.initializer}
    for n in clone.graph.node:
        if n.op_type in WEIGHTED_OPS and len(n.input) > 1:
            dq = producer.get(n.input[1])
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
                n.input[1] = dq.input[0]
    return clone
