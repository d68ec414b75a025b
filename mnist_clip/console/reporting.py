"""What a run, a demo and a sweep tell the person watching: progress bars in a terminal or
a notebook, short lines elsewhere, and the closing summary."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mnist_clip.config import Config
from mnist_clip.experiment import Progress, never_acted_line
from mnist_clip.runs.diagnosis import describe
from mnist_clip.runs.labels import training_label
from mnist_clip.training.methods import clip_label

MODES = ("auto", "bar", "lines", "quiet")
_IMPORTED = time.perf_counter()


NOT_A_TERMINAL_WIDTH = 100  # the width printed lines keep to when the output is not a terminal
NARROWEST = 40  # a narrower terminal still gets lines of this width


def terminal_width() -> int:
    """The width printed lines keep to: $COLUMNS, else the terminal's, else 100."""
    return max(NARROWEST, shutil.get_terminal_size((NOT_A_TERMINAL_WIDTH, 24)).columns)


def fit_line(text: str, width: int | None = None) -> str:
    """A line wrapped to the width, each continuation indented two spaces past the line's own indent."""
    width = width or terminal_width()
    if all(len(part) <= width for part in text.split("\n")):
        return text
    lines = []
    for part in text.split("\n"):
        indent = " " * (len(part) - len(part.lstrip(" ")))
        # a path longer than the width stays whole: one that copies is worth more than one that fits
        lines += textwrap.wrap(part, width, initial_indent="", subsequent_indent=indent + "  ",
                               break_on_hyphens=False, break_long_words=False) or [""]
    return "\n".join(lines)


def table_lines(headers: list[str] | None, rows: list[list[str]], width: int | None = None,
                hanging: bool = False) -> list[str]:
    """Aligned columns (under a header line, when headers are given) when they fit the width.
    Otherwise, with `hanging`, the last column wraps beneath itself; else each row becomes its
    first cell, then `header: value` pairs wrapped beneath it."""
    width = width or terminal_width()
    n = len(headers) if headers else len(rows[0]) if rows else 0
    widths = [max(len(headers[i]) if headers else 0, *(len(r[i]) for r in rows)) for i in range(n)]
    every = [headers, *rows] if headers else rows
    if sum(widths) + 2 * (n - 1) <= width:
        return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in every]
    start = sum(widths[:-1]) + 2 * (n - 1)
    if hanging and start <= width // 2:
        lines = []
        for row in every:
            parts = textwrap.wrap(row[-1], width - start, break_on_hyphens=False) or [""]
            lines.append(("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + parts[0]).rstrip())
            lines += [" " * start + part for part in parts[1:]]
        return lines
    lines = []
    for row in rows:
        lines.append(textwrap.shorten(row[0], width, placeholder="..."))
        named = zip(headers[1:], row[1:]) if headers else (("", c) for c in row[1:])
        pairs = "; ".join(f"{h}: {c}" if h else c for h, c in named if c != "")
        lines += textwrap.wrap(pairs, width, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
    return lines


def in_notebook() -> bool:
    """Running inside a Jupyter kernel (where tqdm draws its widget)."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def resolve_mode(mode: str, stream=None) -> str:
    """auto: progress bars in a terminal or a notebook, lines when output goes to a file or pipe."""
    if mode != "auto":
        return mode
    stream = stream or sys.stdout
    return "bar" if in_notebook() or (hasattr(stream, "isatty") and stream.isatty()) else "lines"


def process_seconds() -> float:
    """How long this process has run, from the kernel's record of its start (Linux), else
    since this module was imported."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def new_bar(**options):
    """tqdm's bar: its widget inside Jupyter (when ipywidgets is installed), else the text bar."""
    import importlib.util

    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(dynamic_ncols=True, **options)


def norm_listing(step: int, values: dict[str, float], tensors: tuple[str, ...]) -> list[str]:
    """The reference's ==before== / ==after== listing for one step."""
    lines = [f"step {step}  loss {values['loss']:.6g}"]
    for when in ("before", "after"):
        norms = "  ".join(f"{name} {values[f'{name}_{when}']:.6g}" for name in tensors)
        lines.append(f"=={when}==  {norms}  global {values[f'global_norm_{when}']:.6g}")
    return lines


def plural(count: int, noun: str) -> str:
    """'1 epoch', '5 epochs'."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


TUTORIAL_TRAINING = ("model", "loss", "input_scale", "optimizer", "lr", "hidden", "activation", "init", "norm")


def accuracy_line(config: Config, summary: dict, train_size: int | None) -> str | None:
    """One line on why a completed run of the tutorial's training setting ends where it does:
    the few training digits, MSE on inputs scaled by 50, the tutorial's plain SGD."""
    accuracy = summary.get("test_accuracy")
    reference = Config()
    if (summary.get("status") != "completed" or accuracy is None
            or any(getattr(config, key) != getattr(reference, key) for key in TUTORIAL_TRAINING)):
        return None
    digits = f"{train_size:,} training digits, " if train_size else ""
    return (f"why {100 * accuracy:.1f}%: {digits}MSE on x/{config.input_scale:g} inputs, plain SGD at "
            f"{config.lr:g} for {plural(config.epochs, 'epoch')}: the tutorial's setting, made to show gradient "
            "norms, not to score")


def settings_text(config: Config) -> str:
    """The settings of a run in one line: what a reader needs to tell runs apart."""
    from mnist_clip.viz.labels import architecture_label

    parts = [clip_label(config.to_dict()), training_label(config.to_dict()), f"x/{config.input_scale:g}",
             architecture_label(config.to_dict()), f"seed {config.seed}", plural(config.epochs, "epoch")]
    if config.trainable != config.param_names:
        parts.append(f"trains {','.join(config.trainable)} only")
    if config.batch_size != 128:
        parts.append(f"batch {config.batch_size}")
    if config.shuffle:
        parts.append("shuffled")
    return ", ".join(parts)


class Reporter:
    """Prints through `echo` in one of the modes: "bar" (a tqdm bar per run or sweep, with the
    lines above it), "lines" (one line per epoch or cell), "quiet" (the closing lines only)."""

    def __init__(self, echo: Callable[[str], None] = print, mode: str = "auto", print_every: int = 0,
                 total_seconds: Callable[[], float] | None = None):
        self.echo_raw = echo
        self.mode = resolve_mode(mode)
        self.print_every = print_every
        self.total_seconds = total_seconds
        self.bar = None

    def line(self, text: str) -> None:
        text = fit_line(text)
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.echo_raw(text)

    def epochs_note(self, recipe: str | None, epochs: int) -> None:
        """One line when the recipe needs more epochs than the run has to show its point."""
        from mnist_clip.recipe_files import short_run_line

        note = short_run_line(recipe, epochs)
        if note:
            self.line(note)

    def data(self, dataset) -> None:
        self.line(f"data: {dataset.name} ({len(dataset.y_train):,} train / {len(dataset.y_test):,} test): {dataset.reason}")

    # --- one run ---

    def run_progress(self, config: Config) -> Progress:
        """The run's bar and lines, and a line when the pictures are being drawn (a few seconds
        with nothing else on the screen)."""
        reporter = self
        compiled = []  # the first epoch with steps has been counted (it includes compiling)

        def begin(total_steps: int) -> None:
            reporter.open_bar(total_steps, "compiling")

        def steps(result) -> None:
            if not reporter.print_every:
                return
            for i, row in enumerate(result.values):
                step = result.first_step + i
                if step % reporter.print_every == 0:
                    for text in norm_listing(step, dict(zip(result.columns, map(float, row))), config.param_names):
                        reporter.line(text)

        def epoch(result, trainer) -> None:
            n_steps = len(result.values)
            if not n_steps:
                return
            if reporter.bar is not None:
                reporter.bar.set_description("training")
                reporter.bar.set_postfix_str(f"loss {np.mean(result.column('loss')):.4g}, "
                                             f"test acc {100 * result.test_accuracy:.1f}%")
                reporter.bar.update(n_steps)
                if not compiled:
                    # Rate and ETA from the steady epochs only: the first one's compiling
                    # would make 2 s of work look like minutes.
                    reporter.bar.initial, reporter.bar.start_t = reporter.bar.n, time.time()
            compiled.append(True)
            if reporter.mode != "quiet":
                reporter.line(epoch_line(config, result))

        def drawing(names: list[str]) -> None:
            if reporter.mode != "quiet":
                reporter.line(f"drawing the pictures ({', '.join(names)}) ...")

        return Progress(on_epoch=epoch, on_steps=steps, on_begin=begin, on_end=reporter.close_bar,
                        on_drawing=drawing)

    def open_bar(self, total_steps: int, stage: str) -> None:
        """The run's bar (in bar mode), shown from the first moments on, its stage as its label."""
        if self.mode != "bar":
            return
        if self.bar is None:
            # smoothing 0: the rate is the mean since start_t, which epoch() moves past the compiling
            self.bar = new_bar(total=total_steps, unit="step", desc=stage, leave=True, smoothing=0)
        else:
            self.bar.set_description(stage)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def run_started(self, config: Config) -> Callable[[Path], None]:
        return lambda path: self.line(f"run:  {path}  ({settings_text(config)})")

    def run_finished(self, config: Config, outcome, kept_earlier: Path | None = None) -> None:
        summary = outcome.summary
        if summary["status"] == "diverged":
            for text in describe(summary) or [f"diverged at step {summary['first_nonfinite_step']}"]:
                self.line(text)
        elif summary["status"] == "interrupted":
            self.line(f"interrupted after {summary['steps']} steps; everything so far is saved")
            if kept_earlier is not None:
                self.line(f"the earlier run in {kept_earlier} is kept; this one is in {outcome.path}")
        total = self.total_seconds() if self.total_seconds else summary["wall_seconds"]
        lines = summary_lines(summary, outcome.path, outcome.plot_paths, total, outcome.pictures_stopped)
        why = accuracy_line(config, summary, run_train_size(outcome.path))
        if why:
            lines.insert(2, why)  # after the status and the accuracy
        for text in lines:
            self.line(text)
        note = never_acted_line(summary, config)
        if note:
            self.line(note)

    # --- a sweep ---

    def sweep_progress(self, total_cells: int, unit: str = "cell", label: str = "sweep") -> Callable[[str], None]:
        """A bar of cells (or runs) done (with its ETA) in bar mode; each finished one as a line."""
        if self.mode == "bar" and total_cells:
            self.bar = new_bar(total=total_cells, unit=unit, desc=label, leave=True)

        def cell_done(text: str) -> None:
            if self.bar is not None:
                self.bar.update(1)
            if self.mode != "quiet" or not text.startswith("["):
                self.line(text)

        return cell_done


def run_train_size(run_dir: Path) -> int | None:
    """The number of training examples a run used, from its config.json."""
    import json

    try:
        return int(json.loads((Path(run_dir) / "config.json").read_text())["dataset_used"]["train_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def epoch_line(config: Config, result) -> str:
    steps = len(result.values)
    norms = result.column("global_norm_before")
    clip_text = "no clipping" if config.clip == "none" else f"clipped {int(result.column('clipped').sum())}/{steps}"
    smallest = np.nanmin(norms) if np.isfinite(norms).any() else float("nan")
    return (
        f"epoch {result.epoch + 1:>{len(str(config.epochs))}}/{config.epochs}"
        f"  loss {np.mean(result.column('loss')):.4g} (test {result.test_loss:.4g})"
        f"  test acc {100 * result.test_accuracy:.1f}%"
        f"  |g| {smallest:.3g}..{np.nanmax(norms):.3g}"
        f"  {clip_text}  {result.seconds:.1f} s"
    )


def summary_lines(summary: dict, run_dir: Path, plot_paths: list, total_seconds: float,
                  pictures_stopped: bool = False) -> list[str]:
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
        lines.append(f"{summary['ms_per_step']:.3f} ms per step{compiling}; training {summary['train_seconds']:.1f} s, "
                     f"{total_seconds:.1f} s in all")
    lines.append(f"files: {run_dir}/ (metrics.csv, epochs.csv, summary.json, config.json)")
    if plot_paths:
        lines.append(f"plots: {plot_paths[0].parent}/ ({', '.join(p.name for p in plot_paths)})")
    if pictures_stopped:
        lines.append(f"pictures: stopped while drawing them; `mnist-clip plot {run_dir}` draws them")
    return lines
