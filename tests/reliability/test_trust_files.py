"""Issue #19, part 1: never touch what is not ours. Symbolic links planted at every path a command creates, the
user's own files beside every output, a live writer's staging folder, SIGTERM / SIGHUP / Ctrl-C, onnxruntime's
work files, a full disk and a read-only folder, each against the real CLI.

Every case asserts one sentence (``error: ...``), the exit code, no traceback, that nothing of the user's changed,
and that no leftovers remain (at once after a clean stop, after the next run after a kill). Kills and signals go
through real processes: ``ALEXNET_DEPLOY_KILL_AT`` / ``ALEXNET_DEPLOY_KILL_SIGNAL`` (a fault point names the file,
e.g. ``before-rename:model.onnx``) or a signal sent from outside. The full disk is a real tmpfs and the read-only
folder a real read-only mount where a private mount namespace is allowed (see ``tests/trust_faults.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trust_faults import (
    CONFINED,
    EXIT,
    REPO,
    USER_FILES,
    checkpoint,
    cli,
    confined,
    env,
    one_sentence,
    ours,
    readonly_cause,
    seed_user_files,
    snapshot,
)
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.data import class_names
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import FOLDER_LOCK, MARKER, parse_temp_name
from alexnet_deploy.core.manifest import load_manifest, sidecar_path

runner = CliRunner()
VICTIM = b"the user's own words\n"
TRAIN = ["--preset", "demo", "--epochs", "1", "--batch-size", "32", "--image-size", "64", "--set", "width=0.125",
         "--set", "max_train_images=64", "--set", "max_val_images=32", "--set", "threads=1",
         "--set", "max_minutes=0"]  # fmt: skip


@pytest.fixture(scope="module")
def ckpt(tiny20, tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("ckpt") / "a20.pt", class_names(tiny20 / "train"))


@pytest.fixture(scope="module")
def fp32(tiny20, tmp_path_factory, request):
    from quant_models import trained_onnx

    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """The 20-class checkpoint exported once (with its sidecar), to be copied where a test needs an existing pair."""
    onnx = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert runner.invoke(app, ["export", str(ckpt), "-o", str(onnx)]).exit_code == 0
    return onnx


@pytest.fixture
def source(fp32, tmp_path):
    """A private copy of the trained FP32 ONNX and its sidecar in ``tmp_path/src``."""
    src = tmp_path / "src" / "model.onnx"
    src.parent.mkdir()
    shutil.copyfile(fp32, src)
    shutil.copyfile(sidecar_path(fp32), sidecar_path(src))
    return src


def _commands(kind: str, ckpt: Path, src: Path, data: Path, out: Path) -> list[str]:
    calib = ["--calib-data", str(data), "--method", "minmax", "--num-images", "33", "--no-cache"]
    return {
        "export": ["export", str(ckpt), "-o", str(out / "model.onnx")],
        "calibrate": ["calibrate", str(src), *calib, "-o", str(out / "q.onnx")],
        "build": ["build", str(src), "--fp16", "--backend", "onnxruntime", "--eval-data", str(data),
                  "--eval-limit", "40", "-o", str(out / "e.onnx")],
        "triton": ["triton", str(src), "--repo", str(out / "repo")],
        "train": ["train", str(data), "-o", str(out / "run"), *TRAIN],
    }[kind]  # fmt: skip


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir(exist_ok=True)
    victim.write_bytes(VICTIM)
    return victim


# -- 1. symbolic links planted where we create files ----------------------------------------------------------------
PLANTED = [
    ("export", ".model.onnx.lock", "The lock file {p} is a symbolic link, which alexnet-deploy never makes"),
    ("export", "model.onnx", "The output {p} is a symbolic link; alexnet-deploy never writes through one"),
    ("export", "model.onnx.json", "The sidecar {p} is a symbolic link"),
    ("calibrate", ".q.onnx.lock", "The lock file {p} is a symbolic link"),
    ("calibrate", "q.onnx", "The output {p} is a symbolic link"),
    ("calibrate", "q.onnx.json", "The sidecar {p} is a symbolic link"),
    ("build", ".e.onnx.lock", "The lock file {p} is a symbolic link"),
    ("build", "e.onnx.json", "The sidecar {p} is a symbolic link"),
    ("triton", "repo", "The model repository {p} is a symbolic link"),
    ("triton", f"repo/{FOLDER_LOCK}", "The lock file {p} is a symbolic link"),
    ("triton", "repo/alexnet", "The model folder {p} is a symbolic link"),
    ("train", "run", "The output {p} is a symbolic link"),
    ("train", f"run/{FOLDER_LOCK}", "The lock file {p} is a symbolic link"),
    ("train", "run/best.pt", "The file {p} is a symbolic link"),
    ("train", "run/summary.json", "The file {p} is a symbolic link"),
]


@pytest.mark.parametrize("kind,planted,expected", PLANTED, ids=[f"{k}:{p}" for k, p, _ in PLANTED])
def test_a_link_planted_where_we_create_a_file_is_refused_and_its_target_untouched(
    kind, planted, expected, ckpt, source, tiny20, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    victim = _victim(tmp_path)
    link = out / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    target = victim.parent if planted in ("repo", "run", "repo/alexnet") else victim
    link.symlink_to(target)
    before = snapshot(tmp_path / "elsewhere")
    src_before = snapshot(source.parent)
    one_sentence(runner.invoke(app, _commands(kind, ckpt, source, tiny20, out)), 1, expected.format(p=link))
    assert snapshot(tmp_path / "elsewhere") == before and victim.read_bytes() == VICTIM
    assert snapshot(source.parent) == src_before
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == sorted({planted, *(str(p) for p in Path(planted).parents if str(p) != ".")}), left


def test_a_range_cache_folder_planted_as_a_link_is_neither_read_nor_written(source, tiny20, tmp_path):
    victim_dir = _victim(tmp_path).parent
    (source.parent / f"{source.name}.calib").symlink_to(victim_dir, target_is_directory=True)
    before = snapshot(victim_dir)
    out = tmp_path / "out" / "q.onnx"
    result = runner.invoke(app, ["calibrate", str(source), "--calib-data", str(tiny20), "--method", "minmax",
                                 "--num-images", "33", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "is a symbolic link, not one we made; not using it" in " ".join(result.output.split())
    assert "were not cached" in " ".join(result.output.split())
    assert snapshot(victim_dir) == before and load_manifest(out).precision == "int8"


def test_a_report_file_planted_as_a_link_refuses_the_whole_report(tmp_path):
    from alexnet_deploy.report import write_report

    victim = _victim(tmp_path)
    (tmp_path / "report.html").symlink_to(victim)
    with pytest.raises(ArtifactError, match="report.html is a symbolic link"):
        write_report(tmp_path, {"title": "t"})
    assert victim.read_bytes() == VICTIM and sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "report.html"]


# -- 2. the user's files beside every output ------------------------------------------------------------------------
def test_the_users_files_beside_every_output_survive_every_command_twice(ckpt, source, tiny20, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    seeded = seed_user_files(out)
    victim = _victim(tmp_path)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    # A link named exactly like a dead writer's leftover: still not ours to follow or remove.
    marked_link = out / f".model.onnx.{MARKER}{dead}-12-build-0123abcd"
    marked_link.symlink_to(victim.parent, target_is_directory=True)
    for _ in range(2):
        for kind in ("export", "calibrate", "build", "triton"):
            args = _commands(kind, ckpt, source, tiny20, out) + (["--force"] if kind == "triton" else [])
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (kind, result.output)
    assert snapshot(out, USER_FILES) == seeded and victim.read_bytes() == VICTIM and marked_link.is_symlink()
    assert ours(out) == [marked_link.name] and ours(out / "repo") == []
    assert {p.name for p in out.iterdir()} == {*(n.split("/")[0] for n in USER_FILES), marked_link.name, "repo",
                                               "model.onnx", "model.onnx.json", "q.onnx", "q.onnx.json", "e.onnx",
                                               "e.onnx.json"}  # fmt: skip


def test_a_live_writers_staging_folder_survives_a_reexport_and_is_swept_once_it_is_dead(ckpt, exported, tmp_path):
    onnx = tmp_path / "model.onnx"
    shutil.copyfile(exported, onnx)
    shutil.copyfile(sidecar_path(exported), sidecar_path(onnx))
    # What `build model.onnx` (no -o) keeps beside its source while it works: a staging folder named after it.
    code = ("import time\nfrom alexnet_deploy.core.files import work_dir\n"
            f"with work_dir({str(onnx)!r}, 'build') as w:\n    (w / 'candidate.onnx').write_bytes(b'x')\n"
            "    print(w, flush=True)\n    time.sleep(120)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env())
    try:
        staging = Path(holder.stdout.readline().strip())
        assert runner.invoke(app, ["export", str(ckpt), "-o", str(onnx)]).exit_code == 0
        assert (staging / "candidate.onnx").is_file()  # the re-export left the running build's folder alone
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert staging.is_dir() and parse_temp_name(staging.name).alive is False
    assert runner.invoke(app, ["export", str(ckpt), "-o", str(onnx)]).exit_code == 0
    assert not staging.exists() and ours(tmp_path) == []


# -- 7. SIGTERM, SIGHUP and Ctrl-C ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["TERM", "HUP"])
def test_sigterm_and_sighup_during_a_write_end_like_ctrl_c(exported, tiny20, tmp_path, how):
    onnx = tmp_path / "model.onnx"
    seeded = seed_user_files(tmp_path)
    shutil.copyfile(exported, onnx)
    shutil.copyfile(sidecar_path(exported), sidecar_path(onnx))
    before = snapshot(tmp_path, ["model.onnx", "model.onnx.json"])
    (tmp_path / "ck").mkdir()
    other = checkpoint(tmp_path / "ck" / "b10.pt", class_names(tiny20 / "train")[:10], seed=1)
    stopped = cli("export", str(other), "-o", str(onnx), fault="before-rename:model.onnx", how=how)
    one_sentence(stopped, EXIT[how], f"stopped by SIG{how}; nothing half-written was left in place")
    assert snapshot(tmp_path, ["model.onnx", "model.onnx.json"]) == before  # the old pair, whole
    assert load_manifest(onnx).model["num_classes"] == 20
    assert ours(tmp_path) == [] and snapshot(tmp_path, USER_FILES) == seeded  # cleaned up at once: no next run


@pytest.mark.parametrize("how", ["TERM", "INT"])
def test_a_signal_from_outside_during_calibration_cleans_up_at_once(source, tiny20, tmp_path, how):
    out = tmp_path / "out"
    out.mkdir()
    seeded = seed_user_files(out)
    src_before = snapshot(source.parent)
    args = ["calibrate", str(source), "--calib-data", str(tiny20), "--method", "auto", "--num-images", "120",
            "--no-cache", "-o", str(out / "q.onnx")]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", "from alexnet_deploy.cli.main import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)  # fmt: skip
    deadline = time.monotonic() + 240
    while not any(parse_temp_name(p.name) for p in out.iterdir()):  # its work folder: calibration is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(getattr(signal, f"SIG{how}"))
    _, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(args, proc.returncode, "", err)
    expected = "interrupted" if how == "INT" else f"stopped by SIG{how}"
    one_sentence(result, EXIT[how], f"{expected}; nothing half-written was left in place")
    assert ours(out) == [] and sorted(p.name for p in out.iterdir()) == sorted({n.split("/")[0] for n in USER_FILES})
    assert snapshot(out, USER_FILES) == seeded and snapshot(source.parent) == src_before


# -- 9. onnxruntime's work files ------------------------------------------------------------------------------------
def test_calibration_writes_nothing_beside_its_source_even_when_killed(source, tiny20, tmp_path):
    out = tmp_path / "out" / "q.onnx"
    src_before = snapshot(source.parent)
    args = ["calibrate", str(source), "--calib-data", str(tiny20), "--method", "minmax", "--num-images", "33",
            "--no-cache", "-o", str(out)]  # fmt: skip
    killed = cli(*args, fault="before-rename:q.onnx")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert snapshot(source.parent) == src_before  # no MODEL-inferred.onnx, no augmented model
    assert len([n for n in ours(out.parent) if not n.endswith(".lock")]) >= 1  # the killed run's work, beside q.onnx
    assert runner.invoke(app, args).exit_code == 0
    assert ours(out.parent) == [] and load_manifest(out).precision == "int8"
    assert {p.name for p in source.parent.iterdir()} == {"model.onnx", "model.onnx.json"}


def test_calibration_of_a_source_in_a_read_only_folder_works_and_two_at_once_do_not_race(source, tiny20, tmp_path):
    if CONFINED == "stand-in" and os.geteuid() == 0:
        pytest.skip("no private mount namespace here, and root ignores chmod: no read-only folder to test with")
    outs = [tmp_path / "out" / f"q{i}.onnx" for i in range(2)]
    outs[0].parent.mkdir()
    src_before = snapshot(source.parent)
    args = ["calibrate", str(source), "--calib-data", str(tiny20), "--method", "minmax", "--num-images", "33"]
    result, after = confined("readonly", source.parent, *args, "-o", str(outs[0]))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "were not cached" in " ".join(result.stderr.split())  # the cache beside a read-only source: skipped
    assert after == {k: v for k, v in src_before.items()} and snapshot(source.parent) == src_before
    procs = [subprocess.Popen([sys.executable, "-c", "from alexnet_deploy.cli.main import main; main()", *args,
                               "--no-cache", "-o", str(o)], stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
             for o in outs]  # fmt: skip
    for p in procs:
        assert p.wait(300) == 0, p.stderr.read()[-3000:]
    assert all(load_manifest(o).precision == "int8" for o in outs) and ours(outs[0].parent) == []
    assert snapshot(source.parent) == src_before


# -- 10. a full disk and a read-only folder -------------------------------------------------------------------------
FAULTED = ["export", "calibrate", "build", "triton", "train"]
TARGET = {"export": "model.onnx", "calibrate": "q.onnx", "build": "e.onnx", "triton": "repo", "train": "run"}


@pytest.mark.parametrize("kind", FAULTED)
def test_a_full_disk_is_one_sentence_and_leaves_nothing_half_written(kind, ckpt, source, tiny20, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    seeded = seed_user_files(out)
    stand_in = "before-swap" if kind == "triton" else "before-rename"  # where the stand-in's ENOSPC is raised
    result, after = confined("full", out, *_commands(kind, ckpt, source, tiny20, out), stand_in=stand_in)
    last = one_sentence(result, 1, "no space left on device")
    assert f"Cannot write {out / TARGET[kind]}" in last, (CONFINED, last)
    kept = {k: v for k, v in after.items() if k in seeded}
    assert kept == seeded, (CONFINED, after)
    rest = sorted(set(after) - set(seeded))
    if kind == "train":  # complete files of the interrupted run, and a summary that says so
        assert rest in ([], ["run/config.json", "run/summary.json"]), rest
    else:
        assert rest == [], rest


@pytest.mark.parametrize("kind", FAULTED)
def test_a_read_only_output_folder_is_one_sentence_and_nothing_changes(kind, ckpt, source, tiny20, tmp_path):
    if CONFINED == "stand-in" and os.geteuid() == 0:
        pytest.skip("no private mount namespace here, and root ignores chmod: no read-only folder to test with")
    out = tmp_path / "out"
    out.mkdir()
    seeded = seed_user_files(out)
    result, after = confined("readonly", out, *_commands(kind, ckpt, source, tiny20, out))
    last = one_sentence(result, 1, readonly_cause())
    assert f"Cannot write {out / TARGET[kind]}" in last, last
    assert after == seeded and snapshot(out) == seeded


def test_a_summary_never_calls_an_interrupted_run_finished(tiny20, tmp_path):
    run = tmp_path / "run"
    assert cli("train", str(tiny20), "-o", str(run), *TRAIN).returncode == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    stopped = cli("train", str(tiny20), "-o", str(run), *TRAIN, fault="before-rename:last.pt", how="TERM")
    one_sentence(stopped, EXIT["TERM"], "stopped by SIGTERM")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["best"] == {} and summary["checkpoint"] is None
    assert isinstance(summary["pid"], int) and ours(run) == []
