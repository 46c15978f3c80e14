"""``alexnet-deploy doctor``: what this machine can run."""

from __future__ import annotations

from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json


@handle_errors
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Report library versions, GPUs (probed in a subprocess), ONNX Runtime providers and usable backends.

    Exits 0 whatever it finds.
    """
    from rich.markup import escape
    from rich.table import Table

    from alexnet_deploy.core.system import system_report

    report = system_report()
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
        console.print(f"GPU: none found ({escape(report.gpu_probe)}).")
    backends = Table(title="Backends")
    backends.add_column("backend")
    backends.add_column("status")
    for name, status in report.backends.items():
        backends.add_row(name, escape(status))
    console.print(backends)
