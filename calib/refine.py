"""Weight refinement beyond plain post-training quantization, layer by layer on the calibration images:

* **bias correction**: the mean output shift that quantizing a layer (its weights, and everything quantized
  before it) introduces, per output channel, measured on the calibration images and folded into the layer's
  float bias (the empirical bias correction of Nagel et al., 2019; biases stay float in the tensorrt and pooled
  forms, so the correction is exact);
* **learned rounding** (AdaRound, Nagel et al., 2020): instead of rounding each weight to the nearest int8 step,
  learn per weight whether to round down or up, so that the layer's output (after its ReLU), computed from the
  *quantized* model's input, matches the FP32 model's. Rectified-sigmoid rounding variables, the annealed
  regulariser that pushes them to 0 or 1, Adam, a few hundred iterations a layer, in torch on the CPU. A layer
  keeps its learned rounding only where it reconstructs the FP32 output better than rounding to nearest.

The layers are refined in graph order, each from the inputs the already refined layers before it give, so a
layer also compensates what the quantization upstream did to its input. The result is a set of FP32
initializers: weights snapped onto the int8 grid of their own per-channel scale (each channel's largest |w| is
kept, so the scale :func:`calib.qdq.write_qdq` recomputes is the same and its rounding reproduces the learned
integers exactly), and corrected biases. ``write_qdq(..., weights=refined.weights)`` writes the Q/DQ ONNX.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.files import scratch_dir
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.core.vocab import AUTO_REFINEMENTS, Refinement  # noqa: F401 - AUTO_REFINEMENTS re-exported
from calib.methods import Ranges
from calib.qdq import Layer, QdqForm, load_graph, quantizable_layers, symmetric_scale, write_qdq

log = logging.getLogger(__name__)

_ZETA, _GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (AdaRound's values)
QMAX = 127  # symmetric int8 weights: -127..127


@dataclass(frozen=True)
class RefineOptions:
    """Settings of the learned rounding (bias correction has none).

    Attributes:
        iterations: Adam steps per layer.
        batch_size: images per step.
        max_images: at most this many calibration images are used (their activations are held in memory).
        max_weights: layers with more weights keep nearest rounding: learning costs a few passes over every
            weight per step, and at 8 bits a layer with a wide fan-in (AlexNet's FC6/FC7) gains ~1-3% in output
            error where a convolution gains 5-30% (measured on the test model), so it pays only below this size.
        samples_per_input: a layer learns its rounding only with at least this many samples (images x output
            positions) per input of one output (its fan-in): an FC layer sees one sample per image, and 512
            images for a fan-in of 1,024 let the rounding fit those images instead of the layer (measured: the
            held-out agreement fell).
        max_step_macs: a learning step takes fewer images than ``batch_size`` where one image costs more than
            this share of multiply-adds (a width-1.0 conv2 at 224 px: one image a step), so that a step stays
            ~10-20 ms on one core.
        max_bytes: a layer's input and output activations are kept for at most as many images as fit in this.
        significance: bias correction moves a channel's bias only where its mean shift over the images is at
            least this many standard errors (of the per-image means) from zero: a shift estimated from few
            samples (FC layers: one per image) is mostly noise, and correcting by noise moved logits.
        reg_weight: weight of the regulariser that drives each rounding variable to 0 or 1.
        beta: the regulariser's exponent, annealed from the first to the second value.
        warmup: the fraction of the steps run without the regulariser.
        lr: Adam's learning rate on the rounding variables.
        seed: the order of the image batches.
        threads: torch's threads while learning. One: the steps are many small operations, and on a shared
            2-core machine two threads made them 10x slower (each parallel region waits for a descheduled thread).
    """

    iterations: int = 300
    batch_size: int = 32
    max_images: int = 512
    max_weights: int = 1_000_000
    samples_per_input: int = 8
    significance: float = 3.0
    max_step_macs: int = 200_000_000
    max_bytes: int = 512 << 20
    threads: int = 1
    reg_weight: float = 0.01
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    lr: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        if min(
            self.iterations,
            self.batch_size,
            self.max_images,
            self.max_weights,
            self.threads,
            self.max_step_macs,
            self.max_bytes,
        ) < 1 or (self.samples_per_input < 0 or self.significance < 0):
            raise ConfigError("The learned rounding needs positive iterations, batch, images, weights and threads.")
        if not 0 <= self.warmup < 1 or self.reg_weight < 0 or self.lr <= 0:
            raise ConfigError("The learned rounding's warm-up must be in [0, 1), its weights and rate positive.")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Refined:
    """A refinement's result: FP32 initializers to quantize instead of the model's, and what each layer gained.

    Attributes:
        kind: what was done.
        weights: ``{initializer name: array}`` (weights on their int8 grid, corrected biases).
        integers: ``{weight name: int8 array}`` the learned rounding chose (what the Q/DQ file must hold).
        layers: per layer: label, output MSE against FP32 with nearest rounding and after refinement, the
            fraction of weights rounded the other way, and the largest bias shift removed.
        seconds: wall time.
    """

    kind: Refinement
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    integers: dict[str, np.ndarray] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    options: RefineOptions | None = None
    excluded: tuple[str, ...] = ()  # the nodes left in float when it was computed
    _again: Any = field(default=None, repr=False)  # computes it again for other excluded nodes

    def for_excluded(self, nodes) -> Refined:
        """This refinement for a Q/DQ file that leaves ``nodes`` in float: itself when those are the nodes it was
        computed with, else computed again without them. Every layer's weights were refined from the inputs the
        quantized layers before it give; the build's fallback leaves the most damaging layers in float, and the
        layers after them must not keep compensating a quantization that is gone."""
        nodes = tuple(sorted(set(nodes)))
        if nodes == self.excluded or self.kind is Refinement.NONE or self._again is None:
            return self
        return self._again(exclude=nodes)

    def describe(self) -> dict[str, Any]:
        """The sidecar's record (no arrays)."""
        out: dict[str, Any] = {"kind": self.kind.value, "seconds": round(self.seconds, 2), "layers": self.layers}
        if self.options is not None and self.kind in (Refinement.ADAROUND, Refinement.ADAROUND_BIAS):
            out["adaround"] = self.options.to_dict()
        return out


def refine(
    fp32_path: str | Path,
    ranges: Ranges,
    form: QdqForm,
    images: PreparedImages,
    input_name: str,
    kind: Refinement | str,
    options: RefineOptions | None = None,
    *,
    exclude: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
) -> Refined:
    """Refine the weights of every quantized layer of an FP32 ONNX (see the module docstring).

    Args:
        fp32_path: the FP32 ONNX.
        ranges / form: the calibration the Q/DQ file will be written with.
        images: the calibration images (at most ``options.max_images`` are used).
        input_name: the model's image input.
        kind: ``bias``, ``adaround`` or ``adaround+bias`` (``none`` returns no change).
        exclude: nodes left in float (not refined).

    Raises:
        ConfigError: an unknown or ``auto`` kind, or no images.
    """
    kind = Refinement.parse(kind)
    if kind is Refinement.AUTO:
        raise ConfigError("A refinement does one thing; 'auto' only chooses among them.")
    options = options or RefineOptions()
    start = time.perf_counter()
    again = functools.partial(refine, fp32_path, ranges, form, images, input_name, kind, options, progress=progress)
    result = Refined(kind, options=options, excluded=tuple(sorted(set(exclude))), _again=again)
    if kind is Refinement.NONE:
        return result
    if len(images) == 0:
        raise ConfigError("Refining the weights needs calibration images.")
    learn = kind in (Refinement.ADAROUND, Refinement.ADAROUND_BIAS)
    correct = kind in (Refinement.BIAS, Refinement.ADAROUND_BIAS)
    model = load_graph(fp32_path)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    n_images = min(len(images), options.max_images)
    pick = np.linspace(0, len(images) - 1, n_images).round().astype(int)
    x_all = np.concatenate([images.subset(pick[i : i + 64]).batch(0, 64) for i in range(0, n_images, 64)])
    layers = [la for la in quantizable_layers(model) if la.node not in exclude]
    followed_by_relu = _relu_after(model)
    with scratch_dir("alexnet-deploy-refine-") as work, _torch_threads(options.threads):
        for k, layer in enumerate(layers):
            spec = _LayerSpec.of(nodes[layer.node], layer, inits)
            if spec is None:
                result.layers.append({"label": layer.label, "skipped": "not a Conv or a Gemm with transB=1"})
                continue
            qdq = Path(work) / f"step{k}.onnx"
            write_qdq(fp32_path, qdq, ranges, form, exclude=exclude, weights=result.weights)
            probe = [
                _tensor_values(qdq, nodes[layer.node].input[0], layer.node, input_name, x_all[:1]),
                _tensor_values(Path(fp32_path), nodes[layer.node].output[0], None, input_name, x_all[:1]),
            ]
            fit = max(1, options.max_bytes // sum(a.nbytes for a in probe))
            x = x_all if fit >= len(x_all) else x_all[np.linspace(0, len(x_all) - 1, fit).round().astype(int)]
            x_q = _tensor_values(qdq, nodes[layer.node].input[0], layer.node, input_name, x)
            y_fp = _tensor_values(Path(fp32_path), nodes[layer.node].output[0], None, input_name, x)
            bias = result.weights.get(spec.bias) if spec.bias else None
            if bias is None and spec.bias:
                bias = spec.initial_bias
            record, weight, integers, bias = _refine_layer(
                spec, x_q, y_fp, bias, relu=layer.node in followed_by_relu, learn=learn, correct=correct,
                options=options,
            )  # fmt: skip
            record["label"] = layer.label
            result.layers.append(record)
            if learn:
                result.weights[spec.weight] = weight
                result.integers[spec.weight] = integers
            if correct and spec.bias:
                result.weights[spec.bias] = bias
            if progress:
                progress(f"Refining weights ({kind.value})", k + 1, len(layers))
    result.seconds = time.perf_counter() - start
    return result


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- one layer ----------------------------------------------------------------------------------------------------
@dataclass
class _LayerSpec:
    """A Conv or Gemm/MatMul as torch computes it, with its float weight laid out output-channel first."""

    op_type: str
    weight: str
    bias: str | None
    w: np.ndarray  # (out, ...) float32
    initial_bias: np.ndarray | None
    conv: dict[str, Any]
    transposed: bool  # the stored weight is (in, out) (MatMul)

    @classmethod
    def of(cls, node, layer: Layer, inits: Mapping) -> _LayerSpec | None:
        from onnx import helper, numpy_helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = numpy_helper.to_array(inits[layer.weight]).astype(np.float32)
        bias_name = node.input[2] if len(node.input) > 2 and node.input[2] in inits else None
        b = numpy_helper.to_array(inits[bias_name]).astype(np.float32) if bias_name else None
        conv: dict[str, Any] = {}
        if node.op_type == "Conv":
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or w.ndim != 4:
                return None
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[0] != pads[2] or pads[1] != pads[3]:
                return None
            conv = {
                "stride": tuple(attrs.get("strides", [1, 1])),
                "padding": (pads[0], pads[1]),
                "dilation": tuple(attrs.get("dilations", [1, 1])),
                "groups": int(attrs.get("group", 1)),
            }
            return cls("Conv", layer.weight, bias_name, w, b, conv, False)
        if node.op_type == "Gemm":
            if attrs.get("transB", 0) != 1 or attrs.get("transA", 0) != 0:
                return None
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                return None
            return cls("Gemm", layer.weight, bias_name, w, b, conv, False)
        if node.op_type == "MatMul" and w.ndim == 2:
            return cls("MatMul", layer.weight, None, w.T.copy(), None, conv, True)
        return None

    def forward(self, x, w, b):
        import torch.nn.functional as F

        if self.op_type == "Conv":
            return F.conv2d(x, w, b, **self.conv)
        return F.linear(x.flatten(1), w, b)

    def stored(self, w: np.ndarray) -> np.ndarray:
        """A weight in the file's layout."""
        return np.ascontiguousarray(w.T) if self.transposed else w


def _channel_scales(w: np.ndarray) -> np.ndarray:
    """Per output channel, the scale quantize_static computes (symmetric int8: max |w| / 127)."""
    flat = w.reshape(len(w), -1)
    return np.array([symmetric_scale((float(r.min()), float(r.max()))) for r in flat], dtype=np.float32)


def _mse(spec: _LayerSpec, weight: np.ndarray, bias, xq, target, act) -> float:
    """Mean squared error of the layer's (activated) output against ``target``."""
    import torch

    w = torch.from_numpy(weight.astype(np.float32))
    b = torch.from_numpy(bias) if bias is not None else None
    with torch.no_grad():
        err = [((act(spec.forward(xq[i : i + 64], w, b)) - target[i : i + 64]) ** 2).sum().item()
               for i in range(0, len(xq), 64)]  # fmt: skip
    return sum(err) / target.numel()


def _mean_shift(spec: _LayerSpec, weight: np.ndarray, bias, xq, y_fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the mean of (quantized layer's output - FP32 output) before the activation, and its
    standard error from the per-image means (positions within one image are not independent samples)."""
    import torch

    w = torch.from_numpy(weight.astype(np.float32))
    b = torch.from_numpy(bias) if bias is not None else None
    per_image = []
    with torch.no_grad():
        for i in range(0, len(xq), 64):
            diff = spec.forward(xq[i : i + 64], w, b) - torch.from_numpy(y_fp[i : i + 64])
            per_image.append(diff.reshape(diff.shape[0], diff.shape[1], -1).mean(2).double())
    d = torch.cat(per_image).numpy()
    stderr = d.std(0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.full(d.shape[1], np.inf)
    return d.mean(0).astype(np.float32), stderr.astype(np.float32)


def _refine_layer(spec: _LayerSpec, x_q, y_fp, bias, *, relu: bool, learn: bool, correct: bool, options):
    """One layer's integers (nearest or learned), its weight on that grid, and its (corrected) bias."""
    import torch

    torch.manual_seed(options.seed)
    w = spec.w
    shape = (-1,) + (1,) * (w.ndim - 1)
    s = _channel_scales(w).reshape(shape)
    safe = np.where(s > 0, s, 1.0).astype(np.float32)
    nearest = np.clip(np.round(w / safe), -QMAX, QMAX)
    # each channel's largest |w| keeps its value (+-127 steps): the scale write_qdq recomputes cannot change
    flat = np.abs(w.reshape(len(w), -1))
    peak = np.zeros(flat.shape, dtype=bool)
    peak[np.arange(len(w)), flat.argmax(1)] = True
    peak = peak.reshape(w.shape)
    amax = flat.max(1).reshape(shape)
    xq = torch.from_numpy(x_q)
    target = torch.from_numpy(y_fp).clamp_min(0) if relu else torch.from_numpy(y_fp)

    def act(t):
        return t.clamp_min(0) if relu else t

    record: dict[str, Any] = {"mse_nearest": _mse(spec, nearest * s, bias, xq, target, act)}
    q = nearest
    samples = y_fp.size // y_fp.shape[1]  # images x output positions
    fan_in = w[0].size
    if learn and w.size > options.max_weights:
        record["learned"] = f"no: {w.size:,} weights > {options.max_weights:,}"
    elif learn and samples < options.samples_per_input * fan_in:
        record["learned"] = f"no: {samples:,} samples for a fan-in of {fan_in:,}"
    elif learn:
        learned = np.where(peak, nearest, _adaround(spec, w / safe, s, xq, target, bias, act, options))
        mse = _mse(spec, learned * s, bias, xq, target, act)
        record["flipped"] = float((learned != nearest).mean())
        record["kept_learned"] = bool(mse < record["mse_nearest"])  # where it pays
        if record["kept_learned"]:
            q = learned
    if correct and bias is not None:
        shift, stderr = _mean_shift(spec, q * s, bias, xq, y_fp)
        significant = np.abs(shift) >= options.significance * stderr
        bias = (bias - np.where(significant, shift, 0)).astype(np.float32)
        record["bias_channels_corrected"] = f"{int(significant.sum())} of {len(shift)}"
        record["bias_shift_max"] = float(np.abs(shift[significant]).max()) if significant.any() else 0.0
    record["mse_refined"] = _mse(spec, q * s, bias, xq, target, act)
    weight = np.where(peak, w, np.clip(q * s, -amax, amax)).astype(np.float32)
    return record, spec.stored(weight), spec.stored(q.astype(np.int8)), bias


def _adaround(spec: _LayerSpec, w_over_s: np.ndarray, s: np.ndarray, xq, target, bias, act, options) -> np.ndarray:
    """The learned integers of one layer: floor(w/s) plus a rounding bit learned to reconstruct ``target``."""
    import torch

    floor = np.floor(w_over_s)
    frac = np.clip(w_over_s - floor, 1e-4, 1 - 1e-4)
    # h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1) starts at the fractional part (nearest rounding)
    v0 = -np.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1)
    v = torch.nn.Parameter(torch.from_numpy(v0.astype(np.float32)))
    base = torch.from_numpy(floor.astype(np.float32))
    scale = torch.from_numpy(s.astype(np.float32))
    b = torch.from_numpy(bias) if bias is not None else None
    opt = torch.optim.Adam([v], lr=options.lr)
    gen = torch.Generator().manual_seed(options.seed)
    n = len(xq)
    per_image = target[0].numel() * spec.w[0].size  # multiply-adds of one image
    batch = int(np.clip(options.max_step_macs // max(per_image, 1), 1, min(options.batch_size, n)))
    warm = int(options.warmup * options.iterations)
    for it in range(options.iterations):
        idx = torch.randint(0, n, (batch,), generator=gen)
        h = (torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA).clamp(0, 1)
        wq = (base + h).clamp(-QMAX, QMAX) * scale
        out = act(spec.forward(xq[idx], wq, b))
        # summed over channels, averaged over images and positions (BRECQ's normalisation): the regulariser's
        # weight then means the same for a conv with many output positions as for an FC layer
        loss = ((out - target[idx]) ** 2).sum(1).mean()
        if it >= warm:
            progress = (it - warm) / max(1, options.iterations - warm)
            beta = options.beta[1] + 0.5 * (options.beta[0] - options.beta[1]) * (1 + math.cos(math.pi * progress))
            loss = loss + options.reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        h = (torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA).clamp(0, 1)
    return np.clip(floor + (h.numpy() >= 0.5), -QMAX, QMAX)


# -- running the graphs -------------------------------------------------------------------------------------------
def _relu_after(model) -> set[str]:
    """The weighted nodes whose output only a Relu reads (their reconstruction is compared after the ReLU)."""
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    out = set()
    for n in model.graph.node:
        r = readers.get(n.output[0], []) if n.output else []
        if len(r) == 1 and r[0].op_type == "Relu":
            out.add(n.name)
    return out


def _tensor_values(path: Path, tensor: str, node_name: str | None, input_name: str, x: np.ndarray) -> np.ndarray:
    """The values of ``tensor`` on images ``x`` (ONNX Runtime; the tensor made an output of a copy of the graph).

    ``node_name``: in a Q/DQ graph, the tensor is the named node's first input (its name there may differ)."""
    import onnx
    import onnxruntime as ort

    from alexnet_deploy.backends.onnxruntime import session_options

    model = onnx.load(str(path))
    if node_name is not None:
        tensor = next(n.input[0] for n in model.graph.node if n.name == node_name)
    if tensor not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    # A graph exported for one batch size takes no other: its batches, the last one padded with its last image.
    dims = next((i.type.tensor_type.shape.dim for i in model.graph.input if i.name == input_name), [])
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    step, out = fixed or 64, []
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        if len(chunk) < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - len(chunk), axis=0)])
        out.append(session.run([tensor], {input_name: chunk})[0][: len(x) - i])
    return np.concatenate(out)
