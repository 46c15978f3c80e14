"""``alexnet-deploy train``: the paper's recipe (or the CPU demo preset) with progress bars and checkpoints."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json


def progress_hooks():
    """Rich progress bars (decoding, then one bar per epoch) and a line per epoch; rank 0 only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from train.loop import Hooks

    class RichHooks(Hooks):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self.tasks: dict[str, Any] = {}

        def _task(self, key: str, description: str, total: int) -> Any:
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(description, total=total, info="")
            return self.tasks[key]

        def on_message(self, text: str) -> None:
            self.progress.console.print(text)

        def on_load_progress(self, split: str, done: int, total: int) -> None:
            self.progress.update(self._task(f"load-{split}", f"decoding {split}", total), completed=done)

        def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
            for key in [k for k in self.tasks if k.startswith("load-")]:
                self.progress.remove_task(self.tasks.pop(key))
            self.epochs = epochs
            self._task("epochs", "epochs", epochs)
            self.progress.update(self.tasks["epochs"], completed=epoch - 1)
            if "steps" in self.tasks:
                self.progress.remove_task(self.tasks.pop("steps"))
            self._task("steps", f"epoch {epoch}", steps)

        def on_step(self, info) -> None:
            info_text = f"loss {info.loss:.3f}  lr {info.lr:.4g}  {info.images_per_s:.0f} img/s"
            self.progress.update(self.tasks["steps"], completed=info.step, info=info_text)

        def on_epoch_end(self, r: dict) -> None:
            self.progress.update(self.tasks["epochs"], completed=r["epoch"])
            self.progress.console.print(
                f"epoch {r['epoch']}/{self.epochs}  train loss {r['train_loss']:.3f} top-1 {r['train_top1']:.1%}  "
                f"val loss {r['val_loss']:.3f} top-1 {r['val_top1']:.1%} top-5 {r['val_top5']:.1%}  "
                f"lr {r['lr']:.4g}  {r['img_per_s']:.0f} img/s  elapsed {r['elapsed_seconds'] / 60:.1f} min"
                + ("  (partial epoch)" if r["partial_epoch"] else "")
            )

    return RichHooks()


@handle_errors
def train_command(
    data: Annotated[
        Path | None, typer.Argument(help="Dataset root holding train/ and val/ (default: the preset's).")
    ] = None,
    preset: Annotated[str, typer.Option(help="Recipe to start from: paper (the 2012 recipe) or demo (CPU).")] = "paper",
    config: Annotated[Path | None, typer.Option("--config", help="JSON or TOML file of recipe options.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder for checkpoints and logs.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size (split over DDP processes).")] = None,
    lr: Annotated[float | None, typer.Option(help="Initial (plateau) or peak (warmup_cosine) learning rate.")] = None,
    width: Annotated[float | None, typer.Option(help="Width multiplier on channels and FC width.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Crop size the network sees, in pixels.")] = None,
    devices: Annotated[
        str | None,
        typer.Option(help="One device (cpu, cuda:0) or two for the paper's two columns (cuda:0,cuda:1; cuda:0,cpu)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loading worker processes (folder loader).")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock budget for the whole run; training stops in time.")
    ] = None,
    ten_crop: Annotated[
        bool | None, typer.Option("--ten-crop/--no-ten-crop", help="Also run the paper's 10-crop test on best.pt.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation, order and augmentation.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue from a last.pt: its configuration, weights, optimizer and RNG.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="NAME=VALUE for any recipe option (repeatable): nesterov=true.")
    ] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved recipe and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON at the end.")] = False,
) -> None:
    """Train AlexNet with the paper's recipe (or the demo preset); writes best.pt, last.pt, metrics and curves.

    Options resolve in layers: the preset (or the resumed checkpoint's recipe), then --config, then --set,
    then the named options. Under torchrun every process runs this command; rank 0 writes the files.

    --resume continues up to --epochs (default: the checkpoint's recipe): a checkpoint already past it is an
    error; one exactly at it trains nothing and exits 0 after bringing best.pt and summary.json up to date.
    """
    from alexnet_deploy.core.errors import ConfigError
    from train.checkpointing import load_resume_checkpoint
    from train.config import command_overrides, resolve_config
    from train.loop import fit

    named = dict(data=data, output=output, epochs=epochs, batch_size=batch_size, lr=lr, width=width,
                 image_size=image_size, devices=devices, workers=workers, max_minutes=max_minutes, ten_crop=ten_crop,
                 seed=seed)  # fmt: skip
    state = load_resume_checkpoint(resume) if resume else None
    cfg = resolve_config(state["config"] if state else preset, config, command_overrides(set_ or [], named))
    if print_config:
        print_json(cfg.to_dict())
        return
    if not cfg.data:
        raise ConfigError("No dataset given: pass the DATA folder or use a preset that names one.")
    is_main = int(os.environ.get("RANK", "0")) == 0
    hooks = progress_hooks() if is_main else None
    with hooks.progress if hooks is not None else contextlib.nullcontext():
        result = fit(cfg, resume=state, resume_path=resume, hooks=hooks)
    if not is_main:
        return
    if as_json:
        print_json(result.summary())
    elif result.best_checkpoint is None:  # every finished run has one; say so plainly rather than name a ghost
        console.print(f"no best.pt was written in {result.output}  ({result.wall_seconds / 60:.1f} min)")
    else:
        best = result.best
        console.print(
            f"best: epoch {best['epoch']}, val top-1 {best['val_top1']:.2%}, top-5 {best['val_top5']:.2%} -> "
            f"{result.best_checkpoint}  ({result.wall_seconds / 60:.1f} min)"
        )
