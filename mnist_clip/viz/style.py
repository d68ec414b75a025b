"""What every picture shares: figures outside pyplot, colours, log axes that write plain
numbers, step and epoch axes, legends and notes at the foot, the title, and saving a PNG."""

from __future__ import annotations

import contextlib
import io
import math
import re
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.artist
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, MaxNLocator

from mnist_clip.runs.folder import write_atomic
from mnist_clip.runs.reader import Run
from mnist_clip.viz.labels import run_title
from mnist_clip.viz.series import short_batches, step_stretch, steps_per_epoch


def subplots(rows: int = 1, cols: int = 1, figsize=None, layout=None, **options):
    """A Figure of its own, outside pyplot: nothing global to close or leak, drawable by
    any backend (PNG files here, inline in Jupyter)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(rows, cols, **options)


def tight_layout(fig: Figure, rect=(0, 0, 1, 1)) -> None:
    """fig.tight_layout(rect=rect), to the same pixels, with less work (a run's six pictures
    draw in three quarters of the time).

    With a rect, matplotlib lays out twice and measures every Axes' decorations each time,
    at the same places (the second pass only moves the margins): here each is measured once.
    And tight_layout leaves a placeholder layout engine behind, for which savefig would draw
    the whole figure once more before drawing it into the file: the figure is left with none.
    """
    with _measured_once():
        fig.tight_layout(rect=rect)
    fig.set_layout_engine(None)


@contextlib.contextmanager
def _measured_once():
    measure = getattr(matplotlib.artist, "_get_tightbbox_for_layout_only", None)
    if measure is None:  # a matplotlib that measures otherwise: as it does
        yield
        return
    sizes = {}

    def once(artist, *args, **kwargs):
        if id(artist) not in sizes:  # the artists outlive the layout: ids stay theirs
            sizes[id(artist)] = measure(artist, *args, **kwargs)
        return sizes[id(artist)]

    matplotlib.artist._get_tightbbox_for_layout_only = once
    try:
        yield
    finally:
        matplotlib.artist._get_tightbbox_for_layout_only = measure


def colormap(name: str):
    return matplotlib.colormaps[name]

DIVERGED_COLOR = "#d62728"
FIGSIZE = (10, 7)
DPI = 100
PNG_COMPRESSION = 3  # zlib's level: files 1% larger than at PIL's 6, written 7% faster (same pixels)
MAX_LEGEND_LAYERS = 4  # deeper nets get a colour bar for the layer instead of a legend entry per tensor
MAX_MARKED_STEPS = 60  # up to this many clipped steps, each gets its own marker


def layer_colors(n_layers: int) -> list:
    """One colour per layer along a sequential colour map: input side dark, output side light."""
    cmap = colormap("viridis")
    return [cmap(x) for x in np.linspace(0.0, 0.85, n_layers)] if n_layers > 1 else [cmap(0.0)]


def layer_colorbar(fig: Figure, ax, n_layers: int) -> None:
    """The layer as a colour bar just right of `ax`, for nets too deep for a legend entry per layer."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    norm = BoundaryNorm(np.arange(0.5, n_layers + 1.5), n_layers)
    mappable = ScalarMappable(norm=norm, cmap=ListedColormap(layer_colors(n_layers)))
    bar = fig.colorbar(mappable, cax=ax.inset_axes([1.015, 0.0, 0.02, 1.0]))
    bar.set_label("layer (1 = next to the input)", fontsize=8)
    bar.set_ticks(sorted({1, n_layers, *range(1, n_layers + 1, max(1, n_layers // 6))}))
    bar.ax.tick_params(labelsize=7)


def plain_number(value: float) -> str:
    """0.001, 0.5, 20, and 1e-06 as 1e-6: the one way every log axis writes its numbers."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{value:g}")


class PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks to label, with plain numbers (0.6, not 6e-01)."""

    def _num_to_string(self, x, vmin, vmax):
        return plain_number(x)

    def set_locs(self, locs=None):
        super().set_locs(locs)
        vmin, vmax = sorted(self.axis.get_view_interval())
        if self._sublabels not in (None, {1}) and vmin > 0 and math.log10(vmax / vmin) > 1:
            self._sublabels = {1, 2, 5}  # over more than a decade, 2 and 5 only: labels that do not crowd


TICK_SIZE = 8  # every tick label, major or minor, on every axis


def log_y(ax) -> None:
    """Log y axis labelled 0.01, 0.5, 20 rather than 10^-2, 5x10^-1, 2x10^1, in one font
    size; an axis with fewer than three powers of ten in view also labels some of its minor
    ticks (matplotlib counts them when drawing), so that it never shows just one or two numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: plain_number(value)))
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.tick_params(axis="y", which="both", labelsize=TICK_SIZE)


def legend_below(ax, handles: list, ncol: int = 2) -> None:
    """A legend under the axes' tick labels and x label, at a fixed distance from the axes
    whatever their height, where it can hide no line."""
    from matplotlib.transforms import ScaledTranslation

    below = ax.transAxes + ScaledTranslation(0, -0.5, ax.figure.dpi_scale_trans)
    ax.legend(handles=handles, fontsize=8, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, 0.0),
              bbox_transform=below)


def legend_right(ax, **options) -> None:
    """The legend outside the axes, on the right, where it cannot hide data."""
    ax.legend(**{"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0, "fontsize": 8, **options})


def mark_divergence(ax, run: Run) -> None:
    step = run.nonfinite_step
    if step is not None:
        ax.axvline(step, color=DIVERGED_COLOR, linestyle=":", linewidth=1.5, label=f"NaN/Inf at step {step}")


# --- The step axis: one continuous transform, log(1 + step / k), in every picture -------------

TICK_GAP = 0.07  # of the axis' width, at least, between two labelled ticks


def step_scale(per_epoch: int):
    """Forward and inverse functions of the step axis, for matplotlib's "function" scale.
    Every picture with steps on x uses this one transform (a run's and compare's alike)."""
    k = step_stretch(per_epoch)

    def forward(steps):
        return np.log1p(np.maximum(np.asarray(steps, dtype=float), -0.9 * k) / k)

    def inverse(position):
        return k * np.expm1(np.asarray(position, dtype=float))

    return forward, inverse


def spaced_ticks(candidates: list, steps_at, forward, limits: tuple, keep_last: bool = False) -> list:
    """The candidates (in order) whose steps, steps_at(candidate), lie at least TICK_GAP of
    the axis' width apart; with keep_last, the last candidate is kept before the others."""
    low, high = (float(forward(limit)) for limit in limits)
    where = lambda value: (float(forward(steps_at(value))) - low) / ((high - low) or 1.0)  # noqa: E731
    chosen = [candidates[-1]] if keep_last and candidates else []
    for value in candidates:
        if value not in chosen and all(abs(where(value) - where(other)) >= TICK_GAP for other in chosen):
            chosen.append(value)
    return sorted(chosen)


def nice_numbers(last: float, start: int = 1) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... (from `start`) up to `last`."""
    numbers, scale = [], 1
    while scale <= last:
        numbers += [m * scale for m in (1, 2, 5) if start <= m * scale <= last]
        scale *= 10
    return numbers


def step_axis_words(per_epoch: int) -> str:
    return f"step (scale log(1 + step/{step_stretch(per_epoch):g}), to spread out the first steps)"


def step_axis(ax, n_steps: int, per_epoch: int, label: bool = True, epochs_on_top: bool = False) -> None:
    """Steps on x on the one step scale (step_scale), ticked at 0, 1, 2, 5, 10, 20, ...; and,
    if the run has several epochs, the end of each epoch on a top axis, counted 1..N as the
    console and loss.png count them."""
    forward, inverse = step_scale(per_epoch)
    last = max(n_steps - 1, 1)
    limits = (-0.5, last + 0.5)
    ax.set_xscale("function", functions=(forward, inverse))
    ax.set_xlim(*limits)
    candidates = list(range(last + 1)) if last <= 10 else [0, *nice_numbers(last)]  # a short run: every step
    steps = spaced_ticks(candidates, lambda step: step, forward, limits)
    ax.xaxis.set_major_locator(FixedLocator(steps))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.tick_params(axis="x", labelsize=TICK_SIZE)
    if label:
        ax.set_xlabel(step_axis_words(per_epoch), fontsize=9)
    if epochs_on_top and n_steps > per_epoch:
        # A twin axis on the same scale: a secondary axis would not follow a function scale.
        top = ax.twiny()
        top.set_xscale("function", functions=(forward, inverse))
        top.set_xlim(*limits)
        n_epochs = -(-n_steps // per_epoch)
        end = lambda epoch: min(epoch * per_epoch, n_steps) - 0.5  # noqa: E731  (epoch e ends after step e*P - 1)
        epochs = spaced_ticks(sorted({*nice_numbers(n_epochs), n_epochs}), end, forward, limits, keep_last=True)
        top.xaxis.set_major_locator(FixedLocator([end(epoch) for epoch in epochs]))
        top.xaxis.set_minor_locator(FixedLocator([]))
        top.set_xticklabels([str(epoch) for epoch in epochs])
        top.set_xlabel("end of epoch", fontsize=9)
        top.tick_params(axis="both", which="both", labelsize=TICK_SIZE)


def epoch_axis(ax, n_epochs: int) -> None:
    """Epochs 1..N on x, as the console counts them: every epoch up to 12, else 1, a few
    round numbers and N."""
    n_epochs = max(n_epochs, 1)
    ax.set_xlim(0.5, n_epochs + 0.5)
    ticks = range(1, n_epochs + 1) if n_epochs <= 12 else \
        sorted({1, n_epochs, *(int(t) for t in MaxNLocator(6, integer=True).tick_values(1, n_epochs)
                              if 1 < t < n_epochs - n_epochs / 12)})
    ax.xaxis.set_major_locator(FixedLocator(list(ticks)))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.tick_params(axis="x", labelsize=TICK_SIZE)
    ax.set_xlabel("epoch")


def run_step_axis(ax, run: Run, label: bool = True, epochs_on_top: bool = False) -> None:
    step_axis(ax, max(run.steps, 1), steps_per_epoch(run), label, epochs_on_top)


def short_batch_note(run: Run, drawn: str = "the lines") -> str | None:
    """Why the lines (or the map: `drawn`) skip a step every epoch, on a picture that draws its
    steps, for a data set that the batch size does not divide. None where there is no short batch."""
    if not short_batches(run).any():
        return None
    used = run.config.get("dataset_used", {})
    train_size, batch = used["train_size"], run.config["batch_size"]
    full, rest = divmod(train_size, batch)
    count = int(short_batches(run).sum())
    return (f"Every epoch ends with a shorter batch ({train_size:,} = {full} x {batch} + {rest} examples), whose "
            f"values stand apart from the full batches' (a mean over fewer examples): {count} such "
            f"step{'s' if count > 1 else ''}, left out of {drawn}.")


NOTE_CHAR_PIXELS = 6.0  # the width of a character of the notes (8 points) at DPI
NOTE_LINE_PIXELS = 13


LEGEND_COLUMNS = 4
LEGEND_ROW_PIXELS = 17


def finish_figure(fig: Figure, run: Run, note: str | None = None, legend_axes=()) -> Figure:
    """The run's title on top; at the foot a note (wrapped to the figure's width) and, above
    it, one legend for `legend_axes` in rows across the width (legends beside the axes would
    leave the space under them empty); the axes laid out between."""
    fig.suptitle(run_title(run), fontsize=11)
    width, height = fig.get_size_inches() * DPI
    bottom = 2.0
    if note:
        note = textwrap.fill(note, int(width / NOTE_CHAR_PIXELS))
        fig.text(0.01, 0.005, note, fontsize=8, color="0.35", ha="left", va="bottom")
        bottom += (note.count("\n") + 1) * NOTE_LINE_PIXELS + 6
    entries = {}
    for ax in legend_axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        columns = min(LEGEND_COLUMNS, len(entries))
        rows = -(-len(entries) // columns)
        fig.legend(list(entries.values()), list(entries), loc="lower center", bbox_to_anchor=(0.5, bottom / height),
                   ncol=columns, fontsize=8, frameon=False)
        bottom += rows * LEGEND_ROW_PIXELS + 8
    tight_layout(fig, rect=(0, bottom / height, 1, 1))
    return fig


def note_figure(run: Run, text: str) -> Figure:
    fig, ax = subplots(figsize=FIGSIZE)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13)
    return finish_figure(fig, run)


def empty_figure(run: Run) -> Figure:
    """What a run with no recorded step shows: it was stopped or failed in its first epoch."""
    fig, ax = subplots(figsize=FIGSIZE)
    ax.axis("off")
    ax.text(0.5, 0.5, f"No training step recorded in {run.name} (status: {run.status}).\n"
            "The run was stopped, or failed, before its first epoch ended;\n"
            "steps are written once per epoch.", ha="center", va="center", fontsize=13)
    return finish_figure(fig, run)


def save_figure(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESSION})
    write_atomic(path, buffer.getvalue())
    return path
