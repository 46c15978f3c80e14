"""``alexnet-deploy doctor``: what this machine can run."""

from __future__ import annotations

from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json, styled


@handle_errors
def doctor_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Report library versions, GPUs (probed in a subprocess), ONNX Runtime providers, and what every backend of
    the registry can do here: build engines, run them, or why not.

    Exits 0 whatever it finds.
    """
    from dataclasses import asdict

    from rich.table import Table

    from alexnet_deploy.backends import backends as registry
    from alexnet_deploy.core.system import system_report

    statuses = {spec.name.value: spec.status() for spec in registry()}
    report = system_report({name: asdict(st) | {"summary": st.describe()} for name, st in statuses.items()})
    if as_json:
        print_json(report.to_dict())
        return
    versions = Table(title="Libraries", show_header=False)
    for name, version in report.versions.items():
        versions.add_row(name, version)
    console.print(versions)
    if report.gpus:
        for gpu in report.gpus:
            console.print(f"GPU: {gpu.name} (compute {gpu.compute_capability}, {gpu.memory_gib} GiB)")
    else:
        console.print(f"GPU: none found ({report.gpu_probe}).")
    backends = Table(title="Backends")
    for col in ("backend", "version", "build", "run", "notes"):
        backends.add_column(col)
    for name, st in statuses.items():
        yes = {True: styled("yes", "green"), False: styled("no", "red")}
        backends.add_row(name, st.version or "-", yes[st.can_build], yes[st.can_run], st.reason)
    console.print(backends)
