"""Faults in what the user gives us, part 2: names, sidecars and numbers.

Names from files, folders and sidecars fed to every writer (config.pbtxt, labels.txt, report.md and .html, the
console, log lines, error lines), sidecars from a newer writer or with keys we do not know, and flags without
bounds. Each refusal is one sentence with exit code 1, no traceback, and nothing written or changed; each name
that is accepted comes out exactly as it is, escaped for its format, never as markup, fields or raw HTML.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from trust_helpers import CLASSES, copy_artifact, copy_data, need, one_sentence, snapshot
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.manifest import MANIFEST_VERSION, Manifest, load_manifest, sidecar_path
from alexnet_deploy.core.text import console_text, label_line, markdown_code, markdown_text, pbtxt_string

runner = CliRunner()
WIDE = {"COLUMNS": "1000"}  # no wrapping: each line of output is one line here


def _edit_sidecar(artifact: Path, change) -> Path:
    d = json.loads(sidecar_path(artifact).read_text())
    change(d)
    sidecar_path(artifact).write_text(json.dumps(d))
    return artifact


def _photo(small_data: Path) -> Path:
    return sorted(next(p for p in sorted((small_data / "val").iterdir()) if p.is_dir()).glob("*.JPEG"))[0]


# -- 5. names into config.pbtxt and labels.txt ------------------------------------------------------------------
def test_a_file_name_cannot_add_fields_to_config_pbtxt(small_onnx, tmp_path):
    pb = need("tritonclient.grpc.model_config_pb2", "tritonclient parses config.pbtxt")
    from google.protobuf import text_format

    evil = (
        "m\ninstance_group [ { count: 64 kind: KIND_CPU } ]\n"
        + 'parameters { key: "x" value { string_value: "y" } }\n.onnx'
    )
    artifact = copy_artifact(small_onnx, tmp_path / "in" / evil)
    result = runner.invoke(app, ["triton", str(artifact), "--repo", str(tmp_path / "repo"), "--kind", "cpu"], env=WIDE)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "repo" / "alexnet" / "config.pbtxt").read_text()
    config = text_format.Parse(text, pb.ModelConfig())
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, pb.ModelInstanceGroup.KIND_CPU)]
    assert not config.parameters and len(text.splitlines()) == len([x for x in text.splitlines() if x.strip()])
    comment = next(line for line in text.splitlines() if "instance_group [ {" in line)
    assert comment.startswith("# ") and "from m\\ninstance_group [ { count: 64" in comment  # shown, escaped, inert
    labels = (tmp_path / "repo" / "alexnet" / "labels.txt").read_text().splitlines()
    assert labels == load_manifest(small_onnx).classes


@pytest.mark.parametrize("field", ["model.name", "input.name", "classes"])
def test_a_sidecar_name_with_a_line_break_is_refused_by_triton_and_every_reader(small_onnx, small_data, tmp_path,
                                                                                field):  # fmt: skip
    artifact = copy_artifact(small_onnx, tmp_path / "m.onnx")
    injected = "alexnet\ninstance_group [ { count: 64 } ]"

    def change(d):
        if field == "classes":
            d["classes"][0] = injected
        else:
            d[field.split(".")[0]]["name"] = injected

    _edit_sidecar(artifact, change)
    before = snapshot(tmp_path)
    for args in (["triton", str(artifact), "--repo", str(tmp_path / "repo")],
                 ["predict", str(artifact), str(_photo(small_data))],
                 ["verify", str(artifact), "--data", str(small_data)]):  # fmt: skip
        line = one_sentence(runner.invoke(app, args), "is not valid", "\\n")
        assert "instance_group [ { count: 64 } ]" in line  # named, on one line
    assert snapshot(tmp_path) == before and not (tmp_path / "repo").exists()


def test_pbtxt_strings_round_trip_whatever_they_hold():
    pb = need("tritonclient.grpc.model_config_pb2", "tritonclient parses config.pbtxt")
    from google.protobuf import text_format

    for value in ['a"b', "back\\slash", "line\nbreak", "tab\tcr\r", "nul\x00esc\x1b", "é ü 猫 🐈", "rtl\u202eexe",
                  '"\n}\nparameters { key: "x" }', "# not a comment"]:  # fmt: skip
        parsed = text_format.Parse(f"name: {pbtxt_string(value)}", pb.ModelConfig())
        assert parsed.name == value and "\n" not in pbtxt_string(value)


def test_a_label_that_cannot_be_one_line_of_labels_txt_is_refused():
    with pytest.raises(ConfigError, match=r"holds \\n, so it cannot be one line of labels.txt"):
        label_line("tabby\ncat", "labels.txt", ConfigError)
    assert label_line("[/bold] <b> \\ é", "labels.txt") == "[/bold] <b> \\ é"  # other characters are fine


# -- 5. names on the console -----------------------------------------------------------------------------------
def test_predict_prints_file_and_class_names_as_they_are(small_onnx, small_data, tmp_path):
    classes = ["[/bold]", "[red]x[/red]", "cat [draft]", "<b>&amp;"]
    artifact = _edit_sidecar(copy_artifact(small_onnx, tmp_path / "m.onnx"), lambda d: d.update(classes=classes))
    draft = tmp_path / "cat [draft].png"
    shutil.copyfile(_photo(small_data), draft)
    result = runner.invoke(app, ["predict", str(artifact), str(draft), "--top-k", str(CLASSES)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"{draft}\n" in result.stdout  # not "cat .png"
    printed = {line.split("%", 1)[1].strip() for line in result.stdout.splitlines() if "%" in line}
    assert printed == set(classes)
    as_json = runner.invoke(app, ["predict", str(artifact), str(draft), "--json"])
    assert json.loads(as_json.stdout)[0]["path"] == str(draft)  # JSON carries the exact name
    named = copy_artifact(small_onnx, tmp_path / "m [bold] [red].onnx")  # two of one kind: labels name the files
    bench = ["bench", str(named), str(small_onnx), "--batch", "1", "--duration-s", "0.05", "--warmup-s", "0",
             "--rounds", "1", "--no-ceiling", "--threads", "1", "--baseline", "none"]  # fmt: skip
    table = runner.invoke(app, bench, env=WIDE)
    assert table.exit_code == 0, table.output
    assert "m [bold] [red].onnx" in table.stdout  # a table cell, printed as it is (not "m  .onnx")


def test_control_characters_in_names_are_shown_never_obeyed(small_onnx, small_data, tmp_path):
    evil = tmp_path / "evil\x1b[2J\x1b[31mred.png"
    shutil.copyfile(_photo(small_data), evil)
    result = runner.invoke(app, ["predict", str(small_onnx), str(evil), str(tmp_path / "no\nsuch.png")], env=WIDE)
    assert result.exit_code == 1 and "\x1b" not in result.stdout + result.stderr
    assert "evil\\x1b[2J\\x1b[31mred.png" in result.stdout
    as_json = runner.invoke(app, ["predict", str(small_onnx), str(evil), "--json"])
    assert json.loads(as_json.stdout)[0]["path"] == str(evil)  # exact in JSON, which escapes it itself
    line = one_sentence(result, "no\\nsuch.png")  # one line, although the name holds a line break
    assert line.startswith("error: Image not found:")
    data = copy_data(small_data, tmp_path / "set [v2] [/bold]")
    odd = next(p for p in sorted((data / "val").iterdir()) if p.is_dir()) / "read\nme.txt"
    odd.write_text("not an image")
    table = runner.invoke(app, ["verify", str(small_onnx), "--data", str(data)], env=WIDE)
    assert table.exit_code == 0, table.output
    assert "set [v2] [/bold]" in table.stdout  # the table title names the folder as it is
    warnings = [line for line in table.stderr.splitlines() if "read\\nme.txt" in line]
    assert warnings and not any(line.startswith("me.txt") for line in table.stderr.splitlines())


# -- 5. names into report.md and report.html ------------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def _tags(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


HOSTILE = ["`<img src=x onerror=alert(1)>`.JPEG", "<script>alert(1)</script>.png", "a|b|c.JPEG", "[x](javascript:y)",
           "**bold** _em_ # 1. - * <!-- c -->", "line\nbreak.JPEG"]  # fmt: skip


def test_report_names_stay_text_in_markdown_and_html(tmp_path):
    markdown_it = need("markdown_it", "markdown-it-py renders the Markdown the way viewers do")
    from alexnet_deploy.report import render_markdown, write_report

    figures = {"precision": "int8", "top1": 50.0, "top5": 90.0, "agreement": 99.0, "num_images": 7}
    skipped = {"unreadable_skipped": 3, "unreadable_examples": HOSTILE[:3]}
    timing = {"batch": 1, "median_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "throughput": 1.0, "ratio": 1.0}
    results = {
        "title": "report <b>",
        "data": {"path": "/data/`x`<script>", "classes": 4},
        "accuracy": [{"artifact": f"/m/{n}", "backend": n, **figures, **skipped} for n in HOSTILE],
        "bench": {"baseline": "x", "note": HOSTILE[4], "rows": [{"name": HOSTILE[2], **timing}]},
    }
    md = render_markdown(results)
    page = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    parsed = _tags(page)
    assert set(parsed.tags) <= {"h1", "h2", "p", "code", "strong", "table", "thead", "tbody", "tr", "th", "td"}
    assert parsed.tags.count("tr") == 1 + len(HOSTILE) + 2 and parsed.tags.count("td") == 6 * len(HOSTILE) + 7
    text = "".join(parsed.text)
    for name in HOSTILE:
        assert console_text(name) in text, name  # every name comes through as the text it is
    assert "report <b>" in text and "/data/`x`<script>" in text
    write_report(tmp_path, results)
    html_page = _tags((tmp_path / "report.html").read_text())
    assert "script" not in html_page.tags and "img" not in html_page.tags
    assert "<script>alert(1)</script>.png" in "".join(html_page.text)


def test_markdown_escapes_are_minimal_for_ordinary_names():
    assert markdown_text("alexnet_int8.onnx 56.52% (fp32)") == "alexnet_int8.onnx 56.52% (fp32)"
    assert markdown_code("a``b") == "```a``b```" and markdown_code("`x`") == "`` `x` ``"


# -- 11. sidecars from a newer writer, unknown keys ---------------------------------------------------------------
def _readers(artifact: Path, data: Path, out: Path) -> list[list[str]]:
    return [
        ["verify", str(artifact), "--data", str(data)],
        ["predict", str(artifact), str(_photo(data))],
        ["bench", str(artifact), "--batch", "1", "--duration-s", "0.1", "--no-ceiling"],
        ["calibrate", str(artifact), "--calib-data", str(data / "val"), "-o", str(out / "q.onnx")],
        ["build", str(artifact), "--calib-data", str(data / "val"), "--eval-data", str(data), "-o", str(out / "e")],
        ["triton", str(artifact), "--repo", str(out / "repo")],
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(manifest_version=99), ["written by a newer alexnet-deploy (manifest version 99)",
                                                   f"reads manifest version {MANIFEST_VERSION} and older"]),
        (lambda d: d["preprocessing"].update(channel_order="BGR"), ["preprocessing has 'channel_order'"]),
        (lambda d: d["preprocessing"].update(interpolation="bicubic"), ["preprocessing has 'interpolation'",
                                                                        "it knows resize, crop, mean, std"]),
    ],
    ids=["newer-version", "channel-order", "interpolation"],
)  # fmt: skip
def test_a_sidecar_we_would_misread_is_refused_by_every_reader(small_onnx, small_data, tmp_path, change, expected):
    artifact = _edit_sidecar(copy_artifact(small_onnx, tmp_path / "a" / "m.onnx"), change)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    for args in _readers(artifact, small_data, out):
        one_sentence(runner.invoke(app, args, env=WIDE), *expected)
    assert snapshot(tmp_path) == before  # nothing written, the sidecar untouched


def test_harmless_extra_keys_survive_a_round_trip_and_a_derivation(small_onnx, small_data, tmp_path):
    extra = {"license": "CC-BY-4.0", "provenance": {"by": "a newer tool", "steps": [1, 2]}}
    artifact = _edit_sidecar(copy_artifact(small_onnx, tmp_path / "m.onnx"), lambda d: d.update(extra))
    manifest = load_manifest(artifact)
    assert manifest.other_fields == extra and {k: manifest.to_dict()[k] for k in extra} == extra
    assert Manifest.from_dict(manifest.to_dict()).to_dict() == manifest.to_dict()
    out = tmp_path / "m.int8.onnx"
    result = runner.invoke(app, ["calibrate", str(artifact), "--calib-data", str(small_data / "val"), "-o", str(out),
                                 "--num-images", "8", "--holdout-images", "0", "--method", "minmax",
                                 "--refine", "none"])  # fmt: skip
    assert result.exit_code == 0, result.output
    derived = json.loads(sidecar_path(out).read_text())
    assert {k: derived[k] for k in extra} == extra and derived["manifest_version"] == MANIFEST_VERSION


# -- 10 and 12. numbers without bounds ---------------------------------------------------------------------------
def _refusals(onnx: Path, data: Path, out: Path) -> list[tuple[list[str], str]]:
    from alexnet_deploy.core.limits import BYTES_PER_INPUT_BYTE, available_memory

    available = available_memory()
    huge = int(available // (BYTES_PER_INPUT_BYTE * 4 * 3 * 64 * 64)) + 1 if available else 10**9
    photo = str(_photo(data))
    nan_config = out / "nan.json"
    nan_config.write_text('{"lr": NaN}')
    return [
        (["bench", str(onnx), "--batch", f"1,{huge}"], "the largest batch that fits is"),
        (["bench", str(onnx), "--threads", "1000"], "--threads 1000 is more than"),
        (["bench", str(onnx), "--threads", "-3"], "--threads must be at least 1, not -3"),
        (["bench", str(onnx), "--duration-s", "nan"], "--duration-s must be a finite number"),
        (["bench", str(onnx), "--warmup-s", "inf"], "--warmup-s must be a finite number"),
        (["bench", str(onnx), "--concurrency", "1000"], "--concurrency 1000 is more than"),
        (["verify", str(onnx), "--data", str(data), "--threads", "-3"], "--threads must be at least 1"),
        (["verify", str(onnx), "--data", str(data), "--reference", str(onnx), "--max-top1-drop", "-5"],
         "top-1 drop (--max-top1-drop) must be at least 0 and at most 100, not -5"),
        (["verify", str(onnx), "--data", str(data), "--max-top5-drop", "nan"], "must be a finite number"),
        (["predict", str(onnx), photo, "--threads", "1000"], "--threads 1000 is more than"),
        (["build", str(onnx), "--fp16", "--eval-data", str(data), "-o", str(out / "e.onnx"), "--threads", "1000"],
         "is more than"),
        (["triton", str(onnx), "--repo", str(out / "repo"), "--name", "../up"], "is not a safe name"),
        (["triton", str(onnx), "--repo", str(out / "repo"), "--name", "a\nb"], "'a\\nb' is not a safe name"),
        (["train", str(data), "--set", "width=nan", "--print-config"], "width must be a finite number"),
        (["train", str(data), "--set", "lr=inf", "--print-config"], "lr must be a finite number"),
        (["train", str(data), "--set", "threads=-3", "--print-config"], "threads must be at least 0"),
        (["train", str(data), "--set", "workers=1000", "--print-config"], "workers 1000 is more than"),
        (["train", str(data), "--width", "100", "--print-config"], "width 100 is more than 4"),
        (["train", str(data), "--config", str(nan_config), "--print-config"], "lr must be a finite number"),
        (["train", str(data), "-o", str(out / "run"), "--batch-size", str(huge), "--image-size", "64", "--width",
          "0.125", "--set", "loader=memory", "--workers", "0"], "would take about"),
        (["quickstart", "--out", str(out / "qs"), "--bench-seconds", "nan"], "--bench-seconds must be a finite"),
        (["quickstart", "--out", str(out / "qs"), "--threads", "-3"], "--threads must be at least 1"),
    ]  # fmt: skip


def test_flags_without_meaning_or_beyond_the_machine_are_one_sentence(small_onnx, small_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cases = _refusals(small_onnx, small_data, out)
    before = snapshot(tmp_path, small_onnx.parent)
    for args, expected in cases:
        one_sentence(runner.invoke(app, args, env=WIDE), expected)
    assert snapshot(tmp_path, small_onnx.parent) == before


def test_the_memory_bound_counts_what_is_allocated_not_what_is_asked(small_onnx, small_data, monkeypatch):
    result = runner.invoke(app, ["verify", str(small_onnx), "--data", str(small_data), "--batch-size", "100000"])
    assert result.exit_code == 0, result.output  # 20 images: the batch is 20, whatever the flag says
    from alexnet_deploy.core import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 200_000)  # a machine with 200 kB free: 8 images fit
    result = runner.invoke(app, ["verify", str(small_onnx), "--data", str(small_data)], env=WIDE)
    line = one_sentence(result, "20 decoded images of 3x64x64 would take 240 KiB", "(at most 8 fit)", "choose fewer")
    assert line.startswith(f"error: Decoding {small_data / 'val'}")


def test_the_library_refuses_what_the_cli_refuses():
    import math

    from alexnet_deploy.bench import BenchConfig
    from alexnet_deploy.core.accuracy import EvalRequest, Gate
    from alexnet_deploy.requests import ProbeRequest
    from train.config import TrainConfig

    for make in (lambda: EvalRequest(threads=1000), lambda: EvalRequest(threads=-3),
                 lambda: ProbeRequest(seconds=math.inf), lambda: EvalRequest(limit=0),
                 lambda: BenchConfig(duration_s=math.nan), lambda: Gate(-5, 0.5), lambda: Gate(0.5, math.nan),
                 lambda: TrainConfig(width=math.nan), lambda: TrainConfig(momentum=1.5),
                 lambda: TrainConfig(columns=3)):  # fmt: skip
        with pytest.raises(ConfigError):
            make()


def test_artifact_names_in_a_benchmark_plot_are_labels_not_mathtext(tmp_path):
    import numpy as np

    from alexnet_deploy.backends.base import Runner
    from alexnet_deploy.bench import BenchConfig, BenchTarget, run_benchmark, save_plot

    class Zeros(Runner):
        backend = "zeros"
        max_batch = None
        threads = None

        def activate_impl(self) -> None:
            pass

        def infer_impl(self, images: np.ndarray) -> np.ndarray:
            return np.zeros((len(images), 3), np.float32)

    names = ["m$\\frac$.onnx", "n$x^{$.onnx"]  # mathtext that fails to parse, had it been read as mathtext
    targets = [BenchTarget(n, Zeros(n), image_shape=(3, 8, 8)) for n in names]
    report = run_benchmark(targets, BenchConfig(batch_sizes=(1,), warmup_s=0.0, iterations=2, rounds=1),
                           baseline=names[0])  # fmt: skip
    assert save_plot(report, tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
