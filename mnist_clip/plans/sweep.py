"""`mnist-clip sweep`: the grid's cells as a plan of runs, then sweep.csv and the stability map."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mnist_clip.config import Config
from mnist_clip.errors import InputError, name as named, render
from mnist_clip.plans.grid import DEFAULT_GRID, Cell, format_setting, make_cells, parse_grid
from mnist_clip.plans.runner import FINISHED, ResumablePlan, check_jobs, load_data, rows_csv
from mnist_clip.runs.folder import SWEEP_FILE, write_atomic
from mnist_clip.runs.reader import read_run
from mnist_clip.stats import spread

METRICS = ("test_accuracy", "final_loss")


def sweep_rows(cells: list[Cell], sweep_dir: Path) -> list[dict]:
    """sweep.csv: per cell (and seed), its grid settings, then the compare table's numbers;
    with several seeds, then per grid point the mean, std, min and max over its seeds."""
    from mnist_clip.runs.table import STATISTIC_COLUMNS, STATISTICS, table_row

    rows = []
    for cell in cells:
        row: dict[str, Any] = {key: format_setting(value) for key, value in cell.settings}
        cell_dir = sweep_dir / "cells" / cell.folder_name
        if (cell_dir / "config.json").is_file():
            run = read_run(cell_dir)
            # the grid's own values win over the table's columns of the same name (clip)
            row.update((key, value) for key, value in table_row(run).items() if key not in row)
            row["first_nonfinite_step"] = run.summary.get("first_nonfinite_step") if run.summary else None
        else:
            row.update(status="not run", name=cell.name, seed=cell.config.seed, statistic="")
        rows.append(row)
    if not any(cell.seeded for cell in cells):
        return rows
    points: dict[tuple, list[dict]] = {}
    for cell, row in zip(cells, rows):
        points.setdefault(cell.point, []).append(row)
    aggregated = []
    for point_rows in points.values():
        finished = [row for row in point_rows if row["status"] in FINISHED]
        diverged = sum(row["status"] == "diverged" for row in point_rows)
        for statistic in STATISTICS:
            row = {key: point_rows[0][key] for key in point_rows[0] if key in dict(cells[0].settings)}
            row.update(name=",".join(f"{k}={v}" for k, v in row.items()), statistic=statistic, seed="",
                       status=f"{diverged}/{len(point_rows)} diverged", steps=len(finished))
            for column in STATISTIC_COLUMNS:
                row[column] = spread([r[column] for r in finished if column in r])[statistic]
            aggregated.append(row)
    return rows + aggregated


def write_sweep_outputs(cells: list[Cell], grid: list[tuple[str, list]], sweep_dir: Path, metric: str) -> list[Path]:
    from mnist_clip.viz.stability import stability_figure
    from mnist_clip.viz.style import save_figure

    rows = sweep_rows(cells, sweep_dir)
    csv_path = sweep_dir / "sweep.csv"
    write_atomic(csv_path, rows_csv(rows).encode())
    png_path = save_figure(stability_figure(rows, grid, metric), sweep_dir / "stability.png")
    return [png_path, csv_path]


def sweep_figure(base: Config, grid: list[tuple[str, list]], seeds: int, sweep_dir: Path, metric: str):
    """A sweep folder's stability map, as drawn into stability.png."""
    from mnist_clip.viz.stability import stability_figure

    return stability_figure(sweep_rows(make_cells(base, grid, seeds), sweep_dir), grid, metric)


def run_sweep(
    base: Config,
    grid: list[tuple[str, list]],
    out: str | Path,
    name: str | None = None,
    jobs: int = 1,
    plots: bool = False,
    metric: str = "test_accuracy",
    report: Callable[[str], None] = print,
    dataset=None,
    progress: Callable[[int], Callable[[str], None]] | None = None,
    seeds: int = 1,
) -> tuple[Path, int, list[Path]]:
    """Train every cell of the grid (for each of `seeds` seeds) not finished yet into
    <out>/<name>/cells/, then write sweep.csv and stability.png. Returns (sweep folder,
    exit status, files written).

    The folder is locked while the sweep runs: a second sweep of the same name is
    refused, not mixed in. Resuming with other base options is refused too; resuming
    with another --seeds trains the seeds that are missing and maps the ones asked for."""
    cells = make_cells(base, grid, seeds)
    plan = ResumablePlan("sweep", SWEEP_FILE, "cells", cells, "cells", base, seeds, grid)
    record = {"grid": [[k, [format_setting(v) for v in vs]] for k, vs in grid], "base": base.to_dict(), "seeds": seeds}
    seeds_text = f" x {seeds} seeds" if seeds > 1 else ""
    intro = [f"{len(cells)} cells: " + " x ".join(f"{key} ({len(values)})" for key, values in grid)
             + f"{seeds_text}, {jobs} job(s)"]
    outputs = lambda folder: write_sweep_outputs(cells, grid, folder, metric)  # noqa: E731
    return plan.run(out, name, record, intro, jobs, plots, outputs, report=report, progress=progress, dataset=dataset)


def run_sweep_reported(config: Config, specs: list[str], reporter, out, name, jobs: int, plots: bool, metric: str,
                       data=None, seeds: int = 1, language: str = "python") -> tuple[Path, int, list[tuple[str, list]]]:
    """`sweep` with its progress and closing lines: the one path behind the command and mc.sweep.
    Returns (sweep folder, exit status, the grid read)."""
    if metric not in METRICS:
        raise InputError(f"{named('metric')}: unknown value {metric!r}; allowed: {', '.join(METRICS)}", "metric")
    check_jobs(jobs)
    grid = parse_grid(specs or DEFAULT_GRID)
    make_cells(config, grid, seeds)  # every cell's config is valid before anything runs
    data = data if data is not None else load_data(config, reporter)
    sweep_dir, exit_code, files = run_sweep(config, grid, out, name, jobs, plots, metric, report=reporter.line,
                                            dataset=data, progress=reporter.sweep_progress, seeds=seeds)
    reporter.close_bar()
    for path in files:
        reporter.line(f"wrote {path}")
    again = render(f"run the same command with {named('name', sweep_dir.name)}" if language == "cli"
                   else f"call sweep again with {named('name', sweep_dir.name)}", language)
    if exit_code and exit_code != 1:
        reporter.line(f"interrupted; {again} to resume")
    elif exit_code:
        reporter.line(f"some cells failed (see above); {again} to try them again")
    return sweep_dir, exit_code, grid
