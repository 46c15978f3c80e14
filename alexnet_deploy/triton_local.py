"""A real Triton server on this machine, from pip: for the served tests and the served benchmark.

NVIDIA's ``nvidia-pytriton`` wheel carries a ``tritonserver`` binary (2.51 for 0.7.0) with Triton's Python
backend only, CPU or GPU. :func:`ensure_server_env` gives it a virtual environment of its own (it pins numpy < 2;
the Python backend needs numpy 1 at run time) with the runtimes our Python-backend models use, built once under
the cache folder and reused:

* ``~/.cache/alexnet-deploy/triton-venv-<hash>`` (``$XDG_CACHE_HOME`` is honoured), the hash over the requirements
  and the interpreter, so a new onnxruntime or Python makes a new environment instead of changing an old one;
* built under a lock (``.triton-venv-<hash>.lock``, an ``flock`` that the kernel drops even after ``kill -9``), so
  two test runs at once build it once; complete only when its marker ``.complete`` (written last) is there; a
  folder without the marker is a build that was cut short, removed and built again;
* every step bounded in time; a failure is one sentence (:class:`ServerUnavailable`).

Two facts of that binary are handled here: the Python backend's stub for each Python version sits apart
(``python_backend_stubs/3.X``) and is copied into ``backends/python`` when the environment is built; and the stub
links ``libpython3.X.so``, which the dynamic loader would take from the system (Debian's 3.11.2 here) rather than
from the interpreter of the environment (pyenv's 3.11.7), failing with ``'_thread.RLock' object has no attribute
'_recursion_count'``; so :class:`LocalTritonServer` puts the interpreter's own ``lib/`` first on
``LD_LIBRARY_PATH``. The stub runs the first ``python3`` on ``PATH`` (the environment's, so its site-packages).

:class:`LocalTritonServer` starts ``tritonserver`` for one repository on 127.0.0.1 with free ports (HTTP and gRPC),
in its own process group and working folder, waits until it is ready, and stops it and its stubs (SIGTERM, then
SIGKILL) when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from alexnet_deploy.core.errors import AlexNetDeployError

PYTRITON = "nvidia-pytriton==0.7.0"  # tritonserver 2.51.0, Python backend only
MARKER = ".complete"
BUILDING = ".alexnet-deploy-building"  # written first into a folder we create: a build of ours, maybe cut short


class ServerUnavailable(AlexNetDeployError):
    """A local Triton server cannot be set up or started here (the sentence says why)."""


@dataclass(frozen=True)
class ServerEnv:
    """A complete server environment: its Python, the ``tritonserver`` binary, its backends and libraries."""

    root: Path
    python: Path
    tritonserver: Path
    backends: Path
    library_path: tuple[str, ...]  # the interpreter's lib/ (libpython), then the wheel's bundled libraries
    requirements: tuple[str, ...]


def cache_dir() -> Path:
    """Where alexnet-deploy keeps what it builds for itself (``$XDG_CACHE_HOME/alexnet-deploy``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alexnet-deploy"


def server_requirements() -> tuple[str, ...]:
    """What the server's Python needs: numpy < 2 and the same onnxruntime and openvino as this environment, so that
    a served model computes what the in-process runner computes."""
    pins = ["numpy<2"]
    for package in ("onnxruntime", "openvino"):
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(package)
    return (*pins, PYTRITON)


def _base_python() -> Path:
    """The interpreter this one was made from (a venv's base), which the server's venv is made from too."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable)


def _run(args: list, what: str, deadline: float, **kwargs) -> str:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ServerUnavailable(f"Setting up the Triton server's environment ran out of time before {what}.")
    try:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=left, **kwargs)
    except subprocess.TimeoutExpired:
        raise ServerUnavailable(f"Setting up the Triton server's environment: {what} took too long.") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip() and "Location" not in ln]
        raise ServerUnavailable(f"Setting up the Triton server's environment: {what} failed "
                                f"({(lines or ['no output'])[-1].strip()[:300]}).")  # fmt: skip
    return done.stdout


@contextlib.contextmanager
def _waiting_lock(path: Path, deadline: float):
    """An exclusive ``flock`` on ``path`` (never through a symlink), waited for until ``deadline``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"Another process has held {path} too long (building the Triton "
                                            "server's environment); try again when it is done.") from None  # fmt: skip
                time.sleep(1)
        yield
    finally:
        os.close(fd)  # releases the lock


def _describe(root: Path) -> ServerEnv:
    facts = json.loads((root / MARKER).read_text())
    tree = Path(facts["tritonserver_root"])
    return ServerEnv(root=root, python=root / "bin" / "python", tritonserver=tree / "bin" / "tritonserver",
                     backends=tree / "backends", library_path=tuple(facts["library_path"]),
                     requirements=tuple(facts["requirements"]))  # fmt: skip


def ensure_server_env(root: Path | None = None, *, timeout_s: float = 900.0) -> ServerEnv:
    """The server's environment, built (under a lock, bounded by ``timeout_s``) unless a complete one is there.

    Args:
        root: where to build it (default: the cache folder, named after the requirements and the interpreter).

    Raises:
        ServerUnavailable: pip cannot install the requirements, the wheel has no stub for this Python, or the time
            ran out.
    """
    requirements = server_requirements()
    base = _base_python()
    key = hashlib.sha256(json.dumps([requirements, str(base.resolve()), sys.version]).encode()).hexdigest()[:12]
    root = Path(root) if root is not None else cache_dir() / f"triton-venv-{key}"
    if (root / MARKER).is_file():
        return _describe(root)
    deadline = time.monotonic() + timeout_s
    root.parent.mkdir(parents=True, exist_ok=True)
    with _waiting_lock(root.parent / f".{root.name}.lock", deadline):
        if (root / MARKER).is_file():  # another process built it while we waited
            return _describe(root)
        if root.exists():
            if not (root / BUILDING).is_file():
                raise ServerUnavailable(f"{root} exists and is not a Triton server environment of ours; remove it "
                                        "or choose another folder.")  # fmt: skip
            shutil.rmtree(root)  # a build of ours that was cut short (no completion marker): start again
        root.mkdir()
        (root / BUILDING).write_text(f"{os.getpid()}\n")
        try:
            return _build(root, base, requirements, deadline)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)  # made by this call, just above
            raise


def _build(root: Path, base: Path, requirements: tuple[str, ...], deadline: float) -> ServerEnv:
    _run([base, "-m", "venv", root], "creating its virtual environment", deadline)
    python = root / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *requirements[:-1]], f"pip install {' '.join(requirements[:-1])}", deadline)
    # The wheel's own dependencies (tritonclient, grpcio, typer...) serve PyTriton's Python API, not the server.
    _run([*pip, "--no-deps", requirements[-1]], f"pip install --no-deps {requirements[-1]}", deadline)
    # find_spec locates the package without importing it (its __init__ needs the dependencies left out above).
    probe = ("import importlib.util, json, sys, sysconfig; print(json.dumps({'v': '%d.%d' % sys.version_info[:2], "
             "'lib': sysconfig.get_config_var('LIBDIR'), 'so': sysconfig.get_config_var('LDLIBRARY'), "
             "'tree': importlib.util.find_spec('pytriton').submodule_search_locations[0] + '/tritonserver'"
             "}))")  # fmt: skip
    facts = json.loads(_run([python, "-c", probe], "finding tritonserver in nvidia-pytriton", deadline))
    tree = Path(facts["tree"])
    stub = tree / "python_backend_stubs" / facts["v"] / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerUnavailable(f"{PYTRITON} has no Python backend stub for Python {facts['v']}; use Python 3.8-3.13.")
    shutil.copy2(stub, tree / "backends" / "python" / stub.name)
    library_path = []
    if facts["lib"] and facts["so"] and (Path(facts["lib"]) / facts["so"]).exists():
        library_path.append(facts["lib"])  # the stub must load this interpreter's libpython, not the system's
    library_path.append(str(tree.parents[1] / "nvidia_pytriton.libs"))
    marker = {"requirements": list(requirements), "tritonserver_root": str(tree), "library_path": library_path,
              "python": facts["v"], "built": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    staged = root / f"{MARKER}.{os.getpid()}.tmp"
    staged.write_text(json.dumps(marker, indent=1))
    os.replace(staged, root / MARKER)  # last: only now is the environment complete
    return _describe(root)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTritonServer:
    """``tritonserver`` serving one repository on 127.0.0.1 (HTTP and gRPC), for the length of a ``with`` block.

    Attributes:
        http_url, grpc_url: ``127.0.0.1:PORT`` once started.
        log: the server's output (a file in its working folder).
    """

    def __init__(self, env: ServerEnv, repository: str | Path, *, startup_timeout_s: float = 120.0,
                 log_verbose: int = 0) -> None:  # fmt: skip
        self.env, self.repository = env, Path(repository).resolve()
        self.startup_timeout_s, self.log_verbose = startup_timeout_s, log_verbose
        self.proc: subprocess.Popen | None = None
        self.http_url = self.grpc_url = ""
        self._workdir: tempfile.TemporaryDirectory | None = None
        self.log: Path | None = None
        self.last_log = ""  # the server's whole log, kept when it stops

    def __enter__(self) -> LocalTritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """The server's environment: the venv's ``python3`` first on PATH, its libpython and libraries first."""
        env = dict(os.environ)
        env["PATH"] = f"{self.env.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*self.env.library_path, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # nothing of the caller's Python may leak in
            env.pop(name, None)
        return env

    def start(self) -> None:
        """Start the server and wait until it and every model are ready.

        Raises:
            ServerUnavailable: it exited or was not ready in time (the sentence ends with its last log lines).
        """
        self._workdir = tempfile.TemporaryDirectory(prefix="alexnet-deploy-tritonserver-")
        work = Path(self._workdir.name)  # the working folder: '' on the stubs' sys.path must hold nothing of ours
        self.log = work / "tritonserver.log"
        http, grpc = free_port(), free_port()
        args = [self.env.tritonserver, f"--model-repository={self.repository}",
                f"--backend-directory={self.env.backends}", "--http-address=127.0.0.1", f"--http-port={http}",
                "--grpc-address=127.0.0.1", f"--grpc-port={grpc}", "--allow-metrics=false",
                "--exit-timeout-secs=2", f"--log-verbose={self.log_verbose}"]  # fmt: skip
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(a) for a in args], stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                         env=self.environment(), start_new_session=True)  # fmt: skip
        self.http_url, self.grpc_url = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.25)
        code = self.proc.poll()
        tail = self.log.read_text(errors="replace")[-2500:]
        self.stop()
        state = f"exited with code {code}" if code is not None else f"was not ready in {self.startup_timeout_s:g} s"
        raise ServerUnavailable(f"tritonserver {state}; its log ends:\n{tail}")

    def stop(self) -> None:
        """Stop the server and the backend stubs it started (its process group); remove its working folder."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:  # the stubs share the group; make sure none outlives the server
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._workdir is not None:
            if self.log is not None and self.log.is_file():
                self.last_log = self.log.read_text(errors="replace")
            self._workdir.cleanup()
            self._workdir = None
