"""The `mnist-clip` command: parse, validate, call the library, print."""

from __future__ import annotations

import functools
import os
import sys

import click
from click.core import ParameterSource

from mnist_clip.config import OPTIONS, Config, load_toml, resolve
from mnist_clip.console.interrupts import STOP_NOTICE, SWEEP_STOP_NOTICE, catch_stop_signals
from mnist_clip.errors import InputError, Interrupted
from mnist_clip.options import Option, format_text, parse_text
from mnist_clip.plans.cures import CURES_STOP_NOTICE
from mnist_clip.plans.grid import DEFAULT_GRID
from mnist_clip.version import __version__

DEFAULTS = Config()


class OneLineErrors(click.Group):
    """Bad input ends in one line on stderr and exit status 2, never a traceback."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except InputError as err:
            click.echo(f"Error: {err.render('cli')}", err=True)
            sys.exit(2)
        except OSError as err:  # the one place where the OS's refusals become a line
            from mnist_clip.runs.folder import describe_error

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
        except click.BadParameter as err:
            if err.param is None or isinstance(err, click.MissingParameter):
                click.echo(f"Error: {err.format_message()}", err=True)
            else:  # the option as typed, then what is wrong: the style of every other error
                click.echo(f"Error: {typed_name(err.param)}: {err.message.rstrip('.')}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.exceptions.Abort:
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


def echo(text: str) -> None:
    """Print a line to stdout, wrapped to the terminal's width ($COLUMNS, else 100 off a terminal)."""
    from mnist_clip.console.reporting import fit_line

    click.echo(fit_line(text))


def typed_name(param: click.Parameter) -> str:
    """An option's long name (--clip-norm), or an argument's metavar (RUN_DIR)."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


class OptionText(click.ParamType):
    """A Config field's option: its text read by the one parser of option text (parse_text),
    a refusal in the words of every other error."""

    METAVARS = {"int": "integer", "float": "float", "str | None": "path", "tuple[int, ...]": "widths",
                "tuple[str, ...]": "tensors"}

    def __init__(self, option: Option):
        self.option = option
        self.name = self.METAVARS.get(option.kind, "text")

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        return f"[{'|'.join(self.option.choices)}]" if self.option.choices else None

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(choice) for choice in self.option.choices if choice.startswith(incomplete)]

    def convert(self, value, param, ctx):
        return parse_text(self.option, value) if isinstance(value, str) else value


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-clip")
def cli() -> None:
    """Train the exploding-gradient experiment and look at every gradient norm.

    Start with `mnist-clip train`, then `mnist-clip plot RUN_DIR`.
    """


def field_option(option: Option):
    """The command-line option of a Config field, from its declaration: --clip-norm FLOAT,
    --shuffle/--no-shuffle; its help says its range, its metavar its choices."""
    flag = "--" + option.name.replace("_", "-")
    default = getattr(DEFAULTS, option.name)  # the model's defaults filled in: the values a run gets
    if option.kind == "bool":
        return click.option(f"{flag}/--no-{flag[2:]}", option.name, default=default, show_default=True,
                            help=option.help_text())
    return click.option(flag, option.name, type=OptionText(option), help=option.help_text(),
                        default=format_text(option, default) if default not in (None, ()) else None, show_default=True)


def config_options(func):
    """The options that are experiment parameters (also valid as config-file keys): one per Config field."""
    for option in reversed(OPTIONS.values()):
        func = field_option(option)(func)
    return click.option("--config", "config_file", type=str,
                        help="A recipe name (see `mnist-clip recipes`) or a TOML file whose keys are these option names.")(func)


def config_from_options(ctx: click.Context, params: dict) -> Config:
    """Command line, then the config file (a path or a recipe name), then the defaults."""
    from mnist_clip.recipe_files import resolve_config_file

    config_file = resolve_config_file(params["config_file"]) if params.get("config_file") else None
    file_values = load_toml(config_file) if config_file else {}
    cli_values = {key: params[key] for key in OPTIONS if ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE}
    return resolve(file_values, cli_values, config_file)


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


def reporter(quiet: bool = False, print_every: int = 0):
    """Progress bars when stdout is a terminal; short lines when it is not, or with --quiet."""
    from mnist_clip.console.reporting import Reporter, process_seconds

    return Reporter(click.echo, "quiet" if quiet else "auto", print_every, total_seconds=process_seconds)


def run_options(func):
    """The options of a command that writes run folders (train and demo)."""
    options = [
        click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True,
                     help="Folder that holds the run (or demo) folders."),
        click.option("--name", type=str, default=None, help="Folder name (default: the recipe's name, or else the clip setting, and a timestamp)."),
        click.option("--overwrite", is_flag=True, help="Replace the folder of the same --name once the new one has finished."),
        click.option("--print-every", type=click.IntRange(min=0), default=0,
                     help="Print the ==before==/==after== norm listing every N steps (0: never)."),
        click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the PNGs into <run>/plots/."),
        click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files into <run>/tensorboard/."),
        click.option("--quiet", is_flag=True, help="No progress bar or epoch lines; the closing lines only."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command(short_help="Train one run and log every gradient norm.")
@config_options
@run_options
@click.pass_context
@stoppable()
def train(ctx: click.Context, out: str, name: str | None, overwrite: bool, print_every: int, plots: bool,
          tensorboard: bool, quiet: bool, **params) -> int:
    """Train one net (the tutorial's MLP by default, or --model rnn) and log every gradient norm
    before and after clipping."""
    from mnist_clip.api import run_training
    from mnist_clip.recipe_files import recipe_name

    config = config_from_options(ctx, params)
    result = run_training(config, reporter(quiet, print_every), out, name, overwrite, plots, tensorboard,
                          recipe=recipe_name(params.get("config_file")))
    return result.exit_code


SEEDS_OPTION = click.option("--seeds", type=int, default=1, show_default=True,
                            help="Repeat for seeds --seed, --seed + 1, ..., --seed + N - 1 and report their spread.")


@cli.command(short_help="Train with and without clipping, then compare.")
@config_options
@run_options
@SEEDS_OPTION
@click.pass_context
@stoppable()
def demo(ctx: click.Context, out: str, name: str | None, overwrite: bool, print_every: int, plots: bool,
         tensorboard: bool, quiet: bool, seeds: int, **params) -> int:
    """Train the same config with and without clipping, then compare the two.

    Same seed, same data, same initial weights: the only difference is clipping.
    Writes <out>/<name>/{clipped,unclipped,compare.png,compare.csv}.
    """
    from mnist_clip.api import run_demo
    from mnist_clip.recipe_files import recipe_name
    from mnist_clip.runs.table import table_text

    config = config_from_options(ctx, params)
    report = reporter(quiet, print_every)
    result = run_demo(config, report, out, name, overwrite, plots, tensorboard, seeds=seeds,
                      recipe=recipe_name(params.get("config_file")))
    echo("--- compared")
    echo(table_text(result.table.to_dict("records")))
    for note in result.notes:
        echo(note)
    runs = "{clipped,unclipped}" if seeds == 1 else "<run>"
    echo(f"pictures: {result.path / 'compare.png'} and {result.path}/{runs}/plots/")
    return result.exit_code


@cli.command(short_help="Redraw a run's pictures.")
@click.argument("run_dir", type=click.Path())
def plot(run_dir: str) -> None:
    """Redraw a run's PNGs into RUN_DIR/plots/ from its files alone."""
    from mnist_clip.viz.registry import write_run_plots

    for path in write_run_plots(run_dir):
        echo(str(path))


@cli.command(short_help="Overlay and tabulate several runs.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for compare.png and compare.csv (default: a new compare-<time> folder beside the first run).")
def compare(run_dirs: tuple[str, ...], out: str | None) -> None:
    """Overlay runs on shared axes and tabulate them (runs may differ in length or depth, or have diverged)."""
    from mnist_clip.api import run_compare
    from mnist_clip.runs.diagnosis import describe
    from mnist_clip.runs.table import table_text

    runs, rows, files = run_compare(list(run_dirs), out or None, beside=not out)
    echo(table_text(rows))
    for run in runs:
        for line in describe(run.summary):
            echo(f"{run.name}: {line}")
    for path in files:
        echo(f"wrote {path}")


def plan_options(kind: str, run: str):
    """The options of a command that trains many runs into one folder that it resumes (sweep, cures)."""
    def decorate(func):
        options = [
            click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True,
                         help=f"Folder that gets the {kind} folder."),
            click.option("--name", type=str, default=None,
                         help=f"{kind.capitalize()} folder name; an existing {kind} folder of that name is resumed."),
            click.option("--jobs", type=click.IntRange(min=1), default=min(2, os.cpu_count() or 1), show_default=True,
                         help=f"{run.capitalize()}s trained in parallel worker processes."),
            click.option("--plots/--no-plots", default=False, show_default=True, help=f"Draw each {run}'s own PNGs too."),
            click.option("--quiet", is_flag=True, help=f"No progress bar or line per {run}; the closing lines only."),
            SEEDS_OPTION,
        ]
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


@cli.command(short_help="Train a grid of settings and map where training blows up.")
@config_options
@click.option("--grid", "grid_specs", multiple=True, metavar="KEY=V1,V2,...",
              help="A config key and its values (repeatable, up to 4 keys). clip_norm=none means no clipping; "
                   "train/freeze values join tensors with +, hidden widths too. Default: "
                   + " ".join(f"--grid {g}" for g in DEFAULT_GRID))
@click.option("--metric", type=click.Choice(["test_accuracy", "final_loss"]), default="test_accuracy", show_default=True,
              help="What the stability map colours.")
@plan_options("sweep", "cell")
@click.pass_context
@stoppable(SWEEP_STOP_NOTICE)
def sweep(ctx: click.Context, grid_specs: tuple[str, ...], out: str, name: str | None, jobs: int, metric: str,
          plots: bool, quiet: bool, seeds: int, **params) -> int:
    """Train a grid of settings and draw where training blows up.

    Every cell is a normal run folder under <out>/<name>/cells/. Cells that
    finished earlier are not run again, so an interrupted sweep resumes with the
    same --name.
    """
    from mnist_clip.api import run_sweep_reported

    base = config_from_options(ctx, params)
    result = run_sweep_reported(base, list(grid_specs), reporter(quiet), out, name, jobs, plots, metric, seeds=seeds,
                                language="cli")
    return result.exit_code


@cli.command(short_help="Train a setup beside each cure for a NaN loss or vanishing gradients.")
@config_options
@click.option("--cure", "cure_names", multiple=True, metavar="NAME",
              help="A cure to train beside the setup (repeatable; default: every cure; see --list).")
@click.option("--list", "list_cures", is_flag=True, help="List the cures, what each sets, and exit.")
@plan_options("cures", "run")
@click.pass_context
@stoppable(CURES_STOP_NOTICE)
def cures(ctx: click.Context, cure_names: tuple[str, ...], list_cures: bool, out: str, name: str | None, jobs: int,
          plots: bool, quiet: bool, seeds: int, **params) -> int:
    """Train the setup (the options, or --config) beside each cure that applies to it.

    The cures are those the material lists for a NaN loss: a lower learning rate,
    normalisation, clipping, clean data, and a look at the net's design (input scale,
    initialisation, activation, residual paths, optimizer). Each is applied alone, from
    the same initial weights and data for each seed. Every run is a normal run folder
    under <out>/<name>/<cure>[-seed<N>]/; the folder gets cures.csv and cures.png. An
    interrupted run of cures resumes with the same --name.
    """
    from mnist_clip.api import run_cures_reported
    from mnist_clip.plans.cure_table import CURES, changes_text
    from mnist_clip.recipe_files import recipe_name

    if list_cures:
        from mnist_clip.console.reporting import table_lines

        for line in table_lines(None, [[cure.name, f"{changes_text(cure) or '(nothing)'}: {cure.words}"]
                                                          for cure in CURES], hanging=True):
            echo(line)
        return 0
    base = config_from_options(ctx, params)
    report = reporter(quiet)
    result = run_cures_reported(base, list(cure_names), report, out, name, seeds, jobs, plots,
                                recipe=recipe_name(params.get("config_file")), language="cli")
    for line in result.notes:
        echo(line)
    return result.exit_code


@cli.command(short_help="List the packaged recipes.")
def recipes() -> None:
    """The recipes that ship with mnist-clip; use one with --config NAME (e.g. --config explode)."""
    from mnist_clip.console.reporting import table_lines
    from mnist_clip.recipe_files import recipes as listed

    for line in table_lines(None, [[name, description] for name, description in listed().items()],
                            hanging=True):
        echo(line)


def main() -> None:
    """The console entry point. Once the command has ended, every file it wrote is closed
    and synced, so the process ends at once instead of spending half a second unwinding
    TensorFlow."""
    try:
        cli(prog_name="mnist-clip")
        code = 0
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        if not isinstance(end.code, (int, type(None))):
            click.echo(str(end.code), err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
