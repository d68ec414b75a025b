"""A grid of runs: parse --grid, run the cells (resumably, in parallel if asked), tabulate and map them."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import math
import os
import queue
import shutil
import signal
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnist_clip.config import MAX_SEED, CONFIG_KEYS, Config, format_hidden, normalize_key, parse_hidden, unknown_key_message
from mnist_clip.errors import InputError, name as named
from mnist_clip.runs import MAX_NAME_BYTES, SUMMARY_FILE, SWEEP_FILE, format_value, read_run, read_run_files, write_atomic
from mnist_clip.stats import spread

DEFAULT_GRID = ("lr=0.01,0.03,0.1,0.3", "clip_norm=none,1,5,15", "input_scale=50,255")
FINISHED = ("completed", "diverged")
METRICS = ("test_accuracy", "final_loss")
MAX_GRID_KEYS = 4  # x axis, y axis, panel columns, panel rows
# The most runs one command plans (a sweep's cells times its seeds, a demo's pairs): each run
# trains for seconds and writes a folder of a few MB, so 10,000 runs already take hours and
# gigabytes; a plan beyond that is a typo, refused before anything is built.
MAX_RUNS = 10_000


@dataclass(frozen=True)
class Cell:
    """One grid point: its settings as given, its full Config and its folder name."""

    settings: tuple[tuple[str, Any], ...]
    config: Config
    seeded: bool = False  # one of several seeds of its grid point: the seed is part of its name

    @property
    def name(self) -> str:
        name = ",".join(f"{key}={format_setting(value)}" for key, value in self.settings)
        return f"{name},seed={self.config.seed}" if self.seeded else name

    @property
    def point(self) -> tuple[str, ...]:
        """The grid values, without the seed."""
        return tuple(format_setting(value) for _, value in self.settings)

    @property
    def folder_name(self) -> str:
        return cell_folder_name(self.name)


def cell_folder_name(name: str) -> str:
    """The cell's name as one safe path component: '/' and '%' percent-encoded, and a
    name too long for the file system cut and made unique by a hash of the whole."""
    safe = name.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")
    if len(safe.encode()) <= MAX_NAME_BYTES:
        return safe
    digest = hashlib.sha1(safe.encode()).hexdigest()[:12]
    return safe.encode()[: MAX_NAME_BYTES - 13].decode(errors="ignore") + "~" + digest


def format_setting(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        if all(isinstance(v, int) for v in value):
            return format_hidden(value).replace(",", "+")
        return "+".join(value)
    if isinstance(value, float):
        short = f"{value:g}"  # 0.01, 15, 1e-05; the exact digits where 6 would change the number
        return short if float(short) == value or not math.isfinite(value) else repr(value)
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
        if kind == "tuple[int, ...]":
            return parse_hidden(text.replace("+", ","), f"{named('grid')} {key}")
        if kind == "tuple[str, ...]":
            names = tuple(part for part in text.split("+") if part)
            if not names:
                raise InputError(f"{named('grid')} {key}: an empty value; name tensors joined with +, e.g. w3+b3", "grid")
            return names
        return text
    except InputError:
        raise
    except ValueError:
        raise InputError(f"{named('grid')} {key}: cannot read {text!r} as {kind}", "grid") from None


def parse_grid(specs: tuple[str, ...] | list[str]) -> list[tuple[str, list]]:
    """["lr=0.01,0.1", "clip_norm=none,15"] -> [("lr", [0.01, 0.1]), ("clip_norm", [None, 15.0])]."""
    grid: list[tuple[str, list]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not values.strip():
            raise InputError(f"{named('grid')} {spec!r}: expected KEY=V1,V2,... such as lr=0.01,0.1", "grid")
        key = normalize_key(key)
        if key not in CONFIG_KEYS:
            raise InputError(f"{named('grid')}: {unknown_key_message(key)}", "grid")
        if any(key == existing for existing, _ in grid):
            raise InputError(f"{named('grid')} {key}: given twice; put all its values in one {named('grid')}", "grid")
        parsed = [parse_value(key, value) for value in values.split(",")]
        repeated = [format_setting(v) for i, v in enumerate(parsed) if v in parsed[:i]]
        if repeated:
            raise InputError(f"{named('grid')} {key}: the value {repeated[0]} is given twice (values are compared after "
                             "reading)", "grid")
        grid.append((key, parsed))
    if len(grid) > MAX_GRID_KEYS:
        raise InputError(f"{named('grid')}: at most {MAX_GRID_KEYS} keys (x, y, panel columns, panel rows); got {len(grid)}",
                         "grid")
    return grid


def check_seeds(base: Config, seeds: int, runs_per_seed: int = 1) -> None:
    """--seeds N trains seeds seed, seed + 1, ..., seed + N - 1: all must be valid seeds."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"{named('seeds')}: must be a whole number >= 1 (got {seeds!r})", "seeds")
    check_plan_size(seeds * runs_per_seed, "seeds", f"{seeds} seeds" + (f" x {runs_per_seed}" if runs_per_seed > 1 else ""))
    if base.seed + seeds - 1 > MAX_SEED:
        raise InputError(f"{named('seeds')}: {seeds} seeds from seed {base.seed} go past {MAX_SEED}; "
                         f"at most {MAX_SEED - base.seed + 1} fit, or choose a smaller {named('seed')}", "seeds")


def check_plan_size(runs: int, key: str, counted: str) -> None:
    """Refuse a plan of more than MAX_RUNS runs (`key` makes it so), before any folder or
    list of them exists. Every command that plans many runs asks here."""
    if runs > MAX_RUNS:
        raise InputError(f"{named(key)}: {runs:,} runs ({counted}); at most {MAX_RUNS:,} runs are planned at once, since each "
                         "trains for seconds and writes a folder of a few MB: split it into smaller plans", key)


def make_cells(base: Config, grid: list[tuple[str, list]], seeds: int = 1) -> list[Cell]:
    """Every combination of the grid's values over the base config, for each of `seeds` seeds
    (all validated up front)."""
    points = math.prod(len(values) for _, values in grid)
    check_plan_size(points, "grid", " x ".join(f"{key} ({len(values)})" for key, values in grid) or "one cell")
    check_seeds(base, seeds, points)
    if seeds > 1 and any(key == "seed" for key, _ in grid):
        raise InputError(f"{named('seeds')}: give either {named('seeds')} or a grid over seed, not both", "seeds")
    cells = []
    for combination in itertools.product(*(values for _, values in grid)):
        settings = tuple((key, value) for (key, _), value in zip(grid, combination))
        changes = {}
        for key, value in settings:
            if key == "clip_norm" and value is None:
                changes["clip"] = "none"
            else:
                changes[key] = value
        try:
            config = base.replace(**changes)
        except InputError as err:  # named as the grid gave it: --grid lr=inf, not --lr
            given = dict(settings)
            key = err.key if err.key in given else "clip_norm" if err.key == "clip" and "clip_norm" in given else None
            if key is None:
                raise
            spelled = f"{named('grid')} {key}={format_setting(given[key])}"
            setting = named(err.key, given[key])  # "beta2=0.99999999 is 1.0 in float32" names the setting
            token = setting if key == err.key and setting in err.template else named(err.key)
            raise InputError(err.template.replace(token, spelled, 1), "grid", err.language) from None
        for offset in range(seeds):
            cells.append(Cell(settings, config.replace(seed=base.seed + offset), seeded=seeds > 1))
    return cells


def cell_finished(cell_dir: Path) -> bool:
    """A cell is done when its summary says completed or diverged; anything else is run again
    (a resumed plan has refused a summary of the wrong shape before: ResumablePlan.check_runs)."""
    from mnist_clip.validation import read_summary

    try:
        return read_summary(cell_dir / SUMMARY_FILE)["status"] in FINISHED
    except (OSError, ValueError):
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


def _worker_main(tasks, results, parent_pid: int) -> None:
    """A sweep worker: trains the cells it is handed until told to stop. Ctrl-C at the
    terminal is the parent's to handle; the parent's SIGTERM stops the cell in flight
    after its epoch (a second one ends the worker at once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mnist_clip.interrupts import catch_stop_signals, die_with_parent

    die_with_parent(parent_pid)

    with catch_stop_signals(signals=(signal.SIGTERM,)) as stop:
        while not stop.requested:
            try:
                task = tasks.get(timeout=0.1)
            except queue.Empty:
                continue
            if task is None:
                return
            config, cell_dir, plots = task
            try:
                results.put(("done", *run_cell(config, cell_dir, plots)))
            except BaseException as err:  # reported by the parent, which goes on with the other cells
                from mnist_clip.runs import describe_error

                results.put(("failed", cell_dir, f"{type(err).__name__}: {describe_error(err)}", 1))


def run_cells(
    cells: list,
    cells_dir: Path,
    jobs: int,
    plots: bool,
    report: Callable[[str], None] = print,
    progress: Callable[[int], Callable[[str], None]] | None = None,
    unit: str = "cells",
    notice: str | None = None,
) -> int:
    """Run the cells (anything with a name, folder_name and config) not finished yet, each
    into cells_dir/<folder_name>. Returns 0, or 128 + the signal that stopped them (cells cut
    short run again on resuming), or 1 if a cell failed."""
    from mnist_clip.interrupts import SWEEP_STOP_NOTICE, catch_stop_signals

    todo = []
    for cell in cells:
        cell_dir = cells_dir / cell.folder_name
        if cell_finished(cell_dir):
            continue
        if cell_dir.exists():
            shutil.rmtree(cell_dir)  # cut short earlier: start it again
        todo.append((cell, cell_dir))
    done_before = len(cells) - len(todo)
    if done_before:
        report(f"{done_before} of {len(cells)} {unit} finished earlier; running the other {len(todo)}")
    cells_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cell_done = progress(len(todo)) if progress else report
    names = {str(cell_dir): cell for cell, cell_dir in todo}
    counter = itertools.count(1)
    failed = []

    def announce(message: tuple) -> None:
        kind, cell_dir, summary, _ = message
        cell = names[cell_dir]
        if kind == "failed":
            failed.append(cell.name)
            result = f"failed: {summary}"
        elif summary["status"] == "diverged":
            result = f"diverged at step {summary['first_nonfinite_step']}"
        elif summary["test_accuracy"] is None:
            result = summary["status"]
        else:
            result = f"{summary['status']}, test acc {100 * summary['test_accuracy']:.1f}%"
        cell_done(f"[{next(counter)}/{len(todo)}] {cell.name}: {result}  ({time.perf_counter() - started:.0f} s)")

    with catch_stop_signals(notice or SWEEP_STOP_NOTICE) as stop:
        if jobs <= 1 or len(todo) <= 1:
            for cell, cell_dir in todo:
                if stop.requested:
                    break
                announce(("done", *run_cell(cell.config, str(cell_dir), plots)))
        else:
            _run_in_workers(todo, min(jobs, len(todo)), plots, announce, stop, report)
        if stop.requested:
            return stop.exit_code
    return 1 if failed else 0


def _run_in_workers(todo, jobs: int, plots: bool, announce: Callable, stop, report: Callable) -> None:
    """Hand the cells to `jobs` worker processes, one cell per idle worker, so that a stop
    leaves nothing queued. The workers live for the whole sweep (TensorFlow is imported
    and the data loaded once per worker) and die with this process."""
    context = get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    tasks.cancel_join_thread()
    workers = [context.Process(target=_worker_main, args=(tasks, results, os.getpid()), daemon=True)
               for _ in range(jobs)]
    for worker in workers:
        worker.start()
    pending = list(todo)
    in_flight = 0
    try:
        while (pending or in_flight) and not stop.requested:
            while pending and in_flight < jobs:
                cell, cell_dir = pending.pop(0)
                tasks.put((cell.config, str(cell_dir), plots))
                in_flight += 1
            try:
                message = results.get(timeout=0.1)
            except queue.Empty:
                dead = [w for w in workers if not w.is_alive()]
                if dead and not stop.requested:
                    report(f"a sweep worker process ended unexpectedly (exit status {dead[0].exitcode}); stopping")
                    break
                continue
            in_flight -= 1
            announce(message)
        for worker in workers:
            if worker.is_alive():
                if stop.requested:
                    os.kill(worker.pid, signal.SIGTERM)
                else:
                    tasks.put(None)
        while any(worker.is_alive() for worker in workers) or not results.empty():
            try:
                announce(results.get(timeout=0.1))
            except queue.Empty:
                continue
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            worker.join()


def sweep_rows(cells: list[Cell], sweep_dir: Path) -> list[dict]:
    """sweep.csv: per cell (and seed), its grid settings, then the compare table's numbers;
    with several seeds, then per grid point the mean, std, min and max over its seeds."""
    from mnist_clip.comparison import STATISTIC_COLUMNS, STATISTICS, table_row

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
    third (columns) and fourth (rows) key; diverged cells grey with their step. With
    several seeds a cell shows their mean, its spread and how many diverged; it is grey
    only when every seed diverged."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    from mnist_clip.plots import PlainLogFormatter, subplots

    keys = [key for key, _ in grid]
    labels = [[format_setting(v) for v in values] for _, values in grid]
    while len(labels) < MAX_GRID_KEYS:
        keys.append("")
        labels.append([""])
    x_key, y_key, col_key, row_key = keys
    x_vals, y_vals, col_vals, row_vals = labels
    points: dict[tuple, list[dict]] = {}
    for row in rows:
        if not row.get("statistic"):  # the seeds' own rows, not their statistics
            points.setdefault(tuple(row.get(k, "") for k in keys), []).append(row)
    # Constrained layout keeps the title, labels and colour bar inside the picture at any
    # grid size; the minimum size leaves a 1x1 map room for its title.
    seeded = any(len(point) > 1 for point in points.values())
    width = max(6.5, 1.0 + (1.35 if seeded else 1.15) * len(x_vals) * len(col_vals) + 1.2)
    height = max(3.8, 0.9 + (1.0 if seeded else 0.75) * len(y_vals) * len(row_vals) + 0.8)
    fig, axes = subplots(len(row_vals), len(col_vals), figsize=(width, height), squeeze=False, layout="constrained")
    finite = [row[metric] for row in rows if row.get("status") == "completed" and np.isfinite(row.get(metric, np.nan))]
    if metric == "test_accuracy":
        cmap, norm, fmt = "viridis", Normalize(0, 1), (lambda v: f"{100 * v:.0f}%")
        fmt_spread = lambda v: f"±{100 * v:.1f}"  # noqa: E731
    else:
        low, high = (min(finite), max(finite)) if finite else (1e-3, 1)
        cmap, norm, fmt = "viridis_r", LogNorm(low, max(high, low * 1.01)), (lambda v: f"{v:.3g}")
        fmt_spread = lambda v: f"±{v:.2g}"  # noqa: E731
    image = None
    for r, row_val in enumerate(row_vals):
        for c, col_val in enumerate(col_vals):
            ax = axes[r][c]
            grid_values = np.full((len(y_vals), len(x_vals)), np.nan)
            for i, y_val in enumerate(y_vals):
                for j, x_val in enumerate(x_vals):
                    seeds = points.get((x_val, y_val, col_val, row_val), [])
                    completed = [row for row in seeds if row.get("status") == "completed"]
                    diverged = [row for row in seeds if row.get("status") == "diverged"]
                    if seeds and len(diverged) == len(seeds):  # diverged for every seed
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.75", hatch="///", edgecolor="0.45"))
                        where = sorted({row["first_nonfinite_step"] for row in diverged})
                        steps = f"step {where[0]}" if len(where) == 1 else f"steps {where[0]}-{where[-1]}"
                        text = f"diverged\n{steps}" if len(seeds) == 1 else f"{len(seeds)}/{len(seeds)} diverged\n{steps}"
                        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black")
                        continue
                    if not completed:
                        status = seeds[0].get("status", "not run") if seeds else "not run"
                        ax.text(j, i, status, ha="center", va="center", fontsize=8, color="0.3")
                        continue
                    values = spread([row[metric] for row in completed])
                    grid_values[i, j] = values["mean"]
                    shade = float(norm(values["mean"]))
                    bright = shade > 0.6 if cmap == "viridis" else shade < 0.4  # the yellow end
                    color = "black" if bright else "white"
                    text = fmt(values["mean"])
                    if len(seeds) > 1:
                        text += f" {fmt_spread(values['std'])}" if values["n"] > 1 else ""
                        text += f"\n{len(diverged)}/{len(seeds)} diverged"
                        if len(completed) + len(diverged) < len(seeds):
                            text += f"\n{len(completed) + len(diverged)} of {len(seeds)} run"
                    if diverged:  # some seeds diverged: a light hatch over the colour
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="..", edgecolor="0.85",
                                               linewidth=0))
                    ax.text(j, i, text, ha="center", va="center", fontsize=8 if len(seeds) == 1 else 7, color=color)
            image = ax.imshow(np.ma.masked_invalid(grid_values), cmap=cmap, norm=norm, origin="lower", aspect="auto")
            ax.set_xticks(range(len(x_vals)), x_vals)
            ax.set_yticks(range(len(y_vals)), y_vals)
            ax.set_xlim(-0.5, len(x_vals) - 0.5)
            ax.set_ylim(-0.5, len(y_vals) - 0.5)
            ax.set_xlabel(x_key)
            ax.set_ylabel(y_key if c == 0 else "")
            if not y_key:
                ax.set_yticks([])
            title = ", ".join(f"{k}={v}" for k, v in ((col_key, col_val), (row_key, row_val)) if k)
            ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=axes, label=metric.replace("_", " ") + (" (%)" if metric == "test_accuracy" else ""),
                       shrink=0.85)
    if metric == "test_accuracy":  # in % like the cells
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:.0f}"))
    if metric == "final_loss":
        bar.ax.yaxis.set_major_formatter(PlainLogFormatter())
        bar.ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if seeded:
        title = (f"Stability map: mean {metric.replace('_', ' ')} over the seeds (± their standard deviation)\n"
                 "grey: NaN/Inf for every seed; dotted: for some seeds")
    else:
        title = f"Stability map: {metric.replace('_', ' ')} per cell\n(grey, hatched: NaN/Inf at the step shown)"
    fig.suptitle(title, fontsize=11)
    return fig


def write_sweep_outputs(cells: list[Cell], grid: list[tuple[str, list]], sweep_dir: Path, metric: str) -> list[Path]:
    from mnist_clip.plots import save_figure

    rows = sweep_rows(cells, sweep_dir)
    csv_path = sweep_dir / "sweep.csv"
    write_atomic(csv_path, rows_csv(rows).encode())
    png_path = save_figure(stability_figure(rows, grid, metric), sweep_dir / "stability.png")
    return [png_path, csv_path]


def changed_base_keys(stored: dict, base: Config, grid: list[tuple[str, list]]) -> list[str]:
    """The base options, other than the grid's own keys, in which a sweep folder's
    recorded base differs from `base`."""
    defaults = Config().to_dict()
    current = base.to_dict()
    swept = {key for key, _ in grid} | ({"clip"} if any(key == "clip_norm" for key, _ in grid) else set())
    return [key for key in current if key not in swept and stored.get(key, defaults[key]) != current[key]]


def open_sweep_folder(out: Path, name: str | None, prefix: str = "sweep", kind: str = "sweep") -> tuple[Path, bool]:
    """The sweep (or other resumable plan's) folder: made new (True), or an existing one to resume (False)."""
    from mnist_clip.runs import RunTarget, check_name

    if name is None:
        return RunTarget(out, None, f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}", False).create(), True
    check_name(name)
    path = out / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InputError(f"{path} exists and is not a {kind} folder; choose another {named('name')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.mkdir()
        return path, True
    except FileExistsError:
        return path, False


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
    from mnist_clip.runs import check_out_folder, write_json

    out = Path(out)
    check_out_folder(out)
    cells = make_cells(base, grid, seeds)
    if dataset is not None:
        preload_dataset(base, dataset)
    load_cell_datasets(cells, keep=jobs <= 1)  # a missing --grid data_path file is refused before the folder exists
    plan = ResumablePlan("sweep", SWEEP_FILE, "cells", cells, "cells")
    with plan.open(out, name, base, seeds, grid, report) as sweep_dir:
        write_json(sweep_dir / SWEEP_FILE, {"grid": [[k, [format_setting(v) for v in vs]] for k, vs in grid],
                                            "base": base.to_dict(), "seeds": seeds})
        seeds_text = f" x {seeds} seeds" if seeds > 1 else ""
        report(f"{len(cells)} cells: " + " x ".join(f"{key} ({len(values)})" for key, values in grid)
               + f"{seeds_text}, {jobs} job(s)")
        exit_code = run_cells(cells, sweep_dir / "cells", jobs, plots, report=report, progress=progress)
        files = write_sweep_outputs(cells, grid, sweep_dir, metric)
    return sweep_dir, exit_code, files


def load_cell_datasets(cells: list[Cell], keep: bool) -> None:
    """Load every dataset the cells use that is not loaded yet, so that a bad one fails
    before the sweep starts; keep them when the cells run in this process."""
    from mnist_clip.data import load_dataset

    for key in dict.fromkeys((cell.config.dataset, cell.config.data_path) for cell in cells):
        if key not in _DATASETS:
            dataset = load_dataset(*key)
            if keep:
                _DATASETS[key] = dataset


@dataclass(frozen=True)
class ResumablePlan:
    """A folder of runs that a second command of the same name resumes (a sweep, cures): its
    kind, its record file, where its runs go (a subfolder, or "" for the folder itself), the
    runs (with folder_name) and what they are called in messages."""

    kind: str
    record: str
    runs_folder: str
    cells: list
    unit: str
    more_seeds: str = "the sweep trains the missing ones"
    fewer_seeds: str = "the sweep maps only these"

    @contextlib.contextmanager
    def open(self, out: Path, name: str | None, base: Config, seeds: int, grid: list, report: Callable[[str], None],
             prefix: str | None = None):
        """The plan's folder, new or resumed, locked for the block. A folder of another kind, or
        one recorded with other base options, is refused; a new folder refused or failed before
        any run finished is removed."""
        from mnist_clip.runs import folder_lock

        folder, new = open_sweep_folder(out, name, prefix or self.kind, self.kind)
        try:
            with folder_lock(folder, f"{self.kind} {folder} is being run by another mnist-clip process; wait for it or "
                                     f"choose another {named('name')}"):
                if new:
                    report(f"{self.kind}: {folder}")
                else:
                    self.check_resumable(folder, base, seeds, grid, report)
                yield folder
        except BaseException:
            runs = folder / self.runs_folder
            if new and not any(cell_finished(runs / cell.folder_name) for cell in self.cells):
                shutil.rmtree(folder, ignore_errors=True)  # refused or failed before any result: leave nothing
            raise

    def check_runs(self, folder: Path) -> None:
        """Every run the folder holds already has files of the right shape: a file changed by
        hand is refused before anything is written, not found after the missing runs trained."""
        for cell in self.cells:
            run_dir = folder / self.runs_folder / cell.folder_name
            if (run_dir / "config.json").is_file():
                read_run_files(run_dir)

    def check_resumable(self, folder: Path, base: Config, seeds: int, grid: list, report: Callable[[str], None]) -> None:
        from mnist_clip.validation import read_plan_record

        record = folder / self.record
        if not record.is_file():
            raise InputError(f"{folder} exists and is not a {self.kind} folder; choose another {named('name')}")
        try:
            recorded = read_plan_record(record)  # a record of the wrong shape: InputError naming the key
        except InputError:
            raise
        except (OSError, ValueError):
            raise InputError(f"{record} cannot be read; choose another {named('name')}") from None
        stored, stored_seeds = recorded.get("base", {}), recorded.get("seeds", 1)
        if (stored_seeds > 1) != (seeds > 1):
            raise InputError(
                f"{self.kind} {folder.name} was run with {stored_seeds} seed(s) and its {self.unit} are named "
                f"{'with' if stored_seeds > 1 else 'without'} their seed; resume it with "
                f"{named('seeds', 2) + ' or more' if stored_seeds > 1 else named('seeds', 1)}, or choose another {named('name')}"
            )
        changed = changed_base_keys(stored, base, grid)
        if changed:
            shown = ", ".join(f"{key} {stored.get(key)!r} -> {getattr(base, key)!r}" for key in changed[:4])
            raise InputError(
                f"{self.kind} {folder.name} was run with other options ({shown}); resuming would mix "
                f"incomparable {self.unit}: give the same options, or another {named('name')}"
            )
        self.check_runs(folder)
        report(f"{self.kind}: {folder} (resuming)")
        if seeds != stored_seeds:
            report(f"seeds: {seeds} asked for, {stored_seeds} before; "
                   f"{self.more_seeds if seeds > stored_seeds else self.fewer_seeds}")
