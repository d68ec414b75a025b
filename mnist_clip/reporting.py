"""What `mnist-clip train` prints while it runs and when it ends."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from mnist_clip.config import Config
from mnist_clip.experiment import Progress


def norm_listing(step: int, values: dict[str, float], tensors: tuple[str, ...]) -> list[str]:
    """The reference's ==before== / ==after== listing for one step."""
    lines = [f"step {step}  loss {values['loss']:.6g}"]
    for when in ("before", "after"):
        norms = "  ".join(f"{name} {values[f'{name}_{when}']:.6g}" for name in tensors)
        lines.append(f"=={when}==  {norms}  global {values[f'global_norm_{when}']:.6g}")
    return lines


class ConsoleProgress:
    """One line per epoch; the norm listing every `print_every` steps if asked."""

    def __init__(self, config: Config, print_every: int = 0):
        self.config = config
        self.print_every = print_every

    def progress(self) -> Progress:
        return Progress(on_epoch=self.on_epoch, on_steps=self.on_steps)

    def on_steps(self, result) -> None:
        if not self.print_every:
            return
        for i, row in enumerate(result.values):
            step = result.first_step + i
            if step % self.print_every == 0:
                for line in norm_listing(step, dict(zip(result.columns, map(float, row))), self.config.param_names):
                    click.echo(line)

    def on_epoch(self, result, trainer) -> None:
        steps = len(result.values)
        if steps == 0:
            return
        norms = result.column("global_norm_before")
        clip_text = "no clipping" if self.config.clip == "none" else f"clipped {int(result.column('clipped').sum())}/{steps} steps"
        click.echo(
            f"epoch {result.epoch + 1:>{len(str(self.config.epochs))}}/{self.config.epochs}"
            f"  train loss {np.mean(result.column('loss')):.4g}"
            f"  test loss {result.test_loss:.4g}  test acc {100 * result.test_accuracy:.1f}%"
            f"  |g| {np.nanmin(norms) if np.isfinite(norms).any() else float('nan'):.3g}..{np.nanmax(norms):.3g}"
            f"  {clip_text}  {result.seconds:.2f} s"
        )


def summary_lines(summary: dict, run_dir: Path, plot_paths: list) -> list[str]:
    lines = [
        f"status: {summary['status']}  steps: {summary['steps']}"
        f"  clipped: {summary['clipped_steps']} ({100 * summary['clipped_fraction']:.1f}%)"
    ]
    if summary["test_accuracy"] is not None:
        lines.append(
            f"final train loss {summary['final_train_loss']:.4g}  test loss {summary['test_loss']:.4g}"
            f"  test accuracy {100 * summary['test_accuracy']:.2f}%"
        )
    if summary["ms_per_step"] is not None:
        compiling = " (one epoch only: compiling included)" if summary["ms_per_step_includes_compiling"] else ""
        lines.append(f"{summary['ms_per_step']:.3f} ms per step{compiling}, {summary['wall_seconds']:.1f} s in all")
    lines.append(f"files: {run_dir}/ (metrics.csv, epochs.csv, summary.json, config.json)")
    if plot_paths:
        lines.append(f"plots: {plot_paths[0].parent}/ ({', '.join(p.name for p in plot_paths)})")
    return lines
