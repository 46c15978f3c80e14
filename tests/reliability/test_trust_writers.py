"""Issue #19, part 1: the writers with more than one rename (triton, train, build), killed with SIGKILL or stopped
with SIGTERM at each of them, and two writers of one output at once.

After a kill, what a reader finds is whole (the old model, the old pair, or a pair every reader refuses), and the
next run of that output removes every leftover; after SIGTERM nothing is left at once. A served model folder is
never missing, not even for an instant (a reader polls it while it is replaced).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from trust_faults import EXIT, REPO, cli, env, one_sentence, ours, seed_user_files, snapshot
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.checkpoint import read_checkpoint
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import FOLDER_LOCK, exchange, output_lock, parse_temp_name
from alexnet_deploy.core.manifest import load_manifest, save_manifest, sidecar_path
from alexnet_deploy.triton import TritonOptions, write_repository

runner = CliRunner()
HOLD = ("import sys, time\nfrom alexnet_deploy.core.files import output_lock\n"
        "with output_lock(sys.argv[1], folder=sys.argv[2] == 'folder'):\n    print('locked', flush=True)\n"
        "    time.sleep(120)\n")  # fmt: skip


@pytest.fixture(scope="module")
def fp32(tiny20, tmp_path_factory, request):
    from quant_models import trained_onnx

    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


def _max_batch(model: Path) -> int:
    text = (model / "config.pbtxt").read_text()
    return int(text.split("max_batch_size:")[1].split()[0])


def _hold(path: Path, folder: bool) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "folder" if folder else "file"],
                              stdout=subprocess.PIPE, text=True, env=env())  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _swappable(folder: Path) -> bool:
    a, b = folder / ".probe-a", folder / ".probe-b"
    a.mkdir()
    b.mkdir()
    try:
        return exchange(a, b)
    finally:
        a.rmdir()
        b.rmdir()


# -- 6. the Triton repository ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["before-swap", "after-swap"])
@pytest.mark.parametrize("how", ["KILL", "TERM"])
def test_triton_killed_or_stopped_at_either_side_of_the_swap_never_loses_the_model(fp32, tmp_path, point, how):
    repo = tmp_path / "repo"
    write_repository([fp32], repo, TritonOptions(max_batch_size=8))
    (repo / "notes.txt").write_text("the user's\n")
    result = cli("triton", str(fp32), "--repo", str(repo), "--force", "--max-batch-size", "16",
                 fault=f"{point}:alexnet", how=how)  # fmt: skip
    model = repo / "alexnet"
    if how == "KILL":
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        assert _max_batch(model) == (8 if point == "before-swap" else 16)  # whole: the old model or the new one
        assert [n for n in ours(repo) if n != FOLDER_LOCK]  # the killed run's hidden copy...
        write_repository([fp32], repo, TritonOptions(max_batch_size=32, force=True))
        assert _max_batch(model) == 32 and ours(repo) == []  # ...removed by the next run
    else:
        one_sentence(result, EXIT["TERM"], "stopped by SIGTERM")
        assert _max_batch(model) == 8 and ours(repo) == []  # all or nothing: the old model back, nothing left
    assert (model / "1" / "model.onnx").is_file() and (model / "labels.txt").is_file()
    assert sorted(p.name for p in repo.iterdir()) == ["alexnet", "notes.txt"]
    assert (repo / "notes.txt").read_text() == "the user's\n"


def test_a_reader_never_sees_the_served_model_missing_while_it_is_replaced(fp32, tmp_path, caplog):
    repo = tmp_path / "repo"
    write_repository([fp32], repo, TritonOptions(max_batch_size=8))
    if not _swappable(repo):
        pytest.skip(f"{repo}'s file system cannot swap folders in one step (renameat2 RENAME_EXCHANGE)")
    seen = {"polls": 0, "missing": 0}
    stop = threading.Event()

    def poll() -> None:  # what Triton's repository poller does: is the model there, with its config and file?
        while not stop.is_set():
            seen["polls"] += 1
            model = repo / "alexnet"
            if not ((model / "config.pbtxt").is_file() and (model / "1" / "model.onnx").is_file()):
                seen["missing"] += 1

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for batch in (16, 8, 16, 8):
            write_repository([fp32], repo, TritonOptions(max_batch_size=batch, force=True))
    finally:
        stop.set()
        reader.join()
    assert seen["polls"] > 100 and seen["missing"] == 0, seen
    assert _max_batch(repo / "alexnet") == 8 and ours(repo) == []
    assert "cannot swap folders" not in caplog.text


def test_without_an_atomic_swap_a_run_killed_between_its_renames_is_put_back_by_the_next(fp32, tmp_path):
    repo = tmp_path / "repo"
    write_repository([fp32], repo, TritonOptions(max_batch_size=8))
    no_swap = ("import alexnet_deploy.triton as t\nt.exchange = lambda a, b: False\n"
               "from alexnet_deploy.cli.main import main\nmain()")  # fmt: skip
    killed = cli("triton", str(fp32), "--repo", str(repo), "--force", "--max-batch-size", "16", code=no_swap,
                 fault="between-renames:alexnet")  # fmt: skip
    assert killed.returncode == -signal.SIGKILL and "cannot swap folders in one step" in " ".join(killed.stderr.split())
    assert not (repo / "alexnet").exists()  # the one instant a file system without the swap exposes...
    hidden = [p for p in repo.iterdir() if getattr(parse_temp_name(p.name), "what", None) == "old"]
    assert len(hidden) == 1 and _max_batch(hidden[0]) == 8
    result = runner.invoke(app, ["triton", str(fp32), "--repo", str(repo)])  # no --force: the model is back
    one_sentence(result, 1, f"{repo / 'alexnet'} already exists; pass --force to replace it")
    assert "from an interrupted replacement" in " ".join(result.output.split())
    assert _max_batch(repo / "alexnet") == 8 and ours(repo) == []


def test_two_writers_of_one_repository_take_turns(fp32, tmp_path):
    repo = tmp_path / "repo"
    holder = _hold(repo, folder=True)
    try:
        refused = runner.invoke(app, ["triton", str(fp32), "--repo", str(repo)])
        one_sentence(refused, 1, f"Another process (pid {holder.pid}) is writing {repo}")
        assert [p.name for p in repo.iterdir()] == [FOLDER_LOCK]
    finally:
        holder.kill()
        holder.wait(30)
    procs = [subprocess.Popen([sys.executable, "-c", "from alexnet_deploy.cli.main import main; main()", "triton",
                               str(fp32), "--repo", str(repo), "--force", "--max-batch-size", str(b)],
                              stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO) for b in (8, 16)]  # fmt: skip
    results = [(p.wait(300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or ("Another process" in err and "Traceback" not in err), err
    assert _max_batch(repo / "alexnet") in (8, 16) and ours(repo) == []


# -- 8. train: one writer per folder; a kill or SIGTERM at every rename ---------------------------------------------
TRAIN = ["--preset", "demo", "--epochs", "1", "--batch-size", "32", "--image-size", "64", "--set", "width=0.125",
         "--set", "max_train_images=64", "--set", "max_val_images=32", "--set", "threads=1",
         "--set", "max_minutes=0"]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tiny20, tmp_path_factory):
    """A finished one-epoch run (seed 0): the folder a second run is started into."""
    run = tmp_path_factory.mktemp("train") / "run"
    result = cli("train", str(tiny20), "-o", str(run), *TRAIN, "--seed", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_a_second_train_into_one_folder_fails_at_once(tiny20, tmp_path):
    run = tmp_path / "run"
    holder = _hold(run, folder=True)
    try:
        start = time.monotonic()
        refused = runner.invoke(app, ["train", str(tiny20), "-o", str(run), *TRAIN])
        one_sentence(refused, 1, f"Another process (pid {holder.pid}) is writing {run}")
        assert time.monotonic() - start < 20 and [p.name for p in run.iterdir()] == [FOLDER_LOCK]
    finally:
        holder.kill()
        holder.wait(30)


def test_two_trains_at_once_never_mix_their_files(tiny20, tmp_path):
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-c", "from alexnet_deploy.cli.main import main; main()", "train",
                               str(tiny20), "-o", str(run), *TRAIN, "--seed", str(seed)],
                              stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO) for seed in (1, 2)]  # fmt: skip
    results = [(p.wait(600), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or ("Another process" in err and "Traceback" not in err), err[-3000:]
    seed = json.loads((run / "config.json").read_text())["seed"]
    assert [read_checkpoint(run / f)["config"]["seed"] for f in ("best.pt", "last.pt")] == [seed, seed]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished" and ours(run) == []


RUN_RENAMES = ["summary.json", "config.json", "last.pt", "last.pt.json", "best.pt", "best.pt.json", "metrics.jsonl",
               "curves.png"]  # fmt: skip
CASES = [(f, "KILL") for f in RUN_RENAMES] + [(f, "TERM") for f in ("config.json", "best.pt", "curves.png")]


@pytest.mark.slow
@pytest.mark.parametrize("name,how", CASES, ids=[f"{how}-{name}" for name, how in CASES])
def test_train_killed_or_stopped_at_every_rename_never_passes_for_a_finished_run(
    finished_run, tiny20, tmp_path, name, how
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    previous = json.loads((run / "summary.json").read_text())
    seeded = seed_user_files(run)
    result = cli("train", str(tiny20), "-o", str(run), *TRAIN, "--seed", "1", fault=f"before-rename:{name}", how=how)
    if how == "KILL":
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    else:
        one_sentence(result, EXIT["TERM"], "stopped by SIGTERM")
        assert ours(run) == []  # cleaned up at once
    summary = json.loads((run / "summary.json").read_text())
    if summary == previous:  # stopped before this run wrote anything: the folder is all the previous run's
        assert json.loads((run / "config.json").read_text())["seed"] == 0
    else:
        assert summary["status"] == ("running" if how == "KILL" else "interrupted")
        assert summary["pid"] != previous.get("pid")
    for ckpt in ("last.pt", "best.pt"):  # each checkpoint is whole, whichever run it is from
        assert read_checkpoint(run / ckpt)["epoch"] == 1
    if name == "best.pt":  # the next run: it trains, and finishes the folder as its own with nothing left behind
        again = cli("train", str(tiny20), "-o", str(run), *TRAIN, "--seed", "1")
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    else:  # the first thing the next run does: take the folder's lock, which sweeps the dead run's leftovers
        with output_lock(run, folder=True):
            pass
    assert ours(run) == [] and snapshot(run, seeded) == seeded


# -- build: a kill or SIGTERM at each of its renames ----------------------------------------------------------------
@pytest.fixture(scope="module")
def built(fp32, tiny20, tmp_path_factory):
    """An FP16 ONNX Runtime engine pair of a variant of the trained model (one bias nudged, so the engine the next
    build writes from the original has other bytes), to be replaced by that build."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder = tmp_path_factory.mktemp("built")
    model = onnx.load(str(fp32))
    bias = next(t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [20])
    values = numpy_helper.to_array(bias).copy()
    values[0] += np.float32(0.25)
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    variant = folder / "variant.onnx"
    onnx.save(model, str(variant))
    save_manifest(variant, load_manifest(fp32))
    out = folder / "e.onnx"
    result = runner.invoke(app, _build(variant, tiny20, out))
    assert result.exit_code == 0, result.output
    return out


def _build(src: Path, data: Path, out: Path) -> list[str]:
    return ["build", str(src), "--fp16", "--backend", "onnxruntime", "--eval-data", str(data), "--eval-limit", "40",
            "-o", str(out)]  # fmt: skip


BUILD_CASES = [("before-rename:model.fp16.onnx", "KILL"), ("before-rename:e.onnx", "KILL"),
               ("between-renames:e.onnx", "KILL"), ("before-rename:e.onnx", "TERM"),
               ("between-renames:e.onnx", "TERM")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("point,how", BUILD_CASES, ids=[f"{h}-{p}" for p, h in BUILD_CASES])
def test_build_killed_or_stopped_at_each_rename_leaves_a_whole_pair_or_one_every_reader_refuses(
    built, fp32, tiny20, tmp_path, point, how
):
    out = tmp_path / "e.onnx"
    shutil.copyfile(built, out)
    shutil.copyfile(sidecar_path(built), sidecar_path(out))
    before = snapshot(tmp_path, ["e.onnx", "e.onnx.json"])
    seeded = seed_user_files(tmp_path)
    result = cli(*_build(fp32, tiny20, out), fault=point, how=how)
    if how == "KILL":
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
        assert [n for n in ours(tmp_path) if not n.endswith(".lock")]  # the staging folder or the staged engine
    else:
        one_sentence(result, EXIT["TERM"], "stopped by SIGTERM")
        assert ours(tmp_path) == []
    if point.startswith("between-renames"):  # the engine is the new one, its sidecar the old one's: refused
        with pytest.raises(ArtifactError, match="does not describe e.onnx"):
            load_manifest(out)
    else:
        assert snapshot(tmp_path, ["e.onnx", "e.onnx.json"]) == before and load_manifest(out).precision == "fp16"
    with output_lock(out):  # what the next build of e.onnx does first
        pass
    assert ours(tmp_path) == [] and snapshot(tmp_path, seeded) == seeded
    assert sorted(os.listdir(tmp_path)) == sorted({"e.onnx", "e.onnx.json", *(n.split("/")[0] for n in seeded)})
