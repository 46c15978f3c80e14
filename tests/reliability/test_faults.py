"""Fault injection, for real: writers killed with SIGKILL between their renames and before them, two writers of
one file at once, a lock holder killed with ``kill -9``, and malformed sidecars, checkpoints and mismatched ONNX
files fed to every command. Each must end in one sentence and exit code 1, never a traceback, never an
inconsistent pair that a reader accepts, and no leftovers after the next run.

The kills go through ``ALEXNET_DEPLOY_KILL_AT`` (:func:`alexnet_deploy.core.files.fault_point`): the writer
process SIGKILLs itself at the named point, exactly as ``kill -9`` would land there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.checkpoint import save_checkpoint
from alexnet_deploy.core.data import Preprocessing, class_names
from alexnet_deploy.core.files import FAULT_ENV, MARKER
from alexnet_deploy.core.manifest import load_manifest, sidecar_path
from alexnet_deploy.core.models import alexnet_paper

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
CLI = [sys.executable, "-c", "from alexnet_deploy.cli.main import main; main()"]


def _checkpoint(path: Path, classes: list[str], seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = alexnet_paper(width=0.25, num_classes=len(classes), init="kaiming")
    save_checkpoint(path, {"model": model.state_dict(),
                           "arch": {"name": "alexnet_paper", "num_classes": len(classes), "width": 0.25, "columns": 2},
                           "classes": classes, "preprocessing": Preprocessing.for_crop(64).to_dict()})  # fmt: skip
    return path


def _cli(*args: str, kill_at: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(FAULT_ENV, None)
    if kill_at:
        env[FAULT_ENV] = kill_at
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def ckpts(tiny20, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    classes = class_names(tiny20 / "train")
    return _checkpoint(root / "a20.pt", classes), _checkpoint(root / "b10.pt", classes[:10], seed=1)


def _every_reader(onnx: Path, data: Path, out: Path) -> list[list[str]]:
    """Every command that loads an ONNX artifact, writing (if at all) under ``out``."""
    image = next((data / "val").rglob("*.JPEG"))
    return [
        ["verify", str(onnx), "--data", str(data)],
        ["predict", str(onnx), str(image)],
        ["bench", str(onnx), "--batch", "1", "--duration-s", "0.1"],
        ["calibrate", str(onnx), "--calib-data", str(data), "-o", str(out / "q.onnx")],
        ["build", str(onnx), "--calib-data", str(data), "--eval-data", str(data), "-o", str(out / "e.onnx")],
        ["triton", str(onnx), "--repo", str(out / "repo")],
    ]


def _one_sentence(result, expected: str) -> str:
    text = (result.stderr if hasattr(result, "returncode") else result.output).strip()
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 1, text
    assert "Traceback" not in text, text
    last = text.splitlines()[-1]
    assert last.startswith("error: ") and expected in " ".join(text.split()), text
    return last


@pytest.mark.slow
def test_a_kill_between_the_renames_leaves_a_pair_that_every_reader_refuses(ckpts, tiny20, tmp_path):
    a20, b10 = ckpts
    onnx = tmp_path / "model.onnx"
    assert _cli("export", str(a20), "-o", str(onnx)).returncode == 0
    killed = _cli("export", str(b10), "-o", str(onnx), kill_at="between-renames")
    assert killed.returncode == -signal.SIGKILL
    # The new 10-class ONNX is in place, the old 20-class sidecar beside it: it describes another file.
    assert json.loads(sidecar_path(onnx).read_text())["model"]["num_classes"] == 20
    for args in _every_reader(onnx, tiny20, tmp_path / "out"):
        _one_sentence(runner.invoke(app, args), "does not describe model.onnx (their sha256 differ)")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []  # nothing written
    # The next run repairs the pair and leaves nothing behind.
    assert _cli("export", str(b10), "-o", str(onnx)).returncode == 0
    assert load_manifest(onnx).model["num_classes"] == 10 and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_kill_before_the_rename_keeps_the_old_pair_and_the_next_run_sweeps_its_leftover(ckpts, tmp_path):
    a20, b10 = ckpts
    onnx = tmp_path / "model.onnx"
    assert _cli("export", str(a20), "-o", str(onnx)).returncode == 0
    before = onnx.read_bytes()
    assert _cli("export", str(b10), "-o", str(onnx), kill_at="before-rename").returncode == -signal.SIGKILL
    assert onnx.read_bytes() == before and load_manifest(onnx).model["num_classes"] == 20  # still consistent
    left = _leftovers(tmp_path)  # the whole new ONNX, not in place, and the lock file (its flock died with it)
    tmp = [name for name in left if name != ".model.onnx.lock"]
    assert len(left) == 2 and len(tmp) == 1 and tmp[0].startswith(f".model.onnx.{MARKER}") and "-tmp-" in tmp[0]
    assert _cli("export", str(b10), "-o", str(onnx)).returncode == 0
    assert _leftovers(tmp_path) == [] and load_manifest(onnx).model["num_classes"] == 10


@pytest.mark.slow
def test_a_killed_calibration_leaves_no_pair_a_reader_accepts(ckpts, tiny20, tmp_path):
    a20, _ = ckpts
    onnx, q = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    assert _cli("export", str(a20), "-o", str(onnx)).returncode == 0
    args = ["calibrate", str(onnx), "--calib-data", str(tiny20), "--method", "minmax", "--num-images", "33",
            "--no-cache", "-o", str(q)]  # fmt: skip
    assert _cli(*args, kill_at="between-renames").returncode == -signal.SIGKILL
    assert q.is_file() and not sidecar_path(q).exists()  # the Q/DQ ONNX without its sidecar...
    _one_sentence(runner.invoke(app, ["verify", str(q), "--data", str(tiny20)]), "has no manifest")  # ...refused
    assert _cli(*args).returncode == 0 and load_manifest(q).precision == "int8" and _leftovers(tmp_path) == []


def test_a_second_writer_fails_at_once_and_a_holder_killed_with_kill_9_frees_the_lock(ckpts, tmp_path):
    a20, _ = ckpts
    onnx = tmp_path / "model.onnx"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom alexnet_deploy.core.files import output_lock\n"
         f"with output_lock({str(onnx)!r}):\n    print('locked', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = runner.invoke(app, ["export", str(a20), "-o", str(onnx)])
        _one_sentence(refused, f"Another process (pid {holder.pid}) is writing {onnx}")
        assert not onnx.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert runner.invoke(app, ["export", str(a20), "-o", str(onnx)]).exit_code == 0  # the kernel dropped the lock
    assert load_manifest(onnx).model["num_classes"] == 20 and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_exports_to_one_file_at_once_end_in_one_consistent_pair(ckpts, tmp_path):
    a20, b10 = ckpts
    onnx = tmp_path / "model.onnx"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([*CLI, "export", str(c), "-o", str(onnx)], stderr=subprocess.PIPE, text=True, env=env)
             for c in (a20, b10)]  # fmt: skip
    results = [(p.wait(240), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert code == 0 or ("Another process" in err and "Traceback" not in err), err
    m = load_manifest(onnx)  # verifies the sha256: whoever won, the pair is that writer's
    assert m.model["num_classes"] in (10, 20) and _leftovers(tmp_path) == []


def _break(sidecar: Path, how: str) -> None:
    d = json.loads(sidecar.read_text())
    if how == "invalid json":
        sidecar.write_text("{not json")
        return
    if how == "zero std":
        d["preprocessing"]["std"] = [0.0, 0.2, 0.2]
    elif how == "classes fewer than logits":
        d["classes"] = d["classes"][:5]
        d["model"].pop("num_classes")
        d["output"]["shape"] = [-1, -1]
    elif how == "crop differs from the model's input":
        d["preprocessing"].update(crop=32, resize=37)
        d["input"]["shape"] = [-1, 3, -1, -1]
    elif how == "classes not a list":
        d["classes"] = "goldfish"
    elif how == "no kind":
        d.pop("kind")
    sidecar.write_text(json.dumps(d))


EXPECTED = {
    "invalid json": "is not valid JSON",
    "zero std": "preprocessing.std must be positive",
    "classes fewer than logits": "gives 20 logits, but its sidecar names 5 classes",
    "crop differs from the model's input": "takes 64 x 64 images, but its sidecar crops them to 32 x 32",
    "classes not a list": "classes must be a list of names",
    "no kind": "has no 'kind' field",
}


@pytest.fixture(scope="module")
def exported(ckpts, tmp_path_factory):
    onnx = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert runner.invoke(app, ["export", str(ckpts[0]), "-o", str(onnx)]).exit_code == 0
    return onnx


@pytest.mark.parametrize("how", list(EXPECTED))
def test_a_malformed_sidecar_is_one_sentence_for_every_command(exported, tiny20, tmp_path, how):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(exported.read_bytes())
    sidecar_path(onnx).write_text(sidecar_path(exported).read_text())
    _break(sidecar_path(onnx), how)
    out = tmp_path / "out"
    for args in _every_reader(onnx, tiny20, out):
        _one_sentence(runner.invoke(app, args), EXPECTED[how])
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    "how,expected",
    [
        ("num_classes not a number", "model.num_classes must be a positive integer"),
        ("classes fewer than logits", "it lists 5 classes but model.num_classes is 20"),
        ("final layer wider than the classes", "says it predicts 10 classes, but its final layer gives 20 logits"),
        ("zero std", "preprocessing.std must be positive"),
        ("preprocessing without crop", "preprocessing.crop must be a positive integer"),
    ],
)
def test_a_checkpoint_that_describes_itself_inconsistently_is_one_sentence(ckpts, tiny20, tmp_path, how, expected):
    obj = torch.load(ckpts[0], weights_only=True)
    if how == "num_classes not a number":
        obj["arch"]["num_classes"] = "twenty"
    elif how == "classes fewer than logits":
        obj["classes"] = obj["classes"][:5]
    elif how == "final layer wider than the classes":
        obj["classes"], obj["arch"]["num_classes"] = obj["classes"][:10], 10
    elif how == "zero std":
        obj["preprocessing"]["std"] = [0.0, 0.0, 0.0]
    else:
        obj["preprocessing"].pop("crop")
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    image = next((tiny20 / "val").rglob("*.JPEG"))
    for args in (["export", str(bad), "-o", str(tmp_path / "m.onnx")], ["predict", str(bad), str(image)],
                 ["verify", str(bad), "--data", str(tiny20)]):  # fmt: skip
        _one_sentence(runner.invoke(app, args), expected)
    assert not (tmp_path / "m.onnx").exists()


def test_an_unexpected_exception_is_one_sentence_naming_the_input_and_verbose_shows_the_traceback(
    exported, tiny20, monkeypatch
):
    import alexnet_deploy.verify

    def boom(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(alexnet_deploy.verify, "evaluate", boom)
    result = runner.invoke(app, ["verify", str(exported), "--data", str(tiny20)])
    last = _one_sentence(result, f"verify failed unexpectedly on {exported}")
    assert last.endswith("RuntimeError: something nobody foresaw (rerun with --verbose for the traceback).")
    verbose = runner.invoke(app, ["--verbose", "verify", str(exported), "--data", str(tiny20)])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr and "second line" in verbose.stderr


def test_an_artifact_that_is_a_folder_says_so(tmp_path, tiny20):
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    for args in (["verify", str(folder), "--data", str(tiny20)], ["bench", str(folder)]):
        _one_sentence(runner.invoke(app, args), f"{folder} is a folder, not an artifact: pass a .pt file")


def test_leftovers_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    from alexnet_deploy.core.files import STALE_AFTER_S, process_start, sweep_leftovers

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    parent = os.getppid()
    mine = tmp_path / f".model.onnx.{MARKER}{dead_pid}-5-tmp-abc12345"
    other_old = tmp_path / f".other.onnx.{MARKER}{dead_pid}-5-build-0badc0de"
    other_new = tmp_path / f".third.onnx.{MARKER}{dead_pid}-5-tmp-def45678"
    alive = tmp_path / f".model.onnx.{MARKER}{parent}-{process_start(parent)}-tmp-99999999"  # our parent's
    mine.write_bytes(b"x")
    other_old.mkdir()
    (other_old / "staged.plan").write_bytes(b"x")
    other_new.write_bytes(b"x")
    alive.write_bytes(b"x")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(other_old, (old, old))
    removed = {p.name for p in sweep_leftovers(tmp_path / "model.onnx")}
    assert removed == {mine.name, other_old.name}  # a recent leftover of another output may be a live NFS writer's
    assert other_new.exists() and alive.exists()
