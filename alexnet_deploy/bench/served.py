"""A model served by Triton as a bench target: ``alexnet-deploy bench triton://HOST:PORT/MODEL``.

What perf_analyzer measures, through the bench harness (warm-up, interleaving with the in-process runner,
percentiles, contention): :class:`TritonRunner` sends each batch as one inference request over HTTP or gRPC
(tritonclient), with ``workers`` client threads so that the harness's N request streams keep N requests in flight
(each thread owns its client: tritonclient's HTTP client is not shared between threads). Around every timed chunk
the server's statistics extension (``v2/models/NAME/stats``) is read twice, and the difference says what the server
itself spent per request (:class:`ServerStats`: time queued, computing, per request; executions; the batch the
dynamic batcher formed). For a server on this machine (a loopback address) the processes serving the port are
found in ``/proc``, and their CPU time is counted as part of the measurement, not as another process's
contention.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends.base import Runner
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError

SCHEMES = {"triton": "http", "http": "http", "grpc": "grpc"}
_ENDPOINT = re.compile(r"^(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})"
                       r"/(?P<model>[A-Za-z0-9_.-]+)(?:/(?P<version>\d+))?/?$")  # fmt: skip
_DATATYPES = {"FP32": np.float32, "FP16": np.float16}
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_DURATIONS = ("success", "queue", "compute_input", "compute_infer", "compute_output")  # Triton's per-request times


@dataclass(frozen=True)
class Endpoint:
    """Where a served model is: ``protocol`` (http or grpc), ``host``, ``port``, ``model`` and ``version``."""

    protocol: str
    host: str
    port: int
    model: str
    version: str = ""

    @property
    def url(self) -> str:
        """``host:port``, as tritonclient takes it."""
        return f"{self.host}:{self.port}"

    @property
    def local(self) -> bool:
        """Served from this machine (a loopback address)."""
        return self.host in LOOPBACK or self.host.startswith("127.")

    def __str__(self) -> str:
        return f"triton://{self.url}/{self.model}" + (f"/{self.version}" if self.version else "")


def is_endpoint(text: str) -> bool:
    """Whether a bench argument names a served model rather than an artifact file."""
    return text.split("://", 1)[0].lower() in SCHEMES and "://" in text


def parse_endpoint(text: str, protocol: str | None = None) -> Endpoint:
    """``triton://HOST:PORT/MODEL[/VERSION]`` (HTTP unless ``protocol`` says ``grpc``), ``http://...`` or
    ``grpc://...``.

    Raises:
        ConfigError: not of that form, an unknown protocol, or a port out of range.
    """
    match = _ENDPOINT.match(text.strip())
    if not match or match["scheme"].lower() not in SCHEMES:
        raise ConfigError(f"A served model is named triton://HOST:PORT/MODEL (or grpc://HOST:PORT/MODEL), not "
                          f"{text!r}.")  # fmt: skip
    chosen = (protocol or SCHEMES[match["scheme"].lower()]).lower()
    if chosen not in ("http", "grpc"):
        raise ConfigError(f"The protocol must be http or grpc, not {protocol!r}.")
    if not 0 < int(match["port"]) < 65536:
        raise ConfigError(f"Port {match['port']} in {text!r} is out of range.")
    return Endpoint(chosen, match["host"], int(match["port"]), match["model"], match["version"] or "")


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise MissingBackendError(f"tritonclient[{protocol}] is not installed (pip install "
                                  "'alexnet-deploy[triton]').") from None  # fmt: skip
    return module


def _as_json(answer: Any) -> dict[str, Any]:
    """tritonclient's answers as plain dicts (gRPC's JSON writes 64-bit integers as strings; unwrap ``config``)."""
    return answer.get("config", answer) if isinstance(answer, dict) else answer


@dataclass(frozen=True)
class ServerStats:
    """What the server spent on the requests of one window, from its statistics extension (per request, ms)."""

    requests: int
    executions: int
    inferences: int
    queue_ms: float
    compute_ms: float  # compute_input + compute_infer + compute_output
    compute_infer_ms: float
    request_ms: float  # from arrival to response, as the server saw it

    @property
    def batch(self) -> float:
        """Images per execution: what the dynamic batcher formed (and the requests' own batch)."""
        return self.inferences / self.executions if self.executions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()} | {
            "batch": round(self.batch, 3)
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ServerStats | None:
        return None if not d else cls(**{k: d[k] for k in cls.__dataclass_fields__})

    @classmethod
    def between(cls, before: dict[str, int], after: dict[str, int]) -> ServerStats:
        """The window between two snapshots of :meth:`TritonRunner.server_counters`."""
        d = {k: after[k] - before[k] for k in after}
        per = max(d["success_count"], 1)
        ms = {k: d[f"{k}_ns"] / per / 1e6 for k in _DURATIONS}
        compute = ms["compute_input"] + ms["compute_infer"] + ms["compute_output"]
        return cls(requests=d["success_count"], executions=d["execution_count"], inferences=d["inference_count"],
                   queue_ms=ms["queue"], compute_ms=compute, compute_infer_ms=ms["compute_infer"],
                   request_ms=ms["success"])  # fmt: skip


def _counters(model_stats: list[dict[str, Any]], version: str) -> dict[str, int]:
    stats = [s for s in model_stats if not version or str(s.get("version")) == version]
    total = dict.fromkeys(("inference_count", "execution_count", "success_count", *(f"{k}_ns" for k in _DURATIONS)), 0)
    for s in stats:
        inference = s.get("inference_stats") or {}
        values = {"inference_count": s.get("inference_count"), "execution_count": s.get("execution_count"),
                  "success_count": (inference.get("success") or {}).get("count")}  # fmt: skip
        values |= {f"{k}_ns": (inference.get(k) or {}).get("ns") for k in _DURATIONS}
        for k, v in values.items():
            total[k] += int(v or 0)
    return total


class TritonRunner(Runner):
    """Runs batches on a model served by Triton (KServe v2 over HTTP or gRPC); thread-safe up to ``workers``
    requests in flight.

    Args:
        endpoint: where the model is.
        workers: client threads, each with its own connection (the most requests kept in flight at once).
        timeout_s: how long one request may take.
    """

    backend = "triton"

    def __init__(self, endpoint: Endpoint, workers: int = 1, timeout_s: float = 60.0, name: str | None = None):
        super().__init__(name or f"triton {endpoint.model} ({endpoint.protocol})", "served")
        self.endpoint, self.workers, self.timeout_s = endpoint, max(1, workers), timeout_s
        self.module = None
        self.input_name = self.output_name = ""
        self.input_shape: tuple[int, ...] = ()
        self.input_dtype: type = np.float32
        self._max_batch: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.threads = None  # the server's, not ours

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.endpoint.protocol == "grpc":
                client = self.module.InferenceServerClient(self.endpoint.url)
            else:
                client = self.module.InferenceServerClient(self.endpoint.url, connection_timeout=self.timeout_s,
                                                           network_timeout=self.timeout_s)  # fmt: skip
            self._local.client = client
        return client

    def _ask(self, what: str, call):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - tritonclient raises its own, gevent's and socket errors
            text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"Triton at {self.endpoint.url} ({self.endpoint.protocol}) failed {what} of model "
                                f"{self.endpoint.model}: {text}.") from None  # fmt: skip

    def activate_impl(self) -> None:
        self.module = _client_module(self.endpoint.protocol)
        client, grpc, version = self._client(), self.endpoint.protocol == "grpc", self.endpoint.version
        kwargs = {"as_json": True} if grpc else {}
        if not self._ask("to answer", lambda: client.is_server_live()):
            raise ArtifactError(f"Triton at {self.endpoint.url} is not live.")
        if not self._ask("to say whether it is ready", lambda: client.is_model_ready(self.endpoint.model, version)):
            raise ArtifactError(f"Triton at {self.endpoint.url} has no ready model {self.endpoint.model}"
                                f"{' version ' + version if version else ''}.")  # fmt: skip
        meta = _as_json(self._ask("to describe", lambda: client.get_model_metadata(self.endpoint.model, version,
                                                                                   **kwargs)))  # fmt: skip
        config = _as_json(self._ask("to give the config", lambda: client.get_model_config(self.endpoint.model, version,
                                                                                          **kwargs)))  # fmt: skip
        inputs, outputs = meta.get("inputs") or [], meta.get("outputs") or []
        if len(inputs) != 1 or len(outputs) != 1 or str(inputs[0].get("datatype")) not in _DATATYPES:
            raise ArtifactError(f"Model {self.endpoint.model} at {self.endpoint.url} must take one FP32 or FP16 image "
                                f"input and give one output; it has {inputs} and {outputs}.")  # fmt: skip
        self.input_name, self.output_name = inputs[0]["name"], outputs[0]["name"]
        self.input_dtype = _DATATYPES[inputs[0]["datatype"]]
        self.input_shape = tuple(int(d) for d in inputs[0]["shape"][1:])
        self._max_batch = int(config.get("max_batch_size") or 0) or None
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="triton-client")
        # One call per worker at once, so each opens its client and connection before any timing starts.
        barrier = threading.Barrier(self.workers)
        ready = [self._pool.submit(lambda: (barrier.wait(30), self._client().is_server_ready())) for _ in
                 range(self.workers)]  # fmt: skip
        for f in ready:
            f.result(timeout=60)

    def _request(self, images: np.ndarray) -> np.ndarray:
        module, client = self.module, self._client()
        data = np.ascontiguousarray(images, dtype=self.input_dtype)
        inp = module.InferInput(self.input_name, list(data.shape), "FP16" if self.input_dtype is np.float16 else "FP32")
        inp.set_data_from_numpy(data)
        out = [module.InferRequestedOutput(self.output_name)]
        kwargs = {"client_timeout": self.timeout_s} if self.endpoint.protocol == "grpc" else {}
        answer = self._ask("a request", lambda: client.infer(self.endpoint.model, [inp], model_version=
                                                             self.endpoint.version, outputs=out, **kwargs))  # fmt: skip
        return answer.as_numpy(self.output_name)

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        return self._pool.submit(self._request, images).result()

    def deactivate_impl(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def server_counters(self) -> dict[str, int]:
        """The server's cumulative statistics of this model (success, queue and compute counts and ns)."""
        client, grpc = self._client(), self.endpoint.protocol == "grpc"
        kwargs = {"as_json": True} if grpc else {}
        answer = self._ask("to give its statistics", lambda: client.get_inference_statistics(
            self.endpoint.model, self.endpoint.version, **kwargs))  # fmt: skip
        return _counters(answer.get("model_stats") or [], self.endpoint.version)


# -- the server's own CPU time (a server on this machine is part of the measurement, not contention) -------------
def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])  # state 0A: LISTEN
    return inodes


def server_pid(port: int) -> int | None:
    """The process listening on ``port`` on this machine, found through ``/proc`` (None if not visible)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def _stat(pid: str) -> tuple[int, float] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # ppid, utime+stime


def process_tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and its descendants (Triton's backend stubs are its children)."""
    stats = {p.name: s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(p.name)) is not None}
    tree, total, grew = {str(root)}, 0.0, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if pid not in tree and str(ppid) in tree:
                tree.add(pid)
                grew = True
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def server_cpu_counter(endpoint: Endpoint):
    """A callable giving the served process tree's CPU seconds, or None where the server is not on this machine
    or its process cannot be seen."""
    if not endpoint.local:
        return None
    pid = server_pid(endpoint.port)
    if pid is None:
        return None
    return lambda: process_tree_cpu(pid)


def served_target(endpoint: Endpoint, *, workers: int, reference=None):
    """A :class:`~alexnet_deploy.bench.results.BenchTarget` for a served model, its input shape and largest batch
    read from the server (so a missing server or model is one sentence before anything is timed).

    Args:
        workers: the most requests kept in flight (the highest concurrency).
        reference: the in-process target of the same model, if any: its FLOPs per image and precision are the
            served model's too.

    Raises:
        ArtifactError / ConfigError / MissingBackendError: nothing answers there, no such ready model, or
            tritonclient is missing.
    """
    from alexnet_deploy.bench.results import BenchTarget

    if not reachable(endpoint):
        raise ConfigError(f"Nothing answers at {endpoint.url} ({endpoint.protocol}); is the Triton server running "
                          "and is that its port?")  # fmt: skip
    runner = TritonRunner(endpoint, workers)
    runner.activate()  # reads the model's metadata and config
    runner.deactivate()
    cpu = server_cpu_counter(endpoint)
    where = "its server's processes on this machine count as part of the measurement"
    if cpu is None:
        where = "the server's own CPU use is not visible from here (counted as the others' if on this machine)"
    same = reference is not None and tuple(reference.image_shape) == runner.input_shape
    if same:
        runner.precision = reference.runner.precision
    return BenchTarget(label=runner.name, runner=runner, artifact=str(endpoint), device="served",
                       flops_per_image=reference.flops_per_image if same else None,
                       image_shape=runner.input_shape, thread_safe=True, notes=f"served by Triton; {where}",
                       server_counters=runner.server_counters, process_cpu=cpu)  # fmt: skip


def add_served(targets: list, base: str | None, endpoints: list[Endpoint], *, workers: int, baseline: str | None,
               compare: bool) -> tuple[list, str | None]:  # fmt: skip
    """``targets`` (from the artifacts) plus one target per served model, and the baseline of the ratios.

    Unless told otherwise (``baseline``, or ``compare`` for PyTorch's), ratios divide by the in-process runner of
    the first artifact given beside the served models: the served figures over it are the server's overhead.

    Raises:
        ConfigError: the baseline named is none of the targets; anything :func:`served_target` raises.
    """
    local = next((t for t in targets if t.artifact), None)  # baselines added for comparison have no artifact
    targets = [*targets, *(served_target(e, workers=workers, reference=local) for e in endpoints)]
    if baseline is None and not compare:
        base = local.label if local else None
    elif baseline not in (None, "none") and base is None:
        base = baseline
    labels = [t.label for t in targets]
    if base is not None and base not in labels:
        raise ConfigError(f"The baseline '{base}' is none of the targets: {', '.join(labels)}.")
    return targets, base


def reachable(endpoint: Endpoint, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the endpoint (a quick check before the client libraries)."""
    try:
        with socket.create_connection((endpoint.host.strip("[]"), endpoint.port), timeout=timeout_s):
            return True
    except OSError:
        return False
