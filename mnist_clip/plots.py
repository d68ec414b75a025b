"""Pictures of one run, as pure functions Run -> matplotlib Figure. No TensorFlow here."""

from __future__ import annotations

import io
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, MaxNLocator

from mnist_clip.config import REFERENCE_HIDDEN, format_hidden
from mnist_clip.errors import InputError
from mnist_clip.nn import N_ROWS, ROW_WIDTH
from mnist_clip.runs import PLOTS_DIR, Run, compared_with_threshold, read_run, training_label, write_atomic


def subplots(rows: int = 1, cols: int = 1, figsize=None, layout=None, **options):
    """A Figure of its own, outside pyplot: nothing global to close or leak, drawable by
    any backend (PNG files here, inline in Jupyter)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(rows, cols, **options)


def colormap(name: str):
    return matplotlib.colormaps[name]

DIVERGED_COLOR = "#d62728"
FIGSIZE = (10, 7)
DPI = 100
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


def positive(values: np.ndarray) -> np.ndarray:
    """For log axes: NaN, Inf and values <= 0 become gaps."""
    values = np.asarray(values, dtype=float).copy()
    values[~np.isfinite(values) | (values <= 0)] = np.nan
    return values


def windowed_mean(values: np.ndarray, width: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Mean over a window of width[i] steps around each step i (from i - (width-1)//2 to
    i + width//2), ignoring NaN and the values where `keep` is False. A window that would
    reach past the last value is moved back to end there, so it stays full: the last steps
    are averaged over as many values as the steps before them, and the smoothed line does
    not turn into the raw noise at the end."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if not n:
        return values.copy()
    width = np.clip(np.asarray(width, dtype=int), 1, n)
    use = np.isfinite(values) & (True if keep is None else np.asarray(keep, dtype=bool))
    sums = np.concatenate([[0.0], np.cumsum(np.where(use, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(use)])
    index = np.arange(n)
    high = np.minimum(index + width // 2, n - 1) + 1
    low = np.maximum(high - width, 0)
    total, count = sums[high] - sums[low], counts[high] - counts[low]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def moving_average(values: np.ndarray, window: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Moving average that ignores NaN (and the values where `keep` is False): centred, its
    window shrinking at the start (the first value is its own average, so a curve starts
    where the raw one does) and kept full at the end (see windowed_mean)."""
    n = len(values)
    width = np.minimum(max(1, min(window, n)), 2 * np.arange(n) + 1)
    return windowed_mean(values, width, keep)


def log_moving_average(values: np.ndarray, window: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Moving geometric mean: the right smoother for ratios on a log axis."""
    return np.exp(moving_average(np.log(positive(values)), window, keep))


def norm_ratio(run: Run, numerator: str | None = None, denominator: str | None = None,
               when: str = "before") -> np.ndarray:
    """|g_numerator| / |g_denominator| per step; by default the first layer's weights over the
    last layer's (w1 / wL, or the recurrent net's wx / wo)."""
    numerator = numerator or run.net.layer_weights[0]
    denominator = denominator or run.net.layer_weights[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return run.metrics[f"{numerator}_{when}"] / run.metrics[f"{denominator}_{when}"]


def signal_ratio(run: Run, first: str | None = None) -> np.ndarray:
    """|dL/dz_1| / |dL/dz_L|: the back-propagated signal at the first layer over the last
    (the recurrent net's: |dL/dh_1| / |dL/dh_28|, or from the time step `first`)."""
    signals = run.net.signals
    if not signals:  # a Keras model's run (GradientProbe) records no signal
        return np.full(run.steps, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return run.metrics[first or signals[0]] / run.metrics[signals[-1]]


def steps_per_epoch(run: Run) -> int:
    used = run.config.get("dataset_used", {})
    train_size, batch = used.get("train_size"), run.config.get("batch_size")
    if train_size and batch:
        return max(1, math.ceil(train_size / batch))
    return max(1, int(np.sum(run.metrics["epoch"] == 0)))


def smoothing_window(run: Run) -> int:
    """An epoch, or a twentieth of the run if that is shorter (a short run is barely smoothed)."""
    return max(1, min(steps_per_epoch(run), run.steps // 20))


# Half a smoothing window is at most this share of (step + k), k the step axis' stretch: on the
# log(1 + step/k) axis every window then spans about the same width, so the spread-out first
# steps are averaged over a few neighbours only and later steps over up to smoothing_window.
WINDOW_SPREAD = 0.1


def short_batches(run: Run) -> np.ndarray:
    """Per step, True for an epoch's last batch when the batch size does not divide the
    training set: a batch of fewer examples, whose loss and norms stand apart from the rest."""
    used = run.config.get("dataset_used", {})
    train_size, batch = used.get("train_size"), run.config.get("batch_size")
    per_epoch = steps_per_epoch(run)
    steps = np.asarray(run.metrics["step"], dtype=int)
    if not train_size or not batch or train_size % batch == 0 or per_epoch < 2:
        return np.zeros(len(steps), dtype=bool)
    return steps % per_epoch == per_epoch - 1


@dataclass(frozen=True)
class Smoothing:
    """How every picture smooths a run's per-step values: a moving mean whose window grows
    from one step at the start to `window` steps (WINDOW_SPREAD), is kept full at the end,
    and leaves the short batches out (their steps get the mean of their neighbours). A full
    window of an epoch holds each batch of the epoch once: an unshuffled run's batches, each
    with its own typical norm, then make no ripple."""

    window: int
    width: np.ndarray  # per step: the window's width in steps
    keep: np.ndarray  # per step: False for the values left out

    def mean(self, values: np.ndarray) -> np.ndarray:
        return windowed_mean(values, self.width, self.keep)

    def geometric(self, values: np.ndarray) -> np.ndarray:
        """Moving geometric mean: the right smoother for norms and ratios on a log axis."""
        return np.exp(self.mean(np.log(positive(values))))

    @property
    def smooths(self) -> bool:
        return self.window > 1

    def words(self, geometric: bool = True) -> str:
        if not self.smooths:
            return "raw values (too few steps to smooth)"
        kind = "geometric mean" if geometric else "mean"
        skipped = ", short batches left out" if not self.keep.all() else ""
        return f"moving {kind} over up to {self.window} steps{skipped}"


def run_smoothing(run: Run) -> Smoothing:
    """The one Smoothing of a run, used by every picture that smooths its steps."""
    window = smoothing_window(run)
    steps = np.asarray(run.metrics["step"], dtype=float)
    spread = 2 * np.floor(WINDOW_SPREAD * (steps + step_stretch(steps_per_epoch(run)))).astype(int) + 1
    width = np.minimum(np.minimum(window, spread), 2 * np.arange(len(steps)) + 1)
    return Smoothing(window, width, ~short_batches(run))


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


def step_stretch(per_epoch: int) -> float:
    """k of the step axis log(1 + step / k): a quarter of an epoch. Steps well below k are
    spread almost evenly (the first steps, where norms are largest and runs blow up, get
    room), steps well above it logarithmically; the slope changes smoothly, with no kink."""
    return max(1.0, per_epoch / 4)


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
    fig.tight_layout(rect=(0, bottom / height, 1, 1))
    return fig


def architecture_label(config: dict) -> str:
    """'784-256-128-10 relu' for the reference, 'rnn 28x28-128-10 tanh, gain 1' for the recurrent
    net; the init is named when it is not the reference's."""
    if config.get("source") == "keras":
        from mnist_clip.probe_schema import architecture_label as model_label

        return model_label(config)
    hidden = tuple(config.get("hidden", (256, 128)))
    layers = f"784-{format_hidden(hidden).replace(',', '-')}-10" if hidden else "784-10 (linear)"
    init = config.get("init", "reference")
    if config.get("model", "mlp") != "mlp":  # a recurrent net: rnn or lstm
        layers = f"{config['model']} {N_ROWS}x{ROW_WIDTH}-{hidden[0]}-10"
        return (f"{layers} {config.get('activation', 'tanh')}, gain {config.get('recurrent_gain', 1.0):g}"
                + ("" if init == "reference" else f", {init} init"))
    norm = {"batch": ", batch norm", "layer": ", layer norm"}.get(config.get("norm", "none"), "")
    residual = ", residual" if config.get("residual") else ""
    return (f"{layers} {config.get('activation', 'relu')}" + ("" if init == "reference" else f", {init} init")
            + norm + residual)


def run_title(run: Run) -> str:
    """The run's name and settings: clipping, lr, scale, net, seed, the tensors trained when
    not all, the data and the status."""
    cfg = run.config
    used = cfg.get("dataset_used", {})
    trained = cfg.get("trainable")
    partial = f", trains {','.join(trained)} only" if trained and len(trained) < len(run.tensors) else ""
    seed = f", seed {cfg['seed']}" if "seed" in cfg else ""
    return (
        f"{run.name}: {run.clip_label}, {training_label(cfg)}, "
        + (f"x/{cfg['input_scale']:g}, " if cfg.get("input_scale") is not None else "") +
        f"{architecture_label(cfg)}{seed}{partial}, {used.get('name', '?')} ({run.status})"
    )


THRESHOLD_TITLES = {
    "none": "Global gradient norm (no clipping in this run)",
    "global_norm": "Global gradient norm against the threshold",
    "autoclip": "Global gradient norm and the AutoClip threshold",
    "norm": "What clip_by_norm compares: each tensor's L2 norm",
    "average_norm": "What clip_by_average_norm compares: each tensor's L2 norm / number of elements",
    "value": "What clip_by_value compares: each tensor's largest |element|",
    "agc": "What AGC compares: each tensor's largest unit ratio ||g|| / max(||w||, 1e-3)",
}


def compared_quantity(run: Run):
    """What the run's clipping method compares with its threshold, per step.

    Returns (title, y label, {label: values}, per_tensor, threshold values per step or None,
    threshold label)."""
    clip = run.config.get("clip", "none")
    quantity, series = compared_with_threshold(clip, run.metrics.__getitem__, run.tensors, run.net.shapes)
    per_tensor = clip not in ("none", "global_norm", "autoclip")
    threshold = run.config.get("clip_norm")
    if clip == "none":
        return THRESHOLD_TITLES[clip], quantity, series, False, None, ""
    if not per_tensor:
        series["global norm after"] = run.metrics["global_norm_after"]
    if clip == "autoclip":
        label = f"threshold: percentile {run.config.get('clip_percentile', 10.0):g} of the global norms so far"
        return THRESHOLD_TITLES[clip], quantity, series, False, run.metrics["clip_threshold"], label
    scope = {"norm": " (per tensor)", "average_norm": " (per tensor)", "value": " (per element)", "agc": " (per unit)"}
    name = "lambda" if clip == "agc" else "threshold"
    label = f"{name} {threshold:g}{scope.get(clip, '')}"
    return THRESHOLD_TITLES[clip], quantity, series, per_tensor, np.full(run.steps, float(threshold)), label


# How each role of tensor is drawn: weights thick, biases thin, a norm's gain dashed, its shift dotted.
ROLE_STYLES = {
    "weight": {"linewidth": 1.0, "alpha": 1.0},
    "bias": {"linewidth": 0.6, "alpha": 0.55},
    "gain": {"linewidth": 0.8, "alpha": 0.8, "linestyle": "--"},
    "shift": {"linewidth": 0.8, "alpha": 0.8, "linestyle": ":"},
    "recurrent": {"linewidth": 1.4, "alpha": 1.0, "linestyle": "-."},
}


def per_tensor_lines(ax, run: Run, values: dict, labelled: bool, **style) -> None:
    """One line per tensor, coloured by layer and styled by role (ROLE_STYLES)."""
    colors = layer_colors(run.n_layers)
    steps = run.metrics["step"]
    full = ~short_batches(run)
    for name, series in values.items():
        tensor = run.net.tensor(name)
        ax.plot(steps[full], positive(series)[full], color=colors[tensor.layer - 1], label=name if labelled else None,
                **{**ROLE_STYLES[tensor.role], **style})


def mark_clipped_steps(ax, run: Run) -> None:
    """A tick per step where clipping acted, at the foot of the axes; on the step axis the
    first steps stay apart. The count goes in the legend."""
    steps = run.metrics["step"]
    fired = run.metrics["clipped"] > 0
    label = f"clipping acted: {int(fired.sum())} of {run.steps} steps"
    ax.plot(steps[fired], np.full(int(fired.sum()), 0.03), linestyle="none", marker="|", markersize=9,
            markeredgewidth=1.2, color="tab:orange", transform=ax.get_xaxis_transform(), label=label)


def mark_dirty_steps(ax, run: Run) -> None:
    """In a run with dirty data, a tick at the top of the axes per step whose batch held a dirty
    example; the count goes in the legend."""
    if "dirty_in_batch" not in run.metrics:
        return
    held = run.metrics["dirty_in_batch"] > 0
    ax.plot(run.metrics["step"][held], np.full(int(held.sum()), 0.97), linestyle="none", marker="|", markersize=9,
            markeredgewidth=1.2, color="tab:brown", transform=ax.get_xaxis_transform(),
            label=f"batch holds dirty examples: {int(held.sum())} of {run.steps} steps")


CLEAR_OF_EDGE = 0.15  # of a log axis' height between a threshold line and either edge


def keep_line_clear(ax, low_line: float, high_line: float) -> None:
    """Widen a log y axis so that a threshold between low_line and high_line lies at least
    CLEAR_OF_EDGE inside it: not on the bottom edge under the clipping marks, nor at the top."""
    if not (np.isfinite(low_line) and np.isfinite(high_line)) or low_line <= 0:
        return
    low, high = np.log10(ax.get_ylim())
    line_low, line_high = np.log10(low_line), np.log10(high_line)
    span = max(high, line_high) - min(low, line_low)
    low = min(low, line_low - CLEAR_OF_EDGE * span / (1 - 2 * CLEAR_OF_EDGE))
    high = max(high, line_high + CLEAR_OF_EDGE * span / (1 - 2 * CLEAR_OF_EDGE))
    ax.set_ylim(10 ** low, 10 ** high)


def norms_figure(run: Run) -> Figure:
    """Per-tensor norms before clipping, and after it on the steps where it acted; below, what the
    clipping method compares with its threshold, with the threshold and the steps where it acted."""
    fig, (top, bottom) = subplots(2, 1, figsize=FIGSIZE, sharex=True, height_ratios=(3, 2))
    clipping = run.config.get("clip") not in (None, "none")
    labelled = run.n_layers <= MAX_LEGEND_LAYERS
    steps = run.metrics["step"]
    per_tensor_lines(top, run, {name: run.metrics[f"{name}_before"] for name in run.tensors}, labelled)
    if clipping:
        # After clipping, drawn only where it acted (elsewhere it equals before): triangles,
        # or for methods that act on most steps a dashed line with gaps.
        colors = layer_colors(run.n_layers)
        many = int(run.metrics["clipped"].sum()) > MAX_MARKED_STEPS
        full = ~short_batches(run)
        for name in run.tensors:
            acted = (run.metrics[f"{name}_clipped"] > 0) & (full if many else True)
            after = positive(run.metrics[f"{name}_after"])
            style = {"linestyle": "--", "linewidth": 0.8} if many else {"linestyle": "none", "marker": "v", "markersize": 4}
            top.plot(steps if many else steps[acted], np.where(acted, after, np.nan) if many else after[acted],
                     color=colors[run.net.tensor(name).layer - 1], **style)
        top.plot([], [], color="0.3", label="after clipping (where it acted)",
                 **({"linestyle": "--", "linewidth": 0.8} if many else {"linestyle": "none", "marker": "v", "markersize": 4}))
    log_y(top)
    top.set_ylabel("gradient L2 norm")
    what = ("before clipping (solid), and after it on the steps where it acted" if clipping
            else "(no clipping in this run)")
    top.set_title(f"Per-tensor gradient norms {what}\nweights thick, biases thin", fontsize=10)
    mark_divergence(top, run)
    mark_dirty_steps(top, run)
    if not labelled:
        layer_colorbar(fig, top, run.n_layers)
        top.plot([], [], color="0.3", linewidth=1.0, label="weights")
        top.plot([], [], color="0.3", linewidth=0.6, alpha=0.55, label="biases")

    title, ylabel, series, per_tensor, threshold, threshold_label = compared_quantity(run)
    if per_tensor:
        per_tensor_lines(bottom, run, series, labelled=False)
    else:
        full = ~short_batches(run)
        bottom.plot(steps[full], positive(series["global norm before"])[full], color="0.2", linewidth=1,
                    label="global norm before")
        if "global norm after" in series:
            acted = run.metrics["clipped"] > 0
            after = positive(series["global norm after"])
            if acted.sum() > MAX_MARKED_STEPS:
                bottom.plot(steps, np.where(acted, after, np.nan), color="tab:purple", linestyle="--", linewidth=0.8,
                            label="global norm after (where clipping acted)")
            else:
                bottom.plot(steps[acted], after[acted], color="tab:purple", linestyle="none", marker="v", markersize=4,
                            label="global norm after (where clipping acted)")
    if threshold is not None:
        bottom.plot(steps, positive(threshold), color="tab:red", linewidth=1.4, alpha=0.9, label=threshold_label,
                    zorder=4)
    if clipping:
        mark_clipped_steps(bottom, run)
    log_y(bottom)
    bottom.set_title(title, fontsize=10)
    bottom.set_ylabel(ylabel)
    mark_divergence(bottom, run)
    if threshold is not None:
        keep_line_clear(bottom, float(np.nanmin(positive(threshold))), float(np.nanmax(positive(threshold))))
    run_step_axis(bottom, run, epochs_on_top=False)
    run_step_axis(top, run, label=False, epochs_on_top=True)
    return finish_figure(fig, run, short_batch_note(run), legend_axes=(top, bottom))


def ratio_layers(run: Run) -> list[int]:
    """The layers whose weight gradient ratio.png sets against the last layer's:
    the first, and the middle one when there is one (the reference: w1 and w2)."""
    last = run.n_layers
    if last == 1:
        return []
    middle = (last + 1) // 2 if last > 2 else None
    return [1] + ([middle] if middle not in (None, 1, last) else [])


def smoothed_lines(ax, steps, values, smoothing: Smoothing, color, label: str, **style) -> None:
    """The raw values, pale, and their moving geometric mean on top (or the raw values
    alone, labelled, when the run is too short to smooth)."""
    full = smoothing.keep  # the raw line too leaves the short batches out
    raw_steps, raw = np.asarray(steps)[full], positive(values)[full]
    if smoothing.smooths:
        ax.plot(raw_steps, raw, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, smoothing.geometric(values), color=color, linewidth=2.2, label=label, **style)
    else:
        ax.plot(raw_steps, raw, color=color, linewidth=1.5, marker="o", markersize=3, label=label, **style)


PER_TENSOR_METHODS = ("norm", "value", "average_norm", "agc")  # they can change one tensor's norm against another's


def ratio_panel(run: Run, lines: list[tuple[str, str, str]], denominator: str, ylabel: str, title: str) -> Figure:
    """The ratio picture of any net: per (numerator, colour, label) |g_numerator| / |g_denominator|
    before clipping, raw (pale) and smoothed, dashed after per-tensor clipping; `title` ends in a note."""
    fig, ax = subplots(figsize=FIGSIZE)
    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    for numerator, color, label in lines:
        smoothed_lines(ax, steps, norm_ratio(run, numerator, denominator), smoothing, color, label)
        if run.config.get("clip") in PER_TENSOR_METHODS:
            ax.plot(steps, smoothing.geometric(norm_ratio(run, numerator, denominator, when="after")), color=color,
                    linewidth=1.8, linestyle="--", label=label.replace("before clipping",
                                                                       f"after {run.config['clip']} clipping"))
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title.format(smoothing=smoothing.words()), 120), fontsize=10)
    mark_divergence(ax, run)
    run_step_axis(ax, run, epochs_on_top=True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)
    return fig


def ratio_figure(run: Run) -> Figure:
    """|g_w1|/|g_wL| (and a middle layer's) before clipping, raw and smoothed."""
    last = f"w{run.n_layers}"
    colors = layer_colors(run.n_layers)
    lines = [(f"w{layer}", colors[layer - 1], f"|g_w{layer}| / |g_{last}| before clipping")
             for layer in ratio_layers(run)]
    note = {
        "global_norm": "Global-norm clipping scales all tensors of a step alike: it leaves these ratios unchanged.",
        "autoclip": "AutoClip clips by global norm: it leaves these ratios unchanged.",
        "none": "No clipping in this run.",
    }.get(run.config.get("clip"), "Dashed: the same ratios after per-tensor clipping.")
    if run.n_layers == 1:
        note = "A linear model has one layer: there is no ratio to show."
    fig = ratio_panel(run, lines, last, "ratio of gradient norms (log)",
                      "Weight-gradient norm of the first (and middle) layer relative to the last: raw per step "
                      f"(pale) and {{smoothing}}. {note}")
    return finish_figure(fig, run, short_batch_note(run))


def loss_figure(run: Run) -> Figure:
    """Training loss per step (log) and test accuracy per epoch."""
    fig, (left, right) = subplots(1, 2, figsize=FIGSIZE, width_ratios=(3, 2))
    steps = run.metrics["step"]
    loss = run.metrics["loss"]
    smoothing = run_smoothing(run)
    full = smoothing.keep
    left.plot(steps[full], positive(loss)[full], color="0.6", linewidth=0.8, label="loss per step")
    if smoothing.smooths:
        left.plot(steps, smoothing.geometric(loss), color="k", linewidth=1.8, label=smoothing.words())
    if run.epochs["epoch"].size:
        last_steps = [max(steps[run.metrics["epoch"] == epoch], default=np.nan) for epoch in run.epochs["epoch"]]
        left.plot(last_steps, positive(run.epochs["test_loss"]), "o-",
                  color="tab:blue", markersize=3, label="test loss (after the epoch's last step)")
    log_y(left)
    left.set_ylabel(("cross-entropy" if run.config.get("loss") == "crossentropy" else "MSE") + " loss (log)")
    left.set_title("Loss", fontsize=10)
    mark_divergence(left, run)
    run_step_axis(left, run)
    epochs = run.epochs["epoch"] + 1
    right.plot(epochs, 100 * run.epochs["test_accuracy"], "o-", color="tab:green", markersize=4)
    right.set_ylim(0, 100)
    epoch_axis(right, len(epochs))
    right.set_ylabel("test accuracy (%)")
    right.set_title("Test accuracy after each epoch", fontsize=10)
    right.grid(alpha=0.3)
    return finish_figure(fig, run, short_batch_note(run), legend_axes=(left,))


def signals_figure(run: Run) -> Figure:
    """Back-propagated signal |dL/dz_l| per layer beside the weight-gradient norms, and inactive units."""
    fig, (top, middle, bottom) = subplots(3, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2, 1.3))
    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    colors = layer_colors(run.n_layers)
    labelled = run.n_layers <= MAX_LEGEND_LAYERS
    for layer, color in enumerate(colors, start=1):
        top.plot(steps, smoothing.geometric(run.metrics[f"delta{layer}"]), color=color, linewidth=2,
                 label=f"signal |dL/dz{layer}|" if labelled else None)
        top.plot(steps, smoothing.geometric(run.metrics[f"w{layer}_before"]), color=color, linewidth=1.2,
                 linestyle="--", label=f"weight gradient |g_w{layer}|" if labelled else None)
    log_y(top)
    top.set_ylabel("L2 norm (log)")
    top.set_title(f"Back-propagated signal (solid) and weight gradients (dashed) per layer,\n{smoothing.words()}",
                  fontsize=10)
    if not labelled:
        layer_colorbar(fig, top, run.n_layers)
    last = run.n_layers
    smoothed_lines(middle, steps, signal_ratio(run), smoothing, colors[0], f"signal ratio |dL/dz1| / |dL/dz{last}|")
    middle.plot(steps, smoothing.geometric(norm_ratio(run, "w1")), color=colors[0], linewidth=1.2,
                linestyle="--", label=f"gradient ratio |g_w1| / |g_w{last}| ({'smoothed' if smoothing.smooths else 'raw'})")
    middle.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(middle)
    middle.set_ylabel("first / last layer")
    middle.set_title("First layer over last: " + ("raw (pale) and smoothed" if smoothing.smooths else "raw"), fontsize=9)
    kind = "dead (zero for the whole batch)" if run.activation == "relu" else "saturated (derivative < 1% of its maximum for the whole batch)"
    for layer, column in enumerate(run.activity_columns, start=1):
        bottom.plot(steps[smoothing.keep], 100 * run.metrics[column][smoothing.keep], color=colors[layer - 1], linewidth=1,
                    label=f"h{layer}: {'dead' if run.activation == 'relu' else 'saturated'} units" if labelled else None)
    bottom.set_title(f"Hidden units {kind}, raw per step" if run.activity_columns else "No hidden layer", fontsize=9)
    bottom.set_ylabel("units (%)")
    largest = max((np.nanmax(100 * run.metrics[column][smoothing.keep], initial=0.0) for column in run.activity_columns),
                  default=0.0)
    bottom.set_ylim(0, max(5.0, 1.1 * largest))  # a line at 0 stays in sight above the axis, on a scale of %
    for ax in (top, middle, bottom):
        mark_divergence(ax, run)
    run_step_axis(bottom, run)
    run_step_axis(top, run, label=False, epochs_on_top=True)
    return finish_figure(fig, run, short_batch_note(run), legend_axes=(top, middle, bottom))


def profile_epochs(run: Run, count: int = 5) -> list[int]:
    """The epochs flow.png draws: the first, a few evenly in between, and the last."""
    epochs = np.unique(run.metrics["epoch"]).astype(int)
    if len(epochs) <= count:
        return epochs.tolist()
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, count)).astype(int))
    return epochs[picks].tolist()


def last_complete_epoch(run: Run) -> int | None:
    """The last epoch (0-based) the run finished before any NaN/Inf, or None if it diverged
    within its first epoch: a diverged run's last epoch holds its exploding steps, not the
    end of training."""
    if not run.steps:
        return None
    step = run.nonfinite_step
    if step is None:
        return int(run.metrics["epoch"][-1])
    index = min(int(np.searchsorted(run.metrics["step"], step)), run.steps - 1)
    diverged_in = int(run.metrics["epoch"][index])
    return diverged_in - 1 if diverged_in > 0 else None


def layer_profile(run: Run, epoch: int, prefix: str) -> np.ndarray:
    """Per layer, the median over the epoch's finite steps of w{l}_before (prefix 'w') or of the
    signal delta{l} (the recurrent net's: wx, wo; and dh_t per time step)."""
    rows = run.metrics["epoch"] == epoch
    profile = []
    columns = [f"{name}_before" for name in run.net.layer_weights] if prefix == "w" else run.net.signals
    for column in columns:
        values = run.metrics[column][rows]
        values = values[np.isfinite(values)]
        profile.append(float(np.median(values)) if values.size else np.nan)
    return np.array(profile)


def layer_shapes(run: Run) -> list[tuple[int, int]]:
    """(inputs, outputs) of each layer's weight matrix: 784 inputs, the hidden sizes, 10 classes."""
    sizes = [784, *run.config.get("hidden", REFERENCE_HIDDEN), 10]
    return list(zip(sizes[:-1], sizes[1:]))


def size_note(run: Run) -> str | None:
    """Why |g_w| can change from layer to layer without any vanishing or exploding: a norm
    sums over a tensor's entries, and the layers' weight matrices differ in size."""
    shapes = layer_shapes(run)
    if len(set(shapes)) < 2 or len(shapes) != run.n_layers:
        return None
    groups = []  # runs of consecutive layers with the same shape
    for layer, shape in enumerate(shapes, start=1):
        if groups and groups[-1][1] == shape:
            groups[-1][0].append(layer)
        else:
            groups.append(([layer], shape))
    named = [(f"w{layers[0]}" if len(layers) == 1 else f"w{layers[0]}-w{layers[-1]}") + f" {a}x{b}"
             for layers, (a, b) in groups]
    return ("|g_w| sums over a matrix's entries, and these differ in size (" + ", ".join(named) + "): "
            "with entries of equal size a norm grows as the square root of their number, so a step in the solid "
            "lines between layers of different sizes is not vanishing or exploding. Read the slope across layers "
            "of one size, and the dashed signal δ.")


RUNUP_STEPS = 4  # a diverged run's flow picture draws this many of its last finite steps,
RUNUP_SPAN = 10  # spread over this many steps before the first NaN/Inf


def runup_rows(run: Run) -> list[int]:
    """The rows of a diverged run's run-up that flow.png draws one by one: up to RUNUP_STEPS
    of its last RUNUP_SPAN finite steps, the last one included. Empty for a run that did not
    diverge, or diverged at its first step."""
    step = run.nonfinite_step
    if step is None:
        return []
    finite = np.flatnonzero(np.asarray(run.metrics["step"]) < step)[-RUNUP_SPAN:]
    if not finite.size:
        return []
    picks = np.unique(np.round(np.linspace(0, finite.size - 1, min(RUNUP_STEPS, finite.size))).astype(int))
    return finite[picks].tolist()


def drawn_epochs(run: Run) -> list[int]:
    """The epochs flow.png draws as medians: profile_epochs of a run that did not diverge; of a
    diverged one, up to three of the epochs it completed (its run-up is drawn step by step)."""
    if run.nonfinite_step is None:
        return profile_epochs(run)
    complete = last_complete_epoch(run)
    if complete is None:
        return []
    return np.unique(np.round(np.linspace(0, complete, min(3, complete + 1))).astype(int)).tolist()


def runup_colors(count: int) -> list:
    """Reds, light to dark toward the last finite step."""
    cmap = colormap("Reds")
    return [cmap(x) for x in np.linspace(0.45, 0.95, count)] if count > 1 else [cmap(0.95)]


ZERO_MARK = "v"  # a value of exactly 0 on a log axis: a triangle on its bottom edge
INF_MARK = "^"  # an Inf: a triangle on its top edge


def edge_marks(ax, x, values, color, size: float = 6) -> set[str]:
    """Values a log axis cannot show, kept in view: exactly 0 as a triangle on the bottom edge,
    Inf on the top edge. Returns which kinds were drawn ("zero", "inf")."""
    values = np.asarray(values, dtype=float)
    x = np.asarray(x)
    drawn = set()
    for kind, where, edge, marker in (("zero", values == 0, 0.0, ZERO_MARK), ("inf", np.isposinf(values), 1.0, INF_MARK)):
        if where.any():
            ax.plot(x[where], np.full(int(where.sum()), edge), linestyle="none", marker=marker, color=color,
                    markersize=size, clip_on=False, transform=ax.get_xaxis_transform(), zorder=5)
            drawn.add(kind)
    return drawn


def edge_handles(kinds: set[str]) -> list:
    from matplotlib.lines import Line2D

    words = {"zero": (ZERO_MARK, "on the bottom edge: exactly 0 (a log axis has no 0)"),
             "inf": (INF_MARK, "on the top edge: Inf (float32 overflowed)")}
    return [Line2D([], [], color="0.3", linestyle="none", marker=words[kind][0], label=words[kind][1])
            for kind in ("zero", "inf") if kind in kinds]


def step_profile(run: Run, row: int, prefix: str) -> np.ndarray:
    """Per layer, one step's w{l}_before (prefix 'w') or signal (the recurrent net's dh_t)."""
    columns = [f"{name}_before" for name in run.net.layer_weights] if prefix == "w" else run.net.signals
    return np.array([run.metrics[column][row] for column in columns], dtype=float)


def profile_axis(ax, run: Run, xlabel: str, quantity: str, title: str) -> None:
    """A flow picture's profile panel: log y, integer x, and labels that say whether a line is an
    epoch's median or, in a diverged run, one of its last finite steps."""
    log_y(ax)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if run.nonfinite_step is not None:
        ax.set_ylabel(f"{quantity}: an epoch's median, or one step (log)")
        title += f"\nReds: the last finite steps before NaN/Inf at step {run.nonfinite_step}."
    else:
        ax.set_ylabel(f"median {quantity} over the epoch (log)")
    ax.set_title(title, fontsize=10)


def flow_figure(run: Run) -> Figure:
    """The gradient-flow profile: per layer from input to output, the weight-gradient norm
    and the back-propagated signal, one line per chosen epoch (a diverged run: its last
    complete epochs and then its last finite steps, one by one); and a layer x step map."""
    from matplotlib.lines import Line2D

    fig, (left, right) = subplots(1, 2, figsize=(12, 6), width_ratios=(1, 1.1))
    layers = np.arange(1, run.n_layers + 1)
    epochs = drawn_epochs(run)
    cmap = colormap("viridis" if run.nonfinite_step is not None else "plasma")
    median = " (median)" if run.nonfinite_step is not None else ""  # beside single steps
    profiles = [(f"epoch {epoch + 1}{median}", layer_profile(run, epoch, "w"), layer_profile(run, epoch, "delta"),
                 cmap(0.85 * i / max(1, len(epochs) - 1))) for i, epoch in enumerate(epochs)]
    rows = runup_rows(run)
    profiles += [(f"step {int(run.metrics['step'][row])}" + (" (last finite)" if row == rows[-1] else ""),
                  step_profile(run, row, "w"), step_profile(run, row, "delta"), color)
                 for row, color in zip(rows, runup_colors(len(rows)))]
    handles, edges = [], set()
    for words, weights, signal, color in profiles:
        left.plot(layers, positive(weights), "o-", color=color, linewidth=1.8, markersize=4)
        left.plot(layers, positive(signal), "s--", color=color, linewidth=1.0, markersize=3, alpha=0.8)
        edges |= edge_marks(left, layers, weights, color) | edge_marks(left, layers, signal, color)
        handles.append(Line2D([], [], color=color, linewidth=3, label=words))
    handles += [Line2D([], [], color="0.3", marker="o", linewidth=1.8, markersize=4, label="|g_w|: weight gradient"),
                Line2D([], [], color="0.3", marker="s", linestyle="--", linewidth=1.0, markersize=3,
                       label="|δ|: back-propagated signal")]
    handles += edge_handles(edges)
    profile_axis(left, run, "layer (1 = next to the input, %d = output)" % run.n_layers, "L2 norm",
                 "Gradient flow: weight gradients (solid) and back-propagated\nsignal δ (dashed). "
                 "A slope down to the left is vanishing; flat is healthy.")
    # below the axes, where it cannot hide a line; an epoch is one entry, never split
    legend_below(left, handles, ncol=2)
    left.grid(alpha=0.3, which="both")

    steps = run.metrics["step"]
    table = np.array([positive(run.metrics[f"w{layer}_before"]) for layer in layers])
    full = ~short_batches(run)  # a short batch's norms stand apart: it would draw a stripe
    with np.errstate(divide="ignore", invalid="ignore"):
        log_table = np.log10(table[:, full])
    finite = log_table[np.isfinite(log_table)]
    if finite.size:
        # the colours span every value, step 0's large norms too: nothing is cut off; a short batch's
        # column is left out and the step before it spans its place
        kept = steps[full]
        edges_x = np.append(kept - 0.5, steps[-1] + 0.5)
        image = right.pcolormesh(edges_x, np.arange(0.5, run.n_layers + 1), np.ma.masked_invalid(log_table),
                                 cmap="magma", vmin=finite.min(), vmax=finite.max(), shading="flat", rasterized=True)
        bar = fig.colorbar(image, ax=right, pad=0.02)
        blank = not np.all(np.isfinite(log_table))
        bar.set_label("log10 |g_w| before clipping (full range)" + ("; white: NaN/Inf" if blank else ""), fontsize=9)
        bar.ax.tick_params(labelsize=8)
    right.set_ylabel("layer")
    right.set_ylim(0.5, run.n_layers + 0.5)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_title("Weight-gradient norm per layer and step", fontsize=10)
    mark_divergence(right, run)
    run_step_axis(right, run)
    notes = [size_note(run), short_batch_note(run, "the map")]
    return finish_figure(fig, run, " ".join(note for note in notes if note) or None)


UPDATE_RATIO_RULE = 1e-3  # the update-to-weight ratio practitioners look for


def update_ratio(run: Run, weight: str) -> np.ndarray:
    """||Delta w|| / ||w|| per step: the step the optimizer took relative to the weight it moved."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return run.metrics[f"{weight}_update"] / run.metrics[f"{weight}_norm"]


def updates_figure(run: Run) -> Figure:
    """How far each layer's weights really move: the update-to-weight ratio per step, and each
    weight's distance from its initial value per epoch."""
    weights = list(run.net.weights)
    if f"{weights[0]}_update" not in run.metrics:
        return note_figure(run, f"{run.name} was written before mnist-clip logged each step's update;\n"
                                "train it again to see how far its weights move.")
    fig, (top, bottom) = subplots(2, 1, figsize=FIGSIZE, height_ratios=(3, 2))
    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    colors = layer_colors(run.n_layers)
    labelled = run.n_layers <= MAX_LEGEND_LAYERS
    trained = set(run.config.get("trainable", run.tensors))
    for name in weights:
        frozen = "" if name in trained else " (frozen: no step)"
        tensor = run.net.tensor(name)
        smoothed_lines(top, steps, update_ratio(run, name), smoothing, colors[tensor.layer - 1],
                       f"||Δ{name}|| / ||{name}||{frozen}" if labelled else None,
                       **({"linestyle": "-."} if tensor.role == "recurrent" else {}))
    top.axhline(UPDATE_RATIO_RULE, color="0.35", linestyle=":", linewidth=1.2,
                label=f"rule of thumb {UPDATE_RATIO_RULE:g}")
    log_y(top)
    top.set_ylabel("update / weight (log)")
    optimizer = run.config.get("optimizer", "sgd")
    top.set_title(f"The step {optimizer} took relative to each weight, per step: raw (pale) and\n"
                  f"{smoothing.words()}", fontsize=10)
    mark_divergence(top, run)
    run_step_axis(top, run, epochs_on_top=True)
    moved = [f"{name}_moved" for name in weights]
    epochs = run.epochs["epoch"] + 1
    if moved[0] in run.epochs and len(epochs):
        for name, column in zip(weights, moved):
            tensor = run.net.tensor(name)
            bottom.plot(epochs, positive(run.epochs[column]), marker="o", color=colors[tensor.layer - 1], markersize=3,
                        linewidth=1.5, label=name if labelled else None,
                        linestyle="-." if tensor.role == "recurrent" else "-")
        log_y(bottom)
    epoch_axis(bottom, len(epochs))
    bottom.set_ylabel("||w - w_init|| / ||w_init|| (log)")
    bottom.set_title("How far each weight has moved from its initial value, at the end of each epoch", fontsize=10)
    bottom.grid(alpha=0.3, which="both")
    if not labelled:
        layer_colorbar(fig, top, run.n_layers)
        layer_colorbar(fig, bottom, run.n_layers)
    return finish_figure(fig, run, short_batch_note(run), legend_axes=(top, bottom))


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


RUN_FIGURES = {  # the MLP's pictures; mnist_clip.figures picks a run's family
    "norms.png": norms_figure,
    "ratio.png": ratio_figure,
    "loss.png": loss_figure,
    "signals.png": signals_figure,
    "flow.png": flow_figure,
    "updates.png": updates_figure,
}


def save_figure(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
    return path
