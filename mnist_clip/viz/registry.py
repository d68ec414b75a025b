"""Which pictures a run gets, from what its net has, and drawing them into its folder.

Each picture family lives in its own module (mlp: the layered net's, recurrent: a recurrent
net's, probe: a Keras model's); this registry is the one place that picks among them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from matplotlib.figure import Figure

from mnist_clip.errors import InputError
from mnist_clip.nn import Net
from mnist_clip.probe_schema import is_probe_config
from mnist_clip.runs.folder import PLOTS_DIR
from mnist_clip.runs.reader import Run, read_run
from mnist_clip.viz.cell import cell_figure
from mnist_clip.viz.mlp import RUN_FIGURES
from mnist_clip.viz.probe import PROBE_FIGURES
from mnist_clip.viz.recurrent import TIME_FIGURES
from mnist_clip.viz.style import empty_figure, save_figure

Has = Callable[[Mapping[str, Any], Net], bool]  # from the run's config and net

# (does the run's net have it, its family's figures by file name), the first match wins
FAMILIES: tuple[tuple[Has, dict[str, Callable[[Run], Figure]]], ...] = (
    (lambda config, net: is_probe_config(config), PROBE_FIGURES),
    (lambda config, net: net.is_recurrent, TIME_FIGURES),
    (lambda config, net: True, RUN_FIGURES),
)

# (does the run's net have it, file name, figure): pictures of one part a net may have, after its family's
PARTS: tuple[tuple[Has, str, Callable[[Run], Figure]], ...] = (
    (lambda config, net: "dc" in dict(net.signal_groups), "cell.png", cell_figure),  # an LSTM's cell state
)


def figures_of(config: Mapping[str, Any], net: Net) -> dict[str, Callable[[Run], Figure]]:
    """The figures of a run with this config and net, by file name: its net's family, then
    those of the parts it has."""
    figures = dict(next(figures for has, figures in FAMILIES if has(config, net)))
    figures.update({filename: make for has, filename, make in PARTS if has(config, net)})
    return figures


def figures_for(run: Run) -> dict[str, Callable[[Run], Figure]]:
    """The figures a run gets, by file name."""
    return figures_of(run.config, run.net)


def figure_names(run_dir: str | Path) -> list[str]:
    """The file names of the run's figures, in drawing order."""
    run = read_run(run_dir)
    return list(figures_for(run))


def write_run_plots(run_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Draw every figure of the run (or those of `names`) from the folder's files into <run>/plots/."""
    run = read_run(run_dir)
    out = run.path / PLOTS_DIR
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder; move it away to draw the pictures")
    out.mkdir(exist_ok=True)
    from mnist_clip.console.interrupts import drawing_stopped

    written = []
    for filename, make in figures_for(run).items():
        if names is not None and filename not in names:
            continue
        if drawing_stopped():  # Ctrl-C while drawing: the run is kept, `mnist-clip plot` draws the rest
            break
        written.append(save_figure(make(run) if run.steps else empty_figure(run), out / filename))
    return written
