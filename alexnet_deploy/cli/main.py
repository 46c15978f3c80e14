"""The ``alexnet-deploy`` application. Heavy libraries are imported inside commands, so ``--help`` is fast
and never loads TensorRT."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from alexnet_deploy import __version__
from alexnet_deploy.cli import (
    bench,
    build,
    calibrate,
    describe,
    doctor,
    export,
    info,
    predict,
    quickstart,
    sensitivity,
    train,
    triton,
    verify,
)

app = typer.Typer(
    name="alexnet-deploy",
    help="AlexNet from the 2012 paper to a verified, benchmarked inference engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alexnet-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """AlexNet from the 2012 paper to a verified, benchmarked inference engine."""
    from alexnet_deploy.cli._common import SafeRichHandler, err_console

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        # stderr: log lines must never mix into a command's --json output on stdout.
        handlers=[SafeRichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


app.command("quickstart")(quickstart.quickstart_command)
app.command("info")(info.info_command)
app.command("doctor")(doctor.doctor_command)
app.command("train")(train.train_command)
app.command("export")(export.export_command)
app.command("describe")(describe.describe_command)
app.command("calibrate")(calibrate.calibrate_command)
app.command("build")(build.build_command)
app.command("verify")(verify.verify_command)
app.command("sensitivity")(sensitivity.sensitivity_command)
app.command("bench")(bench.bench_command)
app.command("predict")(predict.predict_command)
app.command("triton")(triton.triton_command)


def main() -> None:
    """Console-script entry point: SIGTERM and SIGHUP end a command as Ctrl-C does (its cleanup runs)."""
    from alexnet_deploy.cli._common import install_signal_handlers

    install_signal_handlers()
    app(prog_name="alexnet-deploy")
