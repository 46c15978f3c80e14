"""core/tempnames: our temporary names say whose they are, and a reused pid never passes for the writer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alexnet_deploy.core.tempnames import MARKER, parse_temp_name, process_start, temp_name, user_path, writer_alive


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_temporary_name_says_whose_it_is_and_a_reused_pid_is_not_alive():
    name = temp_name(Path("/x/model.onnx"), "build")
    parsed = parse_temp_name(name)
    assert name.startswith(f".model.onnx.{MARKER}{os.getpid()}-{process_start(os.getpid())}-build-")
    assert parsed is not None and parsed.name == "model.onnx" and parsed.what == "build" and parsed.alive
    parent = os.getppid()
    assert writer_alive(parent, process_start(parent))
    assert not writer_alive(parent, process_start(parent) + 1)  # the same pid, another process: not the writer
    assert not writer_alive(_dead_pid(), 1)
    # Names users give their own files never parse as ours.
    for user_name in (".notes.2024.md", ".env.12345.local", ".model.onnx.20240101.bak", ".model.onnx.123.abc.tmp",
                      f".x.{MARKER}12-34-tmp-nothex!!", f"x.{MARKER}12-34-tmp-0123abcd"):  # fmt: skip
        assert parse_temp_name(user_name) is None, user_name


def test_the_path_a_user_knows_for_one_of_ours_is_the_output_it_is_for():
    build = temp_name(Path("/out/e.onnx"), "build")
    inner = temp_name(Path("/x/calibration"), "calibrate")
    assert user_path(Path("/out") / build / inner / "augmented.onnx") == Path("/out/e.onnx")
    assert user_path("/out/.notes.2024.md") == Path("/out/.notes.2024.md")
