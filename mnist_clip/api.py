"""The public Python API: train, demo, compare, sweep and load_run, returning objects a
notebook can show. The command line is a thin layer over these same functions."""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mnist_clip.arguments import check_value, checked, shown
from mnist_clip.config import Config, check_given_keys, load_toml, values_from_mapping
from mnist_clip.data import Dataset
from mnist_clip.errors import InputError, name as named
from mnist_clip.plans.runner import load_data
from mnist_clip.runs.folder import RunTarget, check_out_folder, default_run_name
from mnist_clip.runs.reader import Run, read_run


@dataclass
class RunResult:
    """A run folder read back: its config, summary, per-step metrics and pictures."""

    run: Run
    exit_code: int = 0  # 130/143 when a signal stopped it

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def summary(self) -> dict | None:
        return self.run.summary

    @property
    def metrics(self):
        """metrics.csv as a pandas DataFrame, one row per step."""
        import pandas as pd

        return pd.DataFrame(self.run.metrics).astype({"step": int, "epoch": int})

    @property
    def epochs(self):
        """epochs.csv as a pandas DataFrame, one row per epoch."""
        import pandas as pd

        return pd.DataFrame(self.run.epochs).astype({"epoch": int, "steps": int})

    def figures(self) -> "Figures":
        """The run's pictures as matplotlib Figures, by name: those viz.registry picks for its net
        (norms, ratio, loss, signals, flow, updates; cell for an LSTM)."""
        from mnist_clip.viz.registry import figures_for
        from mnist_clip.viz.style import empty_figure

        show_figures_inline()
        return Figures({name[: -len(".png")]: (make(self.run) if self.run.steps else empty_figure(self.run))
                        for name, make in figures_for(self.run).items()})

    def __repr__(self) -> str:
        summary = self.summary or {}
        accuracy = summary.get("test_accuracy")
        shown = f", test accuracy {100 * accuracy:.1f}%" if accuracy is not None else ""
        return (f"<RunResult {self.name}: {self.run.clip_label}, {self.run.status}, {self.run.steps} steps"
                f"{shown}, {self.path}>")


def show_figures_inline() -> None:
    """In Jupyter, show a returned matplotlib Figure as a picture (the figures here are drawn
    without pyplot, which would otherwise set that up)."""
    from mnist_clip.console.reporting import in_notebook

    if in_notebook():
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(get_ipython(), {"png"}, bbox_inches=None)


class Figures(dict):
    """{name: Figure}; in Jupyter, every figure is shown."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for figure in self.values():
            display(figure)


class Twins(list):
    """The RunResults of one twin of a demo, one per seed. With one seed the list also acts
    as its run (twins.figures(), twins.summary), as a notebook reader expects of
    `pair.clipped`; indexing (twins[0]) works for any number of seeds."""

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if len(self) == 1:
            return getattr(self[0], name)
        raise AttributeError(f"{name!r}: these are {len(self)} runs, one per seed; pick one, e.g. [0].{name}")

    def __repr__(self) -> str:
        return repr(self[0]) if len(self) == 1 else f"[{', '.join(map(repr, self))}]"


@dataclass
class DemoResult:
    """The clipped and unclipped twins of a demo, their comparison table and picture."""

    path: Path
    runs: list[RunResult]
    table: Any  # pandas DataFrame
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clipped(self) -> Twins:
        """The clipped runs, one per seed (with one seed, also the run itself)."""
        return Twins(run for run in self.runs if run.config.get("clip") != "none")

    @property
    def unclipped(self) -> Twins:
        """The unclipped runs, one per seed (with one seed, also the run itself)."""
        return Twins(run for run in self.runs if run.config.get("clip") == "none")

    def figure(self):
        """compare.png of the twins, as a matplotlib Figure."""
        from mnist_clip.viz.compare import compare_figure

        show_figures_inline()
        return compare_figure([run.run for run in self.runs])

    def __repr__(self) -> str:
        return f"<DemoResult {self.path}: {len(self.runs)} runs>"


@dataclass
class SweepResult:
    path: Path
    table: Any  # pandas DataFrame: sweep.csv
    grid: list
    config: Config
    metric: str = "test_accuracy"
    exit_code: int = 0
    seeds: int = 1

    def figure(self):
        """The stability map, as drawn into stability.png."""
        from mnist_clip.plans.sweep import sweep_figure

        show_figures_inline()
        return sweep_figure(self.config, self.grid, self.seeds, self.path, self.metric)

    def __repr__(self) -> str:
        return f"<SweepResult {self.path}: {len(self.table)} rows>"


@dataclass
class CuresResult:
    """A setup beside each cure: cures.csv as a table, the cures skipped, the report's lines."""

    path: Path
    table: Any  # pandas DataFrame: cures.csv
    skipped: list  # [(cure, why)]
    notes: list[str]  # the report's lines
    title: str
    rows: list[dict]
    exit_code: int = 0

    def figure(self):
        """cures.png, as a matplotlib Figure."""
        from mnist_clip.viz.cures import cures_figure

        show_figures_inline()
        return cures_figure(self.rows, self.title)

    @property
    def runs(self) -> dict[str, RunResult]:
        """{folder name: its run read back} for every run of the cures."""
        return {row["name"]: RunResult(read_run(self.path / row["name"])) for row in self.rows
                if not row["statistic"] and (self.path / str(row["name"]) / "config.json").is_file()}

    def __repr__(self) -> str:
        return f"<CuresResult {self.path}: {len(self.table)} rows>"


@checked
def make_config(config: Config | str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """A Config from a Config, a recipe name or TOML path (or the defaults), with keyword
    overrides checked like config-file keys (names, types, ranges)."""
    from mnist_clip.recipe_files import resolve_config_file

    if isinstance(config, (str, Path)):
        path = resolve_config_file(config)
        base_values = load_toml(path)
        try:
            check_given_keys(base_values, base_values.get("optimizer", Config.optimizer),
                             base_values.get("model", Config.model))
            base = Config(**base_values)
        except InputError as err:
            raise err.retold(f"{path}: ") from None
    elif config is None or isinstance(config, Config):
        base = config or Config()
    else:
        raise InputError(f"{named('config')}: must be a Config, a recipe name such as 'explode' or a TOML file's path "
                         f"(got {_shown(config)})", "config")
    values = values_from_mapping(overrides or {})
    check_given_keys(values, values.get("optimizer", base.optimizer), values.get("model", base.model))
    return base.replace(**values)


def given_recipe(config) -> str | None:
    """The recipe (or TOML file) a run was asked for by name, which names its folder."""
    from mnist_clip.recipe_files import recipe_name

    return recipe_name(config) if isinstance(config, (str, Path)) else None


_shown = shown


def check_arguments(data: Dataset | None = None, out: str | Path = "outputs", name: str | None = None,
                    **flags: bool | int) -> None:
    """The checks @checked makes, for a caller that checks its arguments by hand: data, out,
    name, and flags that are True or False (print_every, jobs and seeds: whole numbers)."""
    check_value("data", data, Dataset | None)
    check_value("out", out, str | Path)
    check_value("name", name, str | None)
    for flag, value in flags.items():
        check_value(flag, value, int if flag in ("print_every", "jobs", "seeds") else bool)


def run_training(config: Config, reporter, out: str | Path = "outputs", name: str | None = None,
                 overwrite: bool = False, plots: bool = True, tensorboard: bool = False, data=None,
                 recipe: str | None = None) -> RunResult:
    """Check, load, train into a run folder and report: the one path behind `train`. A run
    of a recipe is named after it unless `name` is given."""
    from mnist_clip.console.tf_setup import import_tensorflow
    from mnist_clip.experiment import train_into
    from mnist_clip.viz.painters import Painters

    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise InputError(f"{named('tensorboard', True)}: needs the tensorboard package: pip install 'mnist-clip[tensorboard]'",
                         "tensorboard")
    target = RunTarget(Path(out), name, default_run_name(config, recipe), overwrite)
    target.check()  # before the data and TensorFlow load: a taken name fails at once
    reporter.epochs_note(recipe, config.epochs)
    data = data if data is not None else load_data(config, reporter)
    reporter.open_bar(config.epochs * config.steps_per_epoch(len(data.y_train)), "starting TensorFlow")
    # Painters load matplotlib while TensorFlow loads and draw the pictures two at a time;
    # a process that has matplotlib already (a notebook) draws them itself.
    painters = Painters() if plots and "matplotlib" not in sys.modules else None
    try:
        import_tensorflow()
        outcome = train_into(config, data, target, reporter.run_progress(config), draw_plots=plots,
                             tensorboard=tensorboard, on_start=reporter.run_started(config),
                             draw=painters.draw if painters else None)
    finally:
        reporter.close_bar()
        if painters:
            painters.close()
    kept = target.final if target.final is not None and outcome.path != target.final else None
    reporter.run_finished(config, outcome, kept)
    return RunResult(read_run(outcome.path), outcome.exit_code)


def _reporter(progress: str, print_every: int = 0):
    from mnist_clip.console.reporting import MODES, Reporter

    if progress not in MODES:
        raise InputError(f"{named('progress')}: unknown value {progress!r}; allowed: {', '.join(MODES)}", "progress")
    return Reporter(print, progress, print_every)


@checked
def train(config: Config | str | Path | None = None, *, out: str | Path = "outputs", name: str | None = None,
          overwrite: bool = False, plots: bool = True, tensorboard: bool = False, print_every: int = 0,
          progress: str = "auto", data: Dataset | None = None, **overrides) -> RunResult:
    """Train one run into <out>/<name>/, exactly as `mnist-clip train` does, and return it.

    config: a Config, a recipe name ("explode") or a TOML path; keyword overrides
    (lr=0.05, clip="none", hidden=(128,) * 10, ...) take precedence. progress: "auto"
    (a bar in a terminal or notebook), "bar", "lines" or "quiet". data: a Dataset
    already loaded (mnist_clip.data.load_dataset) to skip loading it again.
    Bad arguments raise InputError with the CLI's one-line message.
    """
    recipe = given_recipe(config)
    config = make_config(config, overrides)
    return run_training(config, _reporter(progress, print_every), out, name, overwrite, plots, tensorboard, data,
                        recipe)


def run_demo(config: Config, reporter, out: str | Path = "outputs", name: str | None = None, overwrite: bool = False,
             plots: bool = True, tensorboard: bool = False, data=None, seeds: int = 1,
             recipe: str | None = None) -> DemoResult:
    """The same config with and without clipping, same seed and data, then compared; with
    seeds > 1, a pair per seed and the paired statistics."""
    from mnist_clip.plans.demo import run_demo as run_twins

    outcome = run_twins(config, reporter, run_training, out, name, overwrite, plots, tensorboard, data, seeds, recipe)
    return DemoResult(outcome.folder, [RunResult(run, code) for run, code in outcome.runs], _frame(outcome.rows),
                      outcome.exit_code, outcome.notes)


@checked
def demo(config: Config | str | Path | None = None, *, out: str | Path = "outputs", name: str | None = None,
         overwrite: bool = False, plots: bool = True, tensorboard: bool = False, print_every: int = 0,
         seeds: int = 1, progress: str = "auto", data: Dataset | None = None, **overrides) -> DemoResult:
    """Train the config with its clipping and without, from the same weights on the same data,
    into <out>/<name>/{clipped,unclipped}/, and compare them (compare.png, compare.csv).
    With seeds=N, a pair for each seed seed, seed+1, ... (folders clipped-seedS, unclipped-seedS),
    and `.notes` reports the paired statistics."""
    recipe = given_recipe(config)
    config = make_config(config, overrides)
    reporter = _reporter(progress, print_every)
    result = run_demo(config, reporter, out, name, overwrite, plots, tensorboard, data, seeds, recipe)
    for note in result.notes:
        reporter.line(note)
    return result


def _as_run(item) -> Run:
    if isinstance(item, Twins) and len(item) == 1:
        item = item[0]
    if isinstance(item, RunResult):
        return item.run
    if isinstance(item, Run):
        return item
    if not isinstance(item, (str, Path)):
        raise InputError(f"{named('runs')}: each run is a RunResult, a Run or a run folder's path (got {_shown(item)})",
                         "runs")
    return read_run(item)


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


@checked
def compare(runs: Iterable | str | Path | Run | RunResult, out: str | Path | None = None):
    """(table, figure) for several runs (RunResults or folders); with `out`, also write
    compare.csv and compare.png there."""
    from mnist_clip.viz.compare import compare_figure

    runs, rows, _ = run_compare(runs, out)
    show_figures_inline()
    return _frame(rows), compare_figure(runs)


def run_compare(runs, out: str | Path | None = None, beside: bool = False) -> tuple[list[Run], list[dict], list[Path]]:
    """The one path behind `compare` and the command: the runs read back (a folder that is not a run
    fails before anything is written), their table's rows, and compare.csv and compare.png written
    into `out`, or with `beside` into a new compare-<time> folder beside the first run."""
    from mnist_clip.plans.compare import compare_runs
    from mnist_clip.runs.table import table_row

    if isinstance(runs, (str, Path, Run, RunResult)):
        runs = [runs]  # one run: a table of one row and its picture
    if not isinstance(runs, Iterable):
        raise InputError(f"{named('runs')}: give a list of runs (got {_shown(runs)})", "runs")
    runs = [_as_run(item) for item in runs]
    if not runs:
        raise InputError(f"{named('runs')}: nothing to compare; give at least one run (a RunResult or a run folder)",
                         "runs")
    if out is not None and not isinstance(out, (str, Path)):
        raise InputError(f"{named('out')}: must be a folder path or None (got {_shown(out)})", "out")
    if out is None and not beside:
        return runs, [table_row(run) for run in runs], []
    out = Path(out) if out is not None else RunTarget(runs[0].path.resolve().parent, None,
                                                      f"compare-{time.strftime('%Y%m%d-%H%M%S')}", False).create()
    check_out_folder(out)  # a new folder passes at once
    rows, files = compare_runs([run.path for run in runs], out)
    return runs, rows, files


@checked
def sweep(grid: Mapping | Iterable[str] | str | None = None, config: Config | str | Path | None = None, *,
          out: str | Path = "outputs", name: str | None = None, jobs: int = 1, plots: bool = False, metric: str = "test_accuracy",
          seeds: int = 1, progress: str = "auto", data: Dataset | None = None, **overrides) -> SweepResult:
    """Train every cell of a grid ({"lr": [0.01, 0.1], "clip_norm": [None, 15]}; None for
    clip_norm means no clipping), for each of `seeds` seeds, into <out>/<name>/cells/ and map
    where training blows up."""
    from mnist_clip.plans.grid import grid_specs

    specs = grid_specs(grid)
    config = make_config(config, overrides)
    return run_sweep_reported(config, specs, _reporter(progress), out, name, jobs, plots, metric, data, seeds)


def run_sweep_reported(config: Config, specs: list[str], reporter, out, name, jobs: int, plots: bool, metric: str,
                       data=None, seeds: int = 1, language: str = "python") -> SweepResult:
    """`sweep` with its progress and closing lines: the one path behind the command and mc.sweep."""
    import pandas as pd

    from mnist_clip.plans.sweep import run_sweep_reported as run

    sweep_dir, exit_code, grid = run(config, specs, reporter, out, name, jobs, plots, metric, data, seeds, language)
    return SweepResult(sweep_dir, pd.read_csv(sweep_dir / "sweep.csv"), grid, config, metric, exit_code, seeds)


@checked
def load_run(path: str | Path) -> RunResult:
    """Any run folder, also one written by the CLI or still being written."""
    return RunResult(read_run(path))


@checked
def recipes() -> dict[str, str]:
    """The packaged recipes: {name: one-line description}; use a name as config."""
    from mnist_clip.recipe_files import recipes as listed

    return listed()


@checked
def cures(config: Config | str | Path | None = None, *, cure: Iterable[str] | str | None = None, seeds: int = 1,
          out: str | Path = "outputs", name: str | None = None, jobs: int = 1, plots: bool = False,
          progress: str = "auto", data: Dataset | None = None, **overrides) -> CuresResult:
    """Train the setup (a Config, a recipe name or a TOML path, with keyword overrides) beside
    each cure that applies to it, from the same weights and data for each of `seeds` seeds, into
    <out>/<name>/<cure>[-seed<N>]/, and report each cure against the setup (`base`). `cure`:
    the cures to train (names from mnist_clip.plans.cure_table.CURE_NAMES), all by default. A folder of
    the same name is resumed."""
    recipe = given_recipe(config)
    config = make_config(config, overrides)
    names = [cure] if isinstance(cure, str) else list(cure or [])
    reporter = _reporter(progress)
    result = run_cures_reported(config, names, reporter, out, name, seeds, jobs, plots, data, recipe)
    for note in result.notes:
        reporter.line(note)
    return result


def run_cures_reported(config: Config, names: list[str], reporter, out, name, seeds: int, jobs: int, plots: bool,
                       data=None, recipe: str | None = None, language: str = "python") -> CuresResult:
    """`cures` with its progress and closing lines: the one path behind the command and mc.cures."""
    import pandas as pd

    from mnist_clip.plans.cures import run_cures_reported as run

    outcome = run(config, names, reporter, out, name, seeds, jobs, plots, data, recipe, language)
    return CuresResult(outcome.folder, pd.read_csv(outcome.folder / "cures.csv"), outcome.skipped, outcome.notes,
                       outcome.title, outcome.rows, outcome.exit_code)
