from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from alexnet_deploy.cli.main import app

runner = CliRunner()


def test_info_json_reports_the_paper_counts():
    result = runner.invoke(app, ["info", "alexnet_paper", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == 60_965_224 and data["macs"] == 724_406_816
    assert len([x for x in data["layers"] if x["kind"] == "Conv2d"]) == 5


def test_info_ungrouped_and_torchvision_layout():
    ungrouped = json.loads(runner.invoke(app, ["info", "alexnet_paper", "--columns", "1", "--json"]).stdout)
    assert ungrouped["params"] == 62_378_344 and ungrouped["macs"] == 1_135_256_096
    assert ungrouped["conv_share"]["params"] < 0.061 and ungrouped["conv_share"]["macs"] > 0.94
    tv = json.loads(runner.invoke(app, ["info", "alexnet", "--json"]).stdout)
    assert tv["params"] == 61_100_840


def test_info_table_mentions_totals():
    result = runner.invoke(app, ["info", "alexnet_paper", "--columns", "1"])
    assert result.exit_code == 0
    assert "62.38 M parameters" in result.stdout and "1.135 G multiply-adds" in result.stdout


def test_unknown_model_is_one_sentence_and_exit_1():
    result = runner.invoke(app, ["info", "resnet50"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: Unknown model 'resnet50'")
    assert "Traceback" not in result.output


def test_doctor_json_exits_zero_and_reports_backends():
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ort, ov, rtx, trt = (data["backends"][n] for n in ("onnxruntime", "openvino", "tensorrt-rtx", "tensorrt"))
    assert ort["can_build"] and ort["can_run"] and "CPUExecutionProvider" in ort["details"]["providers"]
    assert "CPUExecutionProvider" in data["onnxruntime_providers"]
    assert "torch" in data["versions"] and "openvino" in data["versions"]
    assert ov["can_build"] and ov["can_run"] and "CPU" in ov["details"]["devices"]
    assert rtx["installed"] and rtx["can_build"]  # its builder needs no GPU
    assert not data["backends"]["torch"]["can_build"] and data["backends"]["torch"]["can_run"]
    if not data["gpus"]:
        assert not trt["can_run"] and not rtx["can_run"] and "GPU" in rtx["reason"]


def test_help_never_imports_tensorrt_or_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from alexnet_deploy.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('tensorrt' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
