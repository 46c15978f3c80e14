from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.vocab import CONCRETE_METHODS as ALL_METHODS
from calib.methods import CalibrationMethod, Ranges, compute_ranges
from calib.request import RangeSettings, concrete_method


def small_relu_net(path) -> list[str]:
    """Conv -> ReLU -> Conv -> ReLU -> Flatten -> Gemm on 8x8 images; returns the Conv/Gemm input tensors."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b2"),
        numpy_helper.from_array(rng.standard_normal((5, 64)).astype(np.float32) * 0.2, "fw"),
        numpy_helper.from_array(np.zeros(5, np.float32), "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return ["images", "r1", "f"]


class RandomReader:
    def __init__(self, batches: int = 6) -> None:
        self.batches, self.i = batches, 0

    def get_next(self):
        if self.i >= self.batches:
            return None
        self.i += 1
        x = np.random.default_rng(self.i).standard_normal((16, 3, 8, 8)).astype(np.float32)
        return {"images": x * 3 if self.i == 1 else x}  # the extremes are in the first batch

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return self.batches


def test_method_enum_options_and_factory_refuse_unknowns():
    assert CalibrationMethod.parse("Entropy") is CalibrationMethod.ENTROPY
    with pytest.raises(ConfigError, match="Unknown calibration method 'kl'"):
        CalibrationMethod.parse("kl")
    with pytest.raises(ConfigError, match="Unknown calibration method"):
        concrete_method("mse")
    with pytest.raises(ConfigError, match="'auto' only chooses"):
        RangeSettings().key("auto")
    with pytest.raises(ConfigError, match="percentile"):
        RangeSettings(percentile=120)
    with pytest.raises(ConfigError, match="twice"):
        RangeSettings(num_bins=256, num_quantized_bins=255)
    opts = RangeSettings()
    with pytest.raises(AttributeError):
        opts.percentile = 99.0  # frozen
    assert opts.key("minmax") == {"method": "minmax"}
    assert opts.key("percentile") == {"method": "percentile", "percentile": 99.99, "num_bins": 4096}
    assert opts.key("entropy")["num_quantized_bins"] == 255


def test_minmax_merges_every_batch(tmp_path):
    model = tmp_path / "small.onnx"
    tensors = small_relu_net(model)
    ranges = compute_ranges(model, RandomReader(), "minmax", tensors, RangeSettings(batch_size=16))
    assert set(ranges.values) == set(tensors)
    # The input's true extremes over all six batches (fed four at a time), not just the last chunk's.
    r = RandomReader()
    xs = np.concatenate([feed["images"] for feed in iter(r.get_next, None)])
    lo, hi = ranges.values["images"]
    assert xs.shape[0] == 96
    assert lo == pytest.approx(float(xs.min())) and hi == pytest.approx(float(xs.max()))
    assert ranges.values["r1"][0] == 0.0  # post-ReLU


def test_entropy_really_searches_and_the_zero_bin_spike_is_flattened(tmp_path):
    model = tmp_path / "small.onnx"
    tensors = small_relu_net(model)
    minmax = compute_ranges(model, RandomReader(), "minmax", tensors)
    base = RangeSettings(num_bins=1024, num_quantized_bins=255)
    entropy = compute_ranges(model, RandomReader(), "entropy", tensors, base)
    raw = compute_ranges(model, RandomReader(), "entropy", tensors, replace(base, flatten_zero_bin=False))
    ratio = entropy.ratio_to(minmax)
    raw_ratio = raw.ratio_to(minmax)
    # Entropy clips: every range inside MinMax's, and not all of them equal to it (the FINDINGS trap).
    assert all(r <= 1.0 + 1e-6 for r in ratio.values()) and min(ratio.values()) < 0.99
    # Without flattening, the ReLU zeros drive the KL search to its narrowest window: 128 of 512 bins per sign.
    assert raw_ratio["r1"] == pytest.approx(0.25, abs=0.01)
    assert ratio["r1"] > raw_ratio["r1"] + 0.1


def test_percentile_clips_less_than_minmax(tmp_path):
    model = tmp_path / "small.onnx"
    tensors = small_relu_net(model)
    minmax = compute_ranges(model, RandomReader(), "minmax", tensors)
    p = compute_ranges(model, RandomReader(), "percentile", tensors, RangeSettings(percentile=99.0))
    assert p.method is CalibrationMethod.PERCENTILE
    assert all(0.2 < r < 1.0 for r in p.ratio_to(minmax).values())


def test_ranges_round_trip_and_feed_onnxruntime():
    r = Ranges(CalibrationMethod.ENTROPY, {"a": (-1.0, 2.0), "b": (0.0, 0.5)})
    again = Ranges.from_dict(r.to_dict())
    assert again == r and again.amax() == {"a": 2.0, "b": 0.5}
    td = r.to_tensors_data()
    assert float(td["a"].range_value[1]) == 2.0


def test_compute_ranges_refuses_unknown_tensors(tmp_path):
    model = tmp_path / "small.onnx"
    small_relu_net(model)
    with pytest.raises(ConfigError, match="no float tensors named"):
        compute_ranges(model, RandomReader(2), "minmax", ["images", "nope"])


class RaggedReader(RandomReader):
    """``images`` images in batches of 16: the last batch is short unless 16 divides the count."""

    def __init__(self, images: int) -> None:
        super().__init__(-(-images // 16))
        self.images = images

    def get_next(self):
        batch = super().get_next()
        if batch is not None and self.i == self.batches and self.images % 16:
            batch = {"images": batch["images"][: self.images % 16]}
        return batch


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("images", [1, 33, 47, 450])
def test_every_method_calibrates_image_counts_that_leave_a_short_last_batch(tmp_path, method, images):
    # onnxruntime's histogram collector stacks one collect call's batches; a short last batch beside full ones
    # made it fail with "inhomogeneous shape" (entropy and percentile) whenever 16 did not divide the count.
    tensors = small_relu_net(tmp_path / "m.onnx")
    ranges = compute_ranges(tmp_path / "m.onnx", RaggedReader(images), method, tensors)
    assert set(ranges.values) == set(tensors)
    assert all(hi > lo for lo, hi in ranges.values.values())
    if method is CalibrationMethod.MINMAX:  # every batch, the short one included, was seen
        reader = RaggedReader(images)
        seen = np.concatenate([b["images"] for b in iter(reader.get_next, None)])
        assert len(seen) == images
        assert ranges.values["images"] == pytest.approx((seen.min(), seen.max()))
