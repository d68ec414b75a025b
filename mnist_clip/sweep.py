"""A grid of runs: parse --grid, run the cells (resumably, in parallel if asked), tabulate and map them."""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnist_clip.config import CONFIG_KEYS, Config, normalize_key, unknown_key_message
from mnist_clip.errors import InputError
from mnist_clip.runs import SUMMARY_FILE, format_value, read_run, write_atomic

DEFAULT_GRID = ("lr=0.01,0.03,0.1,0.3", "clip_norm=none,1,5,15", "input_scale=50,255")
FINISHED = ("completed", "diverged")
METRICS = ("test_accuracy", "final_loss")
MAX_GRID_KEYS = 4  # x axis, y axis, panel columns, panel rows


@dataclass(frozen=True)
class Cell:
    """One grid point: its settings as given, its full Config and its folder name."""

    settings: tuple[tuple[str, Any], ...]
    config: Config

    @property
    def name(self) -> str:
        return ",".join(f"{key}={format_setting(value)}" for key, value in self.settings)


def format_setting(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "+".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(key: str, text: str) -> Any:
    """One grid value, in the type of the Config field (`none` for clip_norm means no clipping)."""
    kind = Config.__dataclass_fields__[key].type
    text = text.strip()
    try:
        if key == "clip_norm" and text.lower() == "none":
            return None
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if kind == "tuple[str, ...]":
            return tuple(part for part in text.split("+") if part)
        return text
    except ValueError:
        raise InputError(f"--grid {key}: cannot read {text!r} as {kind}") from None


def parse_grid(specs: tuple[str, ...] | list[str]) -> list[tuple[str, list]]:
    """["lr=0.01,0.1", "clip_norm=none,15"] -> [("lr", [0.01, 0.1]), ("clip_norm", [None, 15.0])]."""
    grid: list[tuple[str, list]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not values.strip():
            raise InputError(f"--grid {spec!r}: expected KEY=V1,V2,... such as lr=0.01,0.1")
        key = normalize_key(key)
        if key not in CONFIG_KEYS:
            raise InputError(unknown_key_message(key, "--grid"))
        if any(key == existing for existing, _ in grid):
            raise InputError(f"--grid {key} is given twice; put all its values in one --grid")
        grid.append((key, [parse_value(key, value) for value in values.split(",")]))
    if len(grid) > MAX_GRID_KEYS:
        raise InputError(f"--grid takes at most {MAX_GRID_KEYS} keys (x, y, panel columns, panel rows); got {len(grid)}")
    return grid


def make_cells(base: Config, grid: list[tuple[str, list]]) -> list[Cell]:
    """Every combination of the grid's values over the base config (all validated up front)."""
    cells = []
    for combination in itertools.product(*(values for _, values in grid)):
        settings = tuple((key, value) for (key, _), value in zip(grid, combination))
        changes = {}
        for key, value in settings:
            if key == "clip_norm" and value is None:
                changes["clip"] = "none"
            else:
                changes[key] = value
        cells.append(Cell(settings, base.replace(**changes)))
    return cells


def cell_finished(cell_dir: Path) -> bool:
    """A cell is done when its summary says completed or diverged; anything else is run again."""
    try:
        return json.loads((cell_dir / SUMMARY_FILE).read_text())["status"] in FINISHED
    except (OSError, ValueError, KeyError):
        return False


# One dataset per process, loaded once.
_DATASETS: dict = {}


def preload_dataset(config: Config, dataset) -> None:
    """Hand this process's cells a dataset already loaded."""
    _DATASETS[(config.dataset, config.data_path)] = dataset


def run_cell(config: Config, cell_dir: str, plots: bool) -> tuple[str, dict, int]:
    """Train one cell into cell_dir (run in this process or in a worker process)."""
    from mnist_clip.data import load_dataset
    from mnist_clip.tf_setup import import_tensorflow

    import_tensorflow()
    from mnist_clip.experiment import run_experiment

    key = (config.dataset, config.data_path)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(*key)
    path = Path(cell_dir)
    path.mkdir()
    outcome = run_experiment(config, _DATASETS[key], path, draw_plots=plots)
    return cell_dir, outcome.summary, outcome.exit_code


def run_cells(
    cells: list[Cell],
    sweep_dir: Path,
    jobs: int,
    plots: bool,
    report: Callable[[str], None] = print,
) -> int:
    """Run the cells not finished yet. Returns 0, or the exit status of a cell that a
    signal interrupted (the sweep stops there; the cell runs again on resuming)."""
    todo = []
    for cell in cells:
        cell_dir = sweep_dir / "cells" / cell.name
        if cell_finished(cell_dir):
            continue
        if cell_dir.exists():
            shutil.rmtree(cell_dir)  # cut short earlier: start it again
        todo.append((cell, cell_dir))
    done_before = len(cells) - len(todo)
    if done_before:
        report(f"{done_before} of {len(cells)} cells finished earlier; running the other {len(todo)}")
    (sweep_dir / "cells").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def announce(index: int, cell: Cell, summary: dict) -> None:
        if summary["status"] == "diverged":
            result = f"diverged at step {summary['first_nonfinite_step']}"
        elif summary["test_accuracy"] is None:
            result = summary["status"]
        else:
            result = f"{summary['status']}, test acc {100 * summary['test_accuracy']:.1f}%"
        report(f"[{index}/{len(todo)}] {cell.name}: {result}  ({time.perf_counter() - started:.0f} s)")

    if jobs <= 1:
        for index, (cell, cell_dir) in enumerate(todo, start=1):
            _, summary, exit_code = run_cell(cell.config, str(cell_dir), plots)
            announce(index, cell, summary)
            if exit_code:
                return exit_code
    else:
        names = {str(cell_dir): cell for cell, cell_dir in todo}
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_cell, cell.config, str(cell_dir), plots) for cell, cell_dir in todo]
            for index, future in enumerate(futures, start=1):
                cell_dir, summary, _ = future.result()
                announce(index, names[cell_dir], summary)
    return 0


def sweep_rows(cells: list[Cell], sweep_dir: Path) -> list[dict]:
    """sweep.csv: per cell, its grid settings, then the compare table's numbers."""
    from mnist_clip.compare import table_row

    rows = []
    for cell in cells:
        row: dict[str, Any] = {key: format_setting(value) for key, value in cell.settings}
        cell_dir = sweep_dir / "cells" / cell.name
        if cell_dir.is_dir():
            run = read_run(cell_dir)
            row.update(table_row(run))
            row["first_nonfinite_step"] = run.summary.get("first_nonfinite_step") if run.summary else None
        else:
            row.update(status="not run", name=cell.name)
        rows.append(row)
    return rows


def rows_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if row.get(c) is None else format_value(c, row[c]) if isinstance(row.get(c), float) else row[c]
             for c in columns]
        )
    return buffer.getvalue()


def stability_figure(rows: list[dict], grid: list[tuple[str, list]], metric: str = "test_accuracy"):
    """Heatmaps of `metric` over the first two grid keys, one panel per value of the
    third (columns) and fourth (rows) key; diverged cells grey with their step."""
    from matplotlib.colors import LogNorm

    from mnist_clip.plots import PlainLogFormatter, plt

    keys = [key for key, _ in grid]
    labels = [[format_setting(v) for v in values] for _, values in grid]
    while len(labels) < MAX_GRID_KEYS:
        keys.append("")
        labels.append([""])
    x_key, y_key, col_key, row_key = keys
    x_vals, y_vals, col_vals, row_vals = labels
    index = {tuple(row.get(k, "") for k in keys): row for row in rows}
    fig, axes = plt.subplots(
        len(row_vals), len(col_vals),
        figsize=(1.0 + 1.15 * len(x_vals) * len(col_vals) + 1.2, 0.9 + 0.75 * len(y_vals) * len(row_vals) + 0.8),
        squeeze=False,
    )
    finite = [row[metric] for row in rows if row.get("status") == "completed" and np.isfinite(row.get(metric, np.nan))]
    if metric == "test_accuracy":
        cmap, norm, fmt = "viridis", plt.Normalize(0, 1), (lambda v: f"{100 * v:.0f}%")
    else:
        low, high = (min(finite), max(finite)) if finite else (1e-3, 1)
        cmap, norm, fmt = "viridis_r", LogNorm(low, max(high, low * 1.01)), (lambda v: f"{v:.3g}")
    image = None
    for r, row_val in enumerate(row_vals):
        for c, col_val in enumerate(col_vals):
            ax = axes[r][c]
            grid_values = np.full((len(y_vals), len(x_vals)), np.nan)
            for i, y_val in enumerate(y_vals):
                for j, x_val in enumerate(x_vals):
                    cell = index.get(tuple(v for v in (x_val, y_val, col_val, row_val)))
                    status = cell.get("status", "not run") if cell else "not run"
                    if status == "completed":
                        grid_values[i, j] = cell[metric]
                        shade = float(norm(cell[metric]))
                        bright = shade > 0.6 if cmap == "viridis" else shade < 0.4  # the yellow end
                        text, color = fmt(cell[metric]), "black" if bright else "white"
                    elif status == "diverged":
                        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.75", hatch="///", edgecolor="0.45"))
                        text, color = f"diverged\nstep {cell['first_nonfinite_step']}", "black"
                    else:
                        text, color = status, "0.3"
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
            image = ax.imshow(np.ma.masked_invalid(grid_values), cmap=cmap, norm=norm, origin="lower", aspect="auto")
            ax.set_xticks(range(len(x_vals)), x_vals)
            ax.set_yticks(range(len(y_vals)), y_vals)
            ax.set_xlim(-0.5, len(x_vals) - 0.5)
            ax.set_ylim(-0.5, len(y_vals) - 0.5)
            ax.set_xlabel(x_key)
            ax.set_ylabel(y_key if c == 0 else "")
            title = ", ".join(f"{k}={v}" for k, v in ((col_key, col_val), (row_key, row_val)) if k)
            ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=axes, label=metric.replace("_", " "), shrink=0.85)
    if metric == "final_loss":
        bar.ax.yaxis.set_major_formatter(PlainLogFormatter())
        bar.ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    fig.suptitle(f"Stability map: {metric.replace('_', ' ')} per cell (grey, hatched: NaN/Inf at the step shown)", fontsize=11)
    return fig


def write_sweep_outputs(cells: list[Cell], grid: list[tuple[str, list]], sweep_dir: Path, metric: str) -> list[Path]:
    from mnist_clip.plots import save_figure

    rows = sweep_rows(cells, sweep_dir)
    csv_path = sweep_dir / "sweep.csv"
    write_atomic(csv_path, rows_csv(rows).encode())
    png_path = save_figure(stability_figure(rows, grid, metric), sweep_dir / "stability.png")
    return [png_path, csv_path]
