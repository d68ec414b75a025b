"""Which pictures a run gets, from what its net has, and drawing them into its folder.

Each picture family lives in its own module (plots: the MLP's, time_plots: a recurrent
net's, probe_plots: a Keras model's); this registry is the one place that picks among them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from mnist_clip.errors import InputError
from mnist_clip.plots import RUN_FIGURES, empty_figure, save_figure
from mnist_clip.probe_plots import PROBE_FIGURES
from mnist_clip.probe_schema import is_probe_config
from mnist_clip.runs import PLOTS_DIR, Run, read_run
from mnist_clip.time_plots import TIME_FIGURES

# (does the run's net have it, its family's figures by file name), the first match wins
FAMILIES: tuple[tuple[Callable[[Run], bool], dict[str, Callable[[Run], Figure]]], ...] = (
    (lambda run: is_probe_config(run.config), PROBE_FIGURES),
    (lambda run: run.net.is_recurrent, TIME_FIGURES),
    (lambda run: True, RUN_FIGURES),
)


def figures_for(run: Run) -> dict[str, Callable[[Run], Figure]]:
    """The figures a run gets, by file name: its net's family."""
    return next(figures for has, figures in FAMILIES if has(run))


def write_run_plots(run_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Draw every figure of the run (or those of `names`) from the folder's files into <run>/plots/."""
    run = read_run(run_dir)
    out = run.path / PLOTS_DIR
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder; move it away to draw the pictures")
    out.mkdir(exist_ok=True)
    from mnist_clip.interrupts import drawing_stopped

    written = []
    for filename, make in figures_for(run).items():
        if names is not None and filename not in names:
            continue
        if drawing_stopped():  # Ctrl-C while drawing: the run is kept, `mnist-clip plot` draws the rest
            break
        written.append(save_figure(make(run) if run.steps else empty_figure(run), out / filename))
    return written
