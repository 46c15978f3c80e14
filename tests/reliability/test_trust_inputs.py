"""Faults in what the user gives us, part 1: the images themselves and how they are counted.

Symlink loops and second ways into a folder, FIFOs and devices named ``*.JPEG``, every image mode Pillow opens,
decompression bombs, skipped files in subsets, and a finished schedule resumed with more epochs. Each case asserts
exact counts (every image once), one sentence and exit code 1 where something is refused, no traceback, no hang,
and nothing of the user's changed.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from trust_helpers import CLASSES, PER_CLASS, cli, copy_data, one_sentence, outcome, snapshot
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.data import ImageFolderDataset
from alexnet_deploy.core.decode import MAX_IMAGE_PIXELS, load_rgb, to_rgb
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.manifest import load_manifest

runner = CliRunner()
N = CLASSES * PER_CLASS


def _verify_json(onnx: Path, data: Path, *extra: str) -> dict:
    result = runner.invoke(app, ["verify", str(onnx), "--data", str(data), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _classes(data: Path) -> list[Path]:
    return sorted(p for p in (data / "val").iterdir() if p.is_dir())


# -- 3. every image counted once -------------------------------------------------------------------------------
def test_symlink_loops_and_second_ways_in_count_each_image_once_in_verify(small_onnx, small_data, tmp_path):
    clean = _verify_json(small_onnx, small_data)
    data = copy_data(small_data, tmp_path / "d")
    c0, c1, c2, c3 = _classes(data)
    os.symlink(".", c0 / "loop")  # the case: ln -s . val/n01443537/loop
    os.symlink("..", c1 / "up")  # back to the root: every class again
    os.symlink(f"../{c0.name}", c2 / "sibling")  # into another class's folder
    os.mkdir(c3 / "nested")
    os.symlink("../..", c3 / "nested" / "deep")  # a loop two levels down
    first = sorted(c3.glob("*.JPEG"))[0]
    os.symlink(f"../{c3.name}/{first.name}", c2 / "same_photo.JPEG")  # one file reached twice
    before = snapshot(data)
    result = runner.invoke(app, ["verify", str(small_onnx), "--data", str(data), "--json"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num_images"] == N and report["unreadable_skipped"] == 0  # not ~40x, not 21
    assert report["top1"] == clean["top1"] and report["per_class_top1"] == clean["per_class_top1"]
    for link in (c0 / "loop", c1 / "up", c2 / "sibling", c3 / "nested" / "deep"):
        assert f"Not following the folder link {link}: it leads to" in result.stderr
    assert "1 file(s) were reached a second time through links and counted once" in result.stderr
    assert snapshot(data) == before


def test_training_and_calibration_read_the_same_single_copy(small_onnx, small_data, tmp_path):
    from calib.reader import load_calibration_data
    from calib.request import CalibrationRequest
    from train.data import MemoryImageSet

    data = copy_data(small_data, tmp_path / "d")
    c0, c1, *_ = _classes(data)
    os.symlink(".", c0 / "loop")
    os.symlink("..", c1 / "up")
    for check in (True, False):  # the folder loader checks files; the memory loader decodes them itself
        ds = ImageFolderDataset(data / "val", check_files=check)
        assert len(ds.samples) == N and len({p for p, _ in ds.samples}) == N and ds.skipped == []
        assert sorted(Path(p).name for p in ds.links_not_followed) == ["loop", "up"]
    assert len(MemoryImageSet.from_folder(data / "val")) == N
    cal = load_calibration_data(
        CalibrationRequest(data=data / "val", num_images=1000, holdout_images=0), _pre(small_onnx)
    )
    assert len(cal.calibration) == N and cal.describe()["num_images"] == N


def _pre(onnx: Path):
    from alexnet_deploy.core.data import Preprocessing

    return Preprocessing.from_dict(load_manifest(onnx).preprocessing)


def test_a_class_folder_that_is_another_class_is_read_once_and_named(small_data, tmp_path, caplog):
    data = copy_data(small_data, tmp_path / "d")
    c0 = _classes(data)[0]
    os.symlink(c0.name, data / "val" / "zz-alias")  # a fifth class folder that is the first one
    ds = ImageFolderDataset(data / "val")
    assert len(ds.samples) == N and ds.empty_classes == ["zz-alias"]
    assert f"leads to {c0}" in caplog.text


# -- 4. FIFOs, devices and image modes ---------------------------------------------------------------------------
@pytest.mark.slow  # two child processes, so that a hang is a failed test, not a stuck suite
def test_a_fifo_named_jpeg_is_skipped_unopened_and_predict_on_it_does_not_hang(small_onnx, small_data, tmp_path):
    data = copy_data(small_data, tmp_path / "d")
    fifo = _classes(data)[1] / "waiting.JPEG"
    os.mkfifo(fifo)
    result = cli("verify", str(small_onnx), "--data", str(data), "--json", "--threads", "1", timeout=240)
    code, out, err = outcome(result)
    assert code == 0, err
    report = json.loads(out)
    assert report["num_images"] == N and report["unreadable_skipped"] == 1
    assert report["unreadable_examples"] == ["waiting.JPEG"] and "is a FIFO, not an image file" in err
    photo = sorted(_classes(data)[0].glob("*.JPEG"))[0]
    code, out, err = outcome(cli("predict", str(small_onnx), str(fifo), "/dev/zero", str(photo), timeout=120))
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and "Traceback" not in err and len(errors) == 2, err  # one sentence per refused file
    assert "waiting.JPEG is a FIFO, not an image file; only regular files are read." in errors[0]
    assert "/dev/zero is a character device, not an image file" in errors[1]
    assert photo.name in out  # the readable photo is still classified


def _grey_photo(small_data: Path) -> np.ndarray:
    photo = sorted(_classes(small_data)[0].glob("*.JPEG"))[0]
    return np.asarray(Image.open(photo).convert("L"))


def test_a_16_bit_grey_png_is_classified_as_its_8_bit_twin_not_as_white(small_onnx, small_data, tmp_path):
    grey = _grey_photo(small_data)
    Image.fromarray(grey, "L").save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")  # the same picture in 16 bits
    Image.fromarray(np.full_like(grey, 255), "L").save(tmp_path / "white.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    paths = [str(tmp_path / n) for n in ("grey8.png", "grey16.png", "white.png")]
    result = runner.invoke(app, ["predict", str(small_onnx), *paths, "--json", "--top-k", str(CLASSES)])
    assert result.exit_code == 0, result.output
    g8, g16, white = (r["top"] for r in json.loads(result.stdout))
    assert g16 == g8 and g16 != white


def _modes(tmp_path: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Files of the modes Pillow opens, each with the RGB it must become."""
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 8 x 64
    rgb = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 77)], axis=-1)
    out: dict[str, tuple[Path, np.ndarray]] = {}

    def add(name: str, img: Image.Image, expected: np.ndarray, **save) -> None:
        img.save(tmp_path / name, **save)
        out[name] = (tmp_path / name, expected)

    grey3 = np.repeat(ramp[..., None], 3, axis=-1)
    add("i16.png", Image.fromarray(ramp.astype(np.uint16) * 257), grey3)
    add("i16be.tif", Image.fromarray((ramp.astype(np.uint16) * 257).astype(">u2")), grey3)
    add("i32-16bit.pgm", Image.fromarray(ramp.astype(np.uint16) * 257), grey3)  # Pillow opens it as mode I
    add("one-bit.png", Image.fromarray(ramp >= 128), np.where(grey3 >= 128, 255, 0).astype(np.uint8))
    grey, clear, opaque = (Image.fromarray(a) for a in (ramp, np.zeros_like(ramp), np.full_like(ramp, 255)))
    add("la-clear.png", Image.merge("LA", (grey, clear)), np.full_like(grey3, 255))  # the background shows
    add("la-opaque.png", Image.merge("LA", (grey, opaque)), grey3)
    half = np.dstack([rgb, np.full_like(ramp, 128)])  # RGBA half transparent over white
    expected_half = np.round(rgb * (128 / 255) + 255 * (127 / 255)).astype(np.uint8)
    add("rgba-half.png", Image.fromarray(half), expected_half)
    palette = Image.fromarray((ramp >= 128).astype(np.uint8)).convert("P")  # indices 0 and 1
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    add("p-transparent.png", palette, np.where(ramp[..., None] >= 128, 255, [10, 20, 30]).astype(np.uint8),
        transparency=1)  # fmt: skip
    cmyk = Image.fromarray(rgb).convert("CMYK")
    add("cmyk.jpg", cmyk, None, quality=95)  # Pillow's conversion, as documented
    return out


def test_every_mode_pillow_opens_is_converted_faithfully(tmp_path):
    for name, (path, expected) in _modes(tmp_path).items():
        got = np.asarray(load_rgb(path))
        assert got.shape == (8, 64, 3) and got.dtype == np.uint8, name
        if expected is None:
            expected = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_allclose(got.astype(int), expected.astype(int), atol=1, err_msg=name)
    assert np.asarray(to_rgb(Image.new("I;16", (4, 4), 65535))).min() == 255  # full range -> full range


def test_modes_without_a_faithful_conversion_are_refused_with_a_sentence(small_onnx, small_data, tmp_path):
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(tmp_path / "float.tif")
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "int32.tif")
    with pytest.raises(DataError, match="32-bit floating-point pixels"):
        load_rgb(tmp_path / "float.tif")
    with pytest.raises(DataError, match="outside the 16-bit range 0..65535"):
        load_rgb(tmp_path / "int32.tif")
    line = one_sentence(runner.invoke(app, ["predict", str(small_onnx), str(tmp_path / "float.tif")]), "float.tif")
    assert "mode F" in line and "convert it to an 8-bit image first" in line
    data = copy_data(small_data, tmp_path / "d")  # in a folder: left out and counted, not decoded as garbage
    (tmp_path / "float.tif").rename(_classes(data)[0] / "float.tif")
    report = _verify_json(small_onnx, data)
    assert report["num_images"] == N and report["unreadable_skipped"] == 1


def _bomb(path: Path, side: int = 20000) -> Path:
    """A real, complete 20000 x 20000 1-bit PNG (400 megapixels) of a few kB: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row, squeeze = bytes(1 + (side + 7) // 8), zlib.compressobj(9)
    body = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_a_20000_pixel_square_image_is_one_sentence_that_says_the_limit(small_onnx, small_data, tmp_path):
    bomb = _bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000 and 20000 * 20000 > 2 * MAX_IMAGE_PIXELS
    line = one_sentence(runner.invoke(app, ["predict", str(small_onnx), str(bomb)]), "bomb.png", "too large")
    assert f"the limit is {MAX_IMAGE_PIXELS:,} pixels" in line
    Image.new("1", (9500, 9500)).save(tmp_path / "big.png")  # just over the limit, under Pillow's own error
    with pytest.raises(DataError, match=r"9500x9500 \(90\.2 megapixels\); the limit is 89,478,485"):
        load_rgb(tmp_path / "big.png")
    data = copy_data(small_data, tmp_path / "d")
    bomb.rename(_classes(data)[2] / "bomb.png")
    report = _verify_json(small_onnx, data)
    assert report["num_images"] == N and report["unreadable_skipped"] == 1


# -- 14. skipped files counted in every subset -------------------------------------------------------------------
def test_a_subset_counts_every_skipped_file_it_met(small_onnx, small_data, tmp_path):
    from image_faults import garble

    data = copy_data(small_data, tmp_path / "d")
    classes = _classes(data)
    bad = [garble(sorted(c.glob("*.JPEG"))[0]) for c in classes[:3]]
    (classes[3] / "notes.txt").write_text("not an image")
    report = _verify_json(small_onnx, data, "--limit", "5")
    assert report["num_images"] == 5 and report["unreadable_skipped"] == 4  # 3 garbled + notes.txt, not 1
    table = runner.invoke(app, ["verify", str(small_onnx), "--data", str(data), "--limit", "5"], env={"COLUMNS": "200"})
    assert "5 images evaluated; 4 unreadable skipped" in table.stdout
    out = tmp_path / "q.onnx"
    result = runner.invoke(app, ["calibrate", str(small_onnx), "--calib-data", str(data / "val"), "-o", str(out),
                                 "--num-images", "4", "--holdout-images", "4", "--method", "minmax"])  # fmt: skip
    assert result.exit_code == 0, result.output
    described = load_manifest(out).calibration["data"]
    assert described["num_images"] == 4 and described["unreadable_skipped"] == 4
    assert described["unreadable_examples"] == [p.name for p in bad]  # the first three, in folder order
    assert "4 unreadable calibration image(s) skipped" in result.stdout
    engine = tmp_path / "e.onnx"  # the build's evaluation of a subset records every skipped file in its sidecar
    gate = ["--max-top1-drop", "100", "--max-top5-drop", "100"]  # random weights: the count is what is tested
    build = ["build", str(small_onnx), "--fp16", "--backend", "onnxruntime", "--eval-data", str(data), "--eval-limit",
             "5", "-o", str(engine), *gate, "--probe-batch", "1"]  # fmt: skip
    result = runner.invoke(app, build)
    assert result.exit_code == 0, result.output
    accuracy = load_manifest(engine).accuracy
    assert accuracy["num_images"] == 5 and accuracy["unreadable_skipped"] == 4


# -- 13. a finished schedule resumed with more epochs ----------------------------------------------------------
def test_resuming_a_finished_cosine_schedule_with_more_epochs_trains_on(small_data, tmp_path):
    from train.config import resolve_config
    from train.loop import fit

    root = tmp_path / "d"
    root.mkdir()
    os.symlink(small_data / "val", root / "train")  # train on the 20 photos, validate on them too
    os.symlink(small_data / "val", root / "val")

    def cfg(epochs: int):
        return resolve_config("demo", overrides={
            "data": str(root), "output": str(tmp_path / "run"), "width": 0.125, "image_size": 64, "resize": 72,
            "batch_size": 10, "epochs": epochs, "max_minutes": 0, "time_schedule": False, "threads": 1,
            "warmup_epochs": 0.5, "loader": "memory",
        })  # fmt: skip

    first = fit(cfg(2))
    assert first.history[-1]["lr"] == 0  # the schedule is finished: its final lr
    before = {k: v.clone() for k, v in torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"].items()}
    messages: list[str] = []

    from train.loop import Hooks

    class Say(Hooks):
        def on_message(self, text: str) -> None:
            messages.append(text)

    more = fit(cfg(4), resume=tmp_path / "run" / "last.pt", hooks=Say())
    assert [r["epoch"] for r in more.history] == [1, 2, 3, 4] and more.epochs_trained == 2
    assert more.history[2]["lr"] > 0  # epoch 3 trains at the longer schedule's lr, not at the final lr of 0
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the weights moved
    assert any("re-planned over this run's" in m for m in messages), messages
