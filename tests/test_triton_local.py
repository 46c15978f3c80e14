"""The local Triton server's set-up without the real server: the cached environment (one build under a lock,
a cut-short build redone, a failed one removed) and the process handling (a server that dies says why; stopping
ends its whole process group). The real server runs in tests/test_triton.py and tests/bench/test_bench_served.py.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

import alexnet_deploy.triton_local as local
from alexnet_deploy.triton_local import (
    BUILDING,
    MARKER,
    LocalTritonServer,
    ServerEnv,
    ServerUnavailable,
    ensure_server_env,
)


def _fake_build(calls: list, delay: float = 0.0, fail: bool = False):
    def build(root: Path, base, requirements, deadline) -> ServerEnv:
        calls.append(root)
        root.mkdir(exist_ok=True)
        (root / "half-installed").write_text("x")
        time.sleep(delay)
        if fail:
            raise ServerUnavailable("pip install failed (no network).")
        (root / MARKER).write_text(json.dumps({"requirements": list(requirements), "library_path": ["/lib"],
                                               "tritonserver_root": str(root / "ts")}))  # fmt: skip
        return local._describe(root)

    return build


def test_one_build_for_two_callers_and_reuse_after(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr(local, "_build", _fake_build(calls, delay=0.5))
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_server_env(tmp_path / "env"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1]
    assert results[0].tritonserver == tmp_path / "env" / "ts" / "bin" / "tritonserver"
    assert results[0].requirements == local.server_requirements()
    assert ensure_server_env(tmp_path / "env") == results[0] and len(calls) == 1  # complete: reused, not rebuilt


def test_a_cut_short_build_is_redone_and_a_failed_one_leaves_nothing(monkeypatch, tmp_path):
    calls: list = []
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / BUILDING).write_text("1\n")  # ours, cut short: no completion marker
    (tmp_path / "env" / "half-installed").write_text("from a build that was killed")
    monkeypatch.setattr(local, "_build", _fake_build(calls))
    env = ensure_server_env(tmp_path / "env")
    assert calls == [tmp_path / "env"] and (env.root / MARKER).is_file()
    monkeypatch.setattr(local, "_build", _fake_build(calls, fail=True))
    with pytest.raises(ServerUnavailable, match="no network"):
        ensure_server_env(tmp_path / "other")
    assert not (tmp_path / "other").exists()
    # a folder that is not ours (no marker of a build of ours) is refused and left as it was
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(ServerUnavailable, match="not a Triton server environment of ours"):
        ensure_server_env(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's" and len(calls) == 2


def test_a_held_lock_is_waited_for_until_the_deadline(monkeypatch, tmp_path):
    import fcntl

    monkeypatch.setattr(local, "_build", _fake_build([]))
    lock = os.open(tmp_path / ".env.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with pytest.raises(ServerUnavailable, match="held .*too long"):
            ensure_server_env(tmp_path / "env", timeout_s=1.5)
    finally:
        os.close(lock)
    assert ensure_server_env(tmp_path / "env").root == tmp_path / "env"


def _fake_server(tmp_path: Path, script: str) -> ServerEnv:
    tree = tmp_path / "ts"
    (tree / "bin").mkdir(parents=True)
    binary = tree / "bin" / "tritonserver"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    return ServerEnv(root=tmp_path, python=tmp_path / "bin" / "python", tritonserver=binary, backends=tree / "backends",
                     library_path=("/nowhere",), requirements=())  # fmt: skip


def test_a_server_that_exits_says_why(tmp_path):
    env = _fake_server(tmp_path, 'echo "error: no model repository at $1" ; exit 3')
    with pytest.raises(ServerUnavailable, match="exited with code 3; its log ends:\n.*error: no model repository"):
        LocalTritonServer(env, tmp_path / "repo", startup_timeout_s=10).start()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead child nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_stopping_ends_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    # A "server" that starts a child (as tritonserver starts its Python stubs) and never becomes ready.
    env = _fake_server(tmp_path, f'sleep 300 & echo $! > {pids}; echo $$ >> {pids}; echo "$LD_LIBRARY_PATH" > '
                                 f'{tmp_path / "ld"}; wait')  # fmt: skip
    server = LocalTritonServer(env, tmp_path / "repo", startup_timeout_s=2)
    with pytest.raises(ServerUnavailable, match="was not ready in 2 s"):
        server.start()
    child, parent = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (_running(child) or _running(parent)):
        time.sleep(0.1)
    assert not _running(child) and not _running(parent)
    assert (tmp_path / "ld").read_text().startswith("/nowhere")  # the interpreter's lib/ comes first
    assert server._workdir is None  # its working folder is gone
