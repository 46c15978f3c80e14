"""core/faults: a failed write is one sentence naming the output and the cause; fault points stop a writer where a
test names them, as a kill, a signal or a full disk would."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

from alexnet_deploy.core import faults
from alexnet_deploy.core.tempnames import temp_name

REPO = Path(__file__).resolve().parents[2]
write_error = faults.write_error


def test_write_faults_are_one_sentence_naming_the_output_and_the_cause(tmp_path):
    out = tmp_path / "model.onnx"
    tmp = out.with_name(temp_name(out, "tmp"))
    for code, cause in [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "the file system is read-only"),
                        (errno.EDQUOT, "disk quota exceeded"), (errno.EACCES, "permission denied")]:  # fmt: skip
        sentence = write_error(OSError(code, os.strerror(code), str(tmp)), out)
        assert sentence == f"Cannot write {out}: {cause}."
    assert write_error(OSError(errno.ENOENT, "No such file", str(tmp)), out) is None
    assert write_error(OSError(errno.EACCES, "denied", "/elsewhere/input.onnx"), out) is None  # another file's
    assert write_error(RuntimeError("file write failed"), out) is None  # plenty of space here


def test_a_fault_point_names_one_file_and_a_signal(tmp_path):
    code = ("from alexnet_deploy.core.files import write_bytes_atomic\n"
            f"write_bytes_atomic({str(tmp_path / 'a.json')!r}, b'a')\n"
            f"write_bytes_atomic({str(tmp_path / 'b.json')!r}, b'b')\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), faults.FAULT_ENV: "after-rename:b.json"}
    killed = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "b.json").read_bytes() == b"b"
    env |= {faults.FAULT_ENV: "before-rename:a.json", faults.FAULT_SIGNAL_ENV: "TERM"}
    (tmp_path / "a.json").unlink()
    termed = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert termed.returncode == -signal.SIGTERM and not (tmp_path / "a.json").exists()
