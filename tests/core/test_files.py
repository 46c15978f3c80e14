"""core/files (with core/tempnames and core/faults): our temporary names, the writer's identity (pid and start
time), files and locks that never follow a symbolic link, the sweep that touches only our own leftovers of dead
writers, folder swaps, write-fault sentences.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet_deploy.core import faults, files, tempnames
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import (
    MARKER,
    STALE_AFTER_S,
    atomic_path,
    create_temp_dir,
    create_temp_file,
    exchange,
    output_lock,
    parse_temp_name,
    process_start,
    rename_new,
    sweep_leftovers,
    temp_name,
    write_bytes_atomic,
    write_new_file,
)

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("the user's own words\n")
    return victim


def test_the_sweep_removes_only_our_marked_leftovers_of_dead_writers(tmp_path):
    dead = _dead_pid()
    parent = os.getppid()
    user = [".notes.2024.md", ".env.12345.local", ".model.onnx.20240101.bak", f".model.onnx.{dead}.abc123.tmp"]
    for name in user:
        (tmp_path / name).write_text("mine")
    (tmp_path / ".photos.2019.d").mkdir()
    (tmp_path / ".photos.2019.d" / "a.jpg").write_bytes(b"jpg")
    old = time.time() - 10 * STALE_AFTER_S
    os.utime(tmp_path / ".photos.2019.d", (old, old))
    dead_file = tmp_path / f".model.onnx.{MARKER}{dead}-77-tmp-0123abcd"
    dead_dir = tmp_path / f".model.onnx.{MARKER}{dead}-77-build-0123abce"
    reused = tmp_path / f".model.onnx.{MARKER}{parent}-{process_start(parent) + 1}-tmp-0123abcf"
    live = tmp_path / f".model.onnx.{MARKER}{parent}-{process_start(parent)}-build-0123abd0"
    dead_file.write_bytes(b"x")
    dead_dir.mkdir()
    (dead_dir / "engine.plan").write_bytes(b"x")
    reused.write_bytes(b"x")
    live.mkdir()
    # A link named like ours points at the user's folder: neither the link nor its target is touched.
    victim = _victim(tmp_path)
    link = tmp_path / f".model.onnx.{MARKER}{dead}-77-build-0123abd1"
    link.symlink_to(victim.parent)
    removed = {p.name for p in sweep_leftovers(tmp_path / "model.onnx")}
    assert removed == {dead_file.name, dead_dir.name, reused.name}
    assert live.is_dir() and link.is_symlink() and victim.read_text() == "the user's own words\n"
    assert all((tmp_path / name).read_text() == "mine" for name in user)
    assert (tmp_path / ".photos.2019.d" / "a.jpg").read_bytes() == b"jpg"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_the_sweep_never_removes_another_users_file(tmp_path):
    theirs = tmp_path / f".model.onnx.{MARKER}{_dead_pid()}-77-tmp-0123abcd"
    theirs.write_bytes(b"x")
    os.chown(theirs, 65534, 65534)
    assert sweep_leftovers(tmp_path / "model.onnx") == [] and theirs.exists()


def test_a_leftover_of_another_output_waits_until_it_is_stale(tmp_path):
    dead = _dead_pid()
    fresh = tmp_path / f".other.onnx.{MARKER}{dead}-77-tmp-0123abcd"
    stale = tmp_path / f".third.onnx.{MARKER}{dead}-77-tmp-0123abce"
    fresh.write_bytes(b"x")
    stale.write_bytes(b"x")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    assert [p.name for p in sweep_leftovers(tmp_path / "model.onnx")] == [stale.name] and fresh.exists()


def test_temporary_files_never_open_a_planted_link(tmp_path, monkeypatch):
    victim = _victim(tmp_path)
    out = tmp_path / "model.onnx"
    names = iter(["0123abcd", "0123abcd", "4567abcd"])
    monkeypatch.setattr(tempnames.secrets, "token_hex", lambda n: next(names))
    planted = out.with_name(temp_name(out, "tmp"))  # the next name create_temp_file will try
    planted.symlink_to(victim)
    tmp = create_temp_file(out)
    assert tmp.name.endswith("-tmp-4567abcd") and tmp.is_file() and not tmp.is_symlink()
    assert victim.read_text() == "the user's own words\n" and planted.is_symlink()


def test_an_output_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    victim = _victim(tmp_path)
    out = tmp_path / "model.onnx"
    out.symlink_to(victim)
    with pytest.raises(ArtifactError, match="is a symbolic link; alexnet-deploy never writes through one"):
        write_bytes_atomic(out, b"new")
    with pytest.raises(ArtifactError, match="is a symbolic link"), output_lock(out):
        pass
    assert out.is_symlink() and victim.read_text() == "the user's own words\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "model.onnx"]


@pytest.mark.parametrize("planted", ["symlink", "hard link", "folder", "fifo"])
def test_a_lock_file_that_is_not_our_regular_file_is_refused(tmp_path, planted):
    victim = _victim(tmp_path)
    lock = tmp_path / ".model.onnx.lock"
    expected = {"symlink": "is a symbolic link", "hard link": "has other hard links",
                "folder": "is not a regular file", "fifo": "is not a regular file"}[planted]  # fmt: skip
    if planted == "symlink":
        lock.symlink_to(victim)
    elif planted == "hard link":
        os.link(victim, lock)
    elif planted == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(ArtifactError, match=expected), output_lock(tmp_path / "model.onnx"):
        pass
    assert victim.read_text() == "the user's own words\n"
    assert os.path.lexists(lock)  # not ours: left where it is


def test_a_folder_lock_lives_inside_and_an_unused_new_folder_is_not_left_behind(tmp_path):
    run = tmp_path / "run"
    with output_lock(run, folder=True):
        assert (run / files.FOLDER_LOCK).read_text() == str(os.getpid())
    assert not run.exists()  # made for the lock, nothing written: removed again
    run.mkdir()
    (run / "notes.txt").write_text("x")
    with output_lock(run, folder=True):
        pass
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_a_lock_holder_is_named_only_by_digits(tmp_path):
    out = tmp_path / "model.onnx"
    code = (f"import time\nfrom alexnet_deploy.core.files import output_lock\nwith output_lock({str(out)!r}):\n"
            f"    open({str(files.lock_path(out))!r}, 'r+').write('\\x1b[31mevil')\n    print('locked', flush=True)\n"
            "    time.sleep(60)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ArtifactError, match=r"Another process \(pid unknown\) is writing"), output_lock(out):
            pass
    finally:
        holder.kill()
        holder.wait(30)


def test_exchange_swaps_two_folders_in_one_step_and_rename_new_never_replaces(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "new").write_text("new")
    (b / "old").write_text("old")
    if not exchange(a, b):
        pytest.skip(f"{tmp_path}'s file system cannot swap folders (renameat2 RENAME_EXCHANGE)")
    assert [p.name for p in b.iterdir()] == ["new"] and [p.name for p in a.iterdir()] == ["old"]
    with pytest.raises(FileExistsError):
        rename_new(a, b)
    rename_new(a, tmp_path / "c")
    assert (tmp_path / "c" / "old").is_file() and not a.exists()


def test_a_temporary_folder_is_ours_and_private(tmp_path):
    made = create_temp_dir(tmp_path / "model.onnx", "build")
    assert parse_temp_name(made.name).what == "build" and made.stat().st_mode & 0o777 == 0o700


def test_write_new_file_never_writes_through_a_link(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "a.png").symlink_to(victim)
    with pytest.raises(ArtifactError, match="is a symbolic link"):
        write_new_file(tmp_path / "a.png", b"png")
    write_new_file(tmp_path / "b.png", b"png")
    assert victim.read_text() == "the user's own words\n" and (tmp_path / "b.png").read_bytes() == b"png"


def test_a_failed_write_leaves_nothing_and_says_why(tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    monkeypatch.setenv(files.FAULT_ENV, "before-rename:model.onnx")
    monkeypatch.setenv(files.FAULT_SIGNAL_ENV, "ENOSPC")
    with pytest.raises(ArtifactError, match=f"^Cannot write {out}: no space left on device.$"):
        write_bytes_atomic(out, b"new")
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    monkeypatch.setattr(faults, "nearly_full", lambda folder: True)  # torch hides ENOSPC in a RuntimeError
    monkeypatch.delenv(files.FAULT_ENV)
    with pytest.raises(ArtifactError, match="no space left on device"), atomic_path(out):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
