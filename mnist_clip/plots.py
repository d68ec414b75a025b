"""Pictures of one run, as pure functions Run -> matplotlib Figure. No TensorFlow here."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, MaxNLocator

from mnist_clip.config import REFERENCE_HIDDEN, format_hidden
from mnist_clip.errors import InputError
from mnist_clip.runs import PLOTS_DIR, Run, compared_with_threshold, read_run, write_atomic


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


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaN, its window shrinking symmetrically at
    both ends: the first and last values are their own average, so a smoothed curve
    starts where the raw one does instead of being pulled towards later values."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if not n:
        return values.copy()
    half = np.minimum(max(1, min(window, n)) // 2, np.minimum(np.arange(n), np.arange(n)[::-1]))
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    index = np.arange(n)
    low, high = index - half, index + half + 1
    total, count = sums[high] - sums[low], counts[high] - counts[low]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def log_moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Moving geometric mean: the right smoother for ratios on a log axis."""
    return np.exp(moving_average(np.log(positive(values)), window))


def norm_ratio(run: Run, numerator: str, denominator: str | None = None, when: str = "before") -> np.ndarray:
    """|g_numerator| / |g_denominator| per step; the denominator defaults to the last layer's weights."""
    denominator = denominator or f"w{run.n_layers}"
    with np.errstate(invalid="ignore", divide="ignore"):
        return run.metrics[f"{numerator}_{when}"] / run.metrics[f"{denominator}_{when}"]


def signal_ratio(run: Run) -> np.ndarray:
    """|dL/dz_1| / |dL/dz_L|: the back-propagated signal at the first layer over the last."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return run.metrics["delta1"] / run.metrics[f"delta{run.n_layers}"]


def steps_per_epoch(run: Run) -> int:
    used = run.config.get("dataset_used", {})
    train_size, batch = used.get("train_size"), run.config.get("batch_size")
    if train_size and batch:
        return max(1, math.ceil(train_size / batch))
    return max(1, int(np.sum(run.metrics["epoch"] == 0)))


def smoothing_window(run: Run) -> int:
    """An epoch, or a twentieth of the run if that is shorter (a short run is barely smoothed)."""
    return max(1, min(steps_per_epoch(run), run.steps // 20))


def smoothing_words(window: int) -> str:
    return f"{window}-step moving geometric mean" if window > 1 else "raw values (too few steps to smooth)"


class PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks to label, with plain numbers (0.6, not 6e-01)."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def log_y(ax) -> None:
    """Log y axis labelled 0.01, 0.5, 20 rather than 10^-2, 5x10^-1, 2x10^1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.5)))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def legend_right(ax, **options) -> None:
    """The legend outside the axes, on the right, where it cannot hide data."""
    ax.legend(**{"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0, "fontsize": 8, **options})


def mark_divergence(ax, run: Run) -> None:
    step = run.nonfinite_step
    if step is not None:
        ax.axvline(step, color=DIVERGED_COLOR, linestyle=":", linewidth=1.5, label=f"NaN/Inf at step {step}")


# --- The step axis: the first epoch opened up -------------------------------------------

OPENED_SHARE = 0.25  # of the axis' width given to the first epoch when a run is longer


def opened_scale(n_steps: int, opened: int):
    """Forward and inverse functions of a piecewise-linear step axis on which steps
    0..opened take OPENED_SHARE of the width and the rest the remainder; None when
    the run is too short for that to open anything up."""
    if n_steps <= 2 * opened or opened < 1:
        return None
    near = OPENED_SHARE * n_steps / opened
    far = (1 - OPENED_SHARE) * n_steps / (n_steps - opened)
    edge = opened * near

    def forward(steps):
        steps = np.asarray(steps, dtype=float)
        return np.where(steps <= opened, steps * near, edge + (steps - opened) * far)

    def inverse(position):
        position = np.asarray(position, dtype=float)
        return np.where(position <= edge, position / near, opened + (position - edge) / far)

    return forward, inverse


def step_ticks(n_steps: int, opened: int | None) -> list[int]:
    """Integer step ticks, a few inside the opened first epoch and a few after it."""
    last = max(n_steps - 1, 1)
    if opened is None:
        return [int(t) for t in MaxNLocator(8, integer=True).tick_values(0, last) if 0 <= t <= last]
    inside = [0, opened // 2, opened]
    after = [int(t) for t in MaxNLocator(6, integer=True).tick_values(opened, last) if opened * 1.6 < t <= last]
    return sorted(set(inside + after))


def step_axis(ax, n_steps: int, per_epoch: int, label: bool = True, epochs_on_top: bool = False,
              opened: int | None = None) -> None:
    """Steps on x with the first epoch (or the first `opened` steps) stretched to a quarter of
    the width (a grey line marks where the scale changes), and whole epochs on a top axis if
    the run has several."""
    opened = opened or per_epoch
    opened = opened if opened_scale(n_steps, opened) else None
    if opened is not None:
        ax.set_xscale("function", functions=opened_scale(n_steps, opened))
        ax.axvline(opened, color="0.75", linewidth=0.8, zorder=0)
    ax.set_xlim(-0.5, max(n_steps - 1, 1) + 0.5)
    ax.xaxis.set_major_locator(FixedLocator(step_ticks(n_steps, opened)))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    if label:
        stretched = "the first epoch" if opened == per_epoch else "the first steps"
        ax.set_xlabel("step" + (f" ({stretched}, 0-{opened}, stretched to a quarter of the width)"
                                if opened is not None else ""), fontsize=9)
    if epochs_on_top and n_steps > per_epoch:
        # A twin axis on the same (possibly opened) scale, ticked at whole epochs:
        # a secondary axis would not follow a function scale.
        top = ax.twiny()
        if opened is not None:
            top.set_xscale("function", functions=opened_scale(n_steps, opened))
        top.set_xlim(ax.get_xlim())
        n_epochs = n_steps / per_epoch
        epochs = [e for e in MaxNLocator(8, integer=True).tick_values(0, n_epochs) if 0 <= e <= n_epochs]
        epochs = sorted(set([0, 1] + [int(e) for e in epochs]))
        top.xaxis.set_major_locator(FixedLocator([e * per_epoch for e in epochs]))
        top.xaxis.set_minor_locator(FixedLocator([]))
        top.set_xticklabels([str(e) for e in epochs])
        top.set_xlabel("epoch", fontsize=9)
        top.tick_params(labelsize=8)


def run_step_axis(ax, run: Run, label: bool = True, epochs_on_top: bool = False) -> None:
    step_axis(ax, max(run.steps, 1), steps_per_epoch(run), label, epochs_on_top)


def short_batch_note(run: Run) -> str | None:
    """The regular spikes of a data set that the batch size does not divide, explained."""
    used = run.config.get("dataset_used", {})
    train_size, batch = used.get("train_size"), run.config.get("batch_size")
    if not train_size or not batch or train_size % batch == 0 or run.steps <= steps_per_epoch(run):
        return None
    full, rest = divmod(train_size, batch)
    return (f"Every epoch ends with a shorter batch ({train_size:,} = {full} x {batch} + {rest} examples): "
            f"per-step values jump every {full + 1} steps.")


def finish_figure(fig: Figure, run: Run, note: str | None = None) -> Figure:
    fig.suptitle(run_title(run), fontsize=11)
    if note:
        fig.text(0.01, 0.005, note, fontsize=8, color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.025 if note else 0, 1, 1))
    return fig


def architecture_label(config: dict) -> str:
    """'784-256-128-10 relu' for the reference; the init is named when it is not the reference's."""
    hidden = tuple(config.get("hidden", (256, 128)))
    layers = f"784-{format_hidden(hidden).replace(',', '-')}-10" if hidden else "784-10 (linear)"
    init = config.get("init", "reference")
    return f"{layers} {config.get('activation', 'relu')}" + ("" if init == "reference" else f", {init} init")


def run_title(run: Run) -> str:
    """The run's name and settings: clipping, lr, scale, net, seed, the tensors trained when
    not all, the data and the status."""
    cfg = run.config
    used = cfg.get("dataset_used", {})
    trained = cfg.get("trainable")
    partial = f", trains {','.join(trained)} only" if trained and len(trained) < len(run.tensors) else ""
    seed = f", seed {cfg['seed']}" if "seed" in cfg else ""
    return (
        f"{run.name}: {run.clip_label}, lr {cfg.get('lr')}, x/{cfg.get('input_scale'):g}, "
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
    quantity, series = compared_with_threshold(clip, run.metrics.__getitem__, run.tensors,
                                               run.config.get("hidden", REFERENCE_HIDDEN))
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


def per_tensor_lines(ax, run: Run, values: dict, labelled: bool, **style) -> None:
    """One line per tensor, coloured by layer: weights thick, biases thin."""
    colors = layer_colors(run.n_layers)
    steps = run.metrics["step"]
    for name, series in values.items():
        layer = int(name[1:])
        weight = name.startswith("w")
        ax.plot(steps, positive(series), color=colors[layer - 1], linewidth=1.0 if weight else 0.6,
                alpha=1.0 if weight else 0.55, label=name if labelled else None, **style)


def mark_clipped_steps(ax, run: Run) -> None:
    """A tick per step where clipping acted, at the foot of the axes; in the opened first
    epoch adjacent steps stay apart. The count goes in the legend."""
    steps = run.metrics["step"]
    fired = run.metrics["clipped"] > 0
    label = f"clipping acted: {int(fired.sum())} of {run.steps} steps"
    ax.plot(steps[fired], np.full(int(fired.sum()), 0.03), linestyle="none", marker="|", markersize=9,
            markeredgewidth=1.2, color="tab:orange", transform=ax.get_xaxis_transform(), label=label)


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
        for name in run.tensors:
            acted = run.metrics[f"{name}_clipped"] > 0
            after = positive(run.metrics[f"{name}_after"])
            style = {"linestyle": "--", "linewidth": 0.8} if many else {"linestyle": "none", "marker": "v", "markersize": 4}
            top.plot(steps if many else steps[acted], np.where(acted, after, np.nan) if many else after[acted],
                     color=colors[int(name[1:]) - 1], **style)
        top.plot([], [], color="0.3", label="after clipping (where it acted)",
                 **({"linestyle": "--", "linewidth": 0.8} if many else {"linestyle": "none", "marker": "v", "markersize": 4}))
    log_y(top)
    top.set_ylabel("gradient L2 norm")
    what = ("before clipping (solid), and after it on the steps where it acted" if clipping
            else "(no clipping in this run)")
    top.set_title(f"Per-tensor gradient norms {what}\nweights thick, biases thin", fontsize=10)
    mark_divergence(top, run)
    if not labelled:
        layer_colorbar(fig, top, run.n_layers)
        top.plot([], [], color="0.3", linewidth=1.0, label="weights")
        top.plot([], [], color="0.3", linewidth=0.6, alpha=0.55, label="biases")
    legend_right(top, ncol=2 if labelled else 1, **({} if labelled else {"bbox_to_anchor": (1.09, 1.0)}))

    title, ylabel, series, per_tensor, threshold, threshold_label = compared_quantity(run)
    if per_tensor:
        per_tensor_lines(bottom, run, series, labelled=False)
    else:
        bottom.plot(steps, positive(series["global norm before"]), color="0.2", linewidth=1, label="global norm before")
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
        bottom.plot(steps, positive(threshold), color="tab:red", linewidth=1.2, alpha=0.8, label=threshold_label)
    if clipping:
        mark_clipped_steps(bottom, run)
    log_y(bottom)
    bottom.set_title(title, fontsize=10)
    bottom.set_ylabel(ylabel)
    mark_divergence(bottom, run)
    legend_right(bottom)
    run_step_axis(bottom, run, epochs_on_top=False)
    run_step_axis(top, run, label=False, epochs_on_top=True)
    return finish_figure(fig, run, short_batch_note(run))


def ratio_layers(run: Run) -> list[int]:
    """The layers whose weight gradient ratio.png sets against the last layer's:
    the first, and the middle one when there is one (the reference: w1 and w2)."""
    last = run.n_layers
    if last == 1:
        return []
    middle = (last + 1) // 2 if last > 2 else None
    return [1] + ([middle] if middle not in (None, 1, last) else [])


def smoothed_lines(ax, steps, values, window: int, color, label: str, **style) -> None:
    """The raw values, pale, and their moving geometric mean on top (or the raw values
    alone, labelled, when the run is too short to smooth)."""
    if window > 1:
        ax.plot(steps, positive(values), color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, log_moving_average(values, window), color=color, linewidth=2.2, label=label, **style)
    else:
        ax.plot(steps, positive(values), color=color, linewidth=1.5, marker="o", markersize=3, label=label, **style)


def ratio_figure(run: Run) -> Figure:
    """|g_w1|/|g_wL| (and a middle layer's) before clipping, raw and smoothed."""
    fig, ax = subplots(figsize=FIGSIZE)
    steps = run.metrics["step"]
    window = smoothing_window(run)
    last = f"w{run.n_layers}"
    per_tensor = run.config.get("clip") in ("norm", "value", "average_norm", "agc")
    colors = layer_colors(run.n_layers)
    for layer in ratio_layers(run):
        name = f"w{layer}"
        color = colors[layer - 1]
        smoothed_lines(ax, steps, norm_ratio(run, name), window, color, f"|g_{name}| / |g_{last}| before clipping")
        if per_tensor:
            ax.plot(steps, log_moving_average(norm_ratio(run, name, when="after"), window), color=color,
                    linewidth=1.8, linestyle="--", label=f"|g_{name}| / |g_{last}| after {run.config['clip']} clipping")
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(ax)
    ax.set_ylabel("ratio of gradient norms (log)")
    note = {
        "global_norm": "Global-norm clipping scales all tensors of a step alike: it leaves these ratios unchanged.",
        "autoclip": "AutoClip clips by global norm: it leaves these ratios unchanged.",
        "none": "No clipping in this run.",
    }.get(run.config.get("clip"), "Dashed: the same ratios after per-tensor clipping.")
    if run.n_layers == 1:
        note = "A linear model has one layer: there is no ratio to show."
    ax.set_title("Weight-gradient norm of the first (and middle) layer relative to the last: raw per step (pale) and\n"
                 f"{smoothing_words(window)}. {note}", fontsize=10)
    mark_divergence(ax, run)
    run_step_axis(ax, run, epochs_on_top=True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)
    return finish_figure(fig, run, short_batch_note(run))


def loss_figure(run: Run) -> Figure:
    """Training loss per step (log) and test accuracy per epoch."""
    fig, (left, right) = subplots(1, 2, figsize=FIGSIZE, width_ratios=(3, 2))
    steps = run.metrics["step"]
    loss = run.metrics["loss"]
    window = smoothing_window(run)
    left.plot(steps, positive(loss), color="0.6", linewidth=0.8, label="loss per step")
    if window > 1:
        left.plot(steps, log_moving_average(loss, window), color="k", linewidth=1.8, label=smoothing_words(window))
    if run.epochs["epoch"].size:
        last_steps = [max(steps[run.metrics["epoch"] == epoch], default=np.nan) for epoch in run.epochs["epoch"]]
        left.plot(last_steps, positive(run.epochs["test_loss"]), "o-",
                  color="tab:blue", markersize=3, label="test loss (after the epoch's last step)")
    log_y(left)
    left.set_ylabel("MSE loss (log)")
    left.set_title("Loss", fontsize=10)
    mark_divergence(left, run)
    run_step_axis(left, run, label=False)
    left.set_xlabel("step (first epoch stretched)" if opened_scale(run.steps, steps_per_epoch(run)) else "step")
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    epochs = run.epochs["epoch"] + 1
    right.plot(epochs, 100 * run.epochs["test_accuracy"], "o-", color="tab:green", markersize=4)
    right.set_ylim(0, 100)
    right.set_xlim(0.5, max(len(epochs), 1) + 0.5)
    right.xaxis.set_major_locator(FixedLocator(epochs) if len(epochs) <= 12 else MaxNLocator(integer=True))
    right.set_xlabel("epoch")
    right.set_ylabel("test accuracy (%)")
    right.set_title("Test accuracy after each epoch", fontsize=10)
    right.grid(alpha=0.3)
    return finish_figure(fig, run)


def signals_figure(run: Run) -> Figure:
    """Back-propagated signal |dL/dz_l| per layer beside the weight-gradient norms, and inactive units."""
    fig, (top, middle, bottom) = subplots(3, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2, 1.3))
    steps = run.metrics["step"]
    window = smoothing_window(run)
    colors = layer_colors(run.n_layers)
    labelled = run.n_layers <= MAX_LEGEND_LAYERS
    for layer, color in enumerate(colors, start=1):
        top.plot(steps, log_moving_average(run.metrics[f"delta{layer}"], window), color=color, linewidth=2,
                 label=f"signal |dL/dz{layer}|" if labelled else None)
        top.plot(steps, log_moving_average(run.metrics[f"w{layer}_before"], window), color=color, linewidth=1.2,
                 linestyle="--", label=f"weight gradient |g_w{layer}|" if labelled else None)
    log_y(top)
    top.set_ylabel("L2 norm (log)")
    top.set_title(f"Back-propagated signal (solid) and weight gradients (dashed) per layer, {smoothing_words(window)}",
                  fontsize=10)
    if labelled:
        legend_right(top)
    else:
        layer_colorbar(fig, top, run.n_layers)
    last = run.n_layers
    smoothed_lines(middle, steps, signal_ratio(run), window, colors[0], f"signal ratio |dL/dz1| / |dL/dz{last}|")
    middle.plot(steps, log_moving_average(norm_ratio(run, "w1"), window), color=colors[0], linewidth=1.2,
                linestyle="--", label=f"gradient ratio |g_w1| / |g_w{last}| ({'smoothed' if window > 1 else 'raw'})")
    middle.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(middle)
    middle.set_ylabel("first / last layer")
    middle.set_title("First layer over last: raw (pale) and smoothed", fontsize=9)
    legend_right(middle)
    kind = "dead (zero for the whole batch)" if run.activation == "relu" else "saturated (derivative < 1% of its maximum for the whole batch)"
    for layer, column in enumerate(run.activity_columns, start=1):
        bottom.plot(steps, 100 * run.metrics[column], color=colors[layer - 1], linewidth=1,
                    label=f"h{layer}" if labelled else None)
    bottom.set_title(f"Hidden units {kind}, raw per step" if run.activity_columns else "No hidden layer", fontsize=9)
    bottom.set_ylabel("units (%)")
    bottom.set_ylim(bottom=0)
    if labelled and run.activity_columns:
        legend_right(bottom)
    for ax in (top, middle, bottom):
        mark_divergence(ax, run)
    run_step_axis(bottom, run)
    run_step_axis(top, run, label=False, epochs_on_top=True)
    return finish_figure(fig, run, short_batch_note(run))


def profile_epochs(run: Run, count: int = 5) -> list[int]:
    """The epochs flow.png draws: the first, a few evenly in between, and the last."""
    epochs = np.unique(run.metrics["epoch"]).astype(int)
    if len(epochs) <= count:
        return epochs.tolist()
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, count)).astype(int))
    return epochs[picks].tolist()


def layer_profile(run: Run, epoch: int, prefix: str) -> np.ndarray:
    """Per layer, the median over the epoch's finite steps of w{l}_before (prefix 'w') or delta{l}."""
    rows = run.metrics["epoch"] == epoch
    profile = []
    for layer in range(1, run.n_layers + 1):
        column = f"w{layer}_before" if prefix == "w" else f"delta{layer}"
        values = run.metrics[column][rows]
        values = values[np.isfinite(values)]
        profile.append(float(np.median(values)) if values.size else np.nan)
    return np.array(profile)


def flow_figure(run: Run) -> Figure:
    """The gradient-flow profile: per layer from input to output, the weight-gradient norm
    and the back-propagated signal, one line per chosen epoch; and a layer x step map."""
    fig, (left, right) = subplots(1, 2, figsize=(12, 6), width_ratios=(1, 1.1))
    layers = np.arange(1, run.n_layers + 1)
    epochs = profile_epochs(run)
    cmap = colormap("plasma")
    for i, epoch in enumerate(epochs):
        color = cmap(0.85 * i / max(1, len(epochs) - 1))
        left.plot(layers, positive(layer_profile(run, epoch, "w")), "o-", color=color, linewidth=1.8, markersize=4,
                  label=f"epoch {epoch + 1}: |g_w|")
        left.plot(layers, positive(layer_profile(run, epoch, "delta")), "s--", color=color, linewidth=1.0,
                  markersize=3, alpha=0.8, label=f"epoch {epoch + 1}: |δ|")
    log_y(left)
    left.set_xlabel("layer (1 = next to the input, %d = output)" % run.n_layers)
    left.set_ylabel("median L2 norm over the epoch (log)")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title("Gradient flow: weight gradients (solid) and back-propagated\nsignal δ (dashed). "
                   "A slope down to the left is vanishing; flat is healthy.", fontsize=10)
    left.legend(fontsize=7, ncol=2, loc="best")
    left.grid(alpha=0.3, which="both")

    steps = run.metrics["step"]
    table = np.array([positive(run.metrics[f"w{layer}_before"]) for layer in layers])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_table = np.log10(table)
    finite = log_table[np.isfinite(log_table)]
    if finite.size:
        image = right.imshow(np.ma.masked_invalid(log_table), aspect="auto", origin="lower", cmap="magma",
                             interpolation="nearest", extent=(steps[0] - 0.5, steps[-1] + 0.5, 0.5, run.n_layers + 0.5),
                             vmin=np.percentile(finite, 1), vmax=np.percentile(finite, 99))
        bar = fig.colorbar(image, ax=right, pad=0.02)
        bar.set_label("log10 |g_w| before clipping", fontsize=9)
    right.set_xlabel("step")
    right.set_ylabel("layer")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_title("Weight-gradient norm per layer and step (linear step axis)", fontsize=10)
    mark_divergence(right, run)
    return finish_figure(fig, run)


def empty_figure(run: Run) -> Figure:
    """What a run with no recorded step shows: it was stopped or failed in its first epoch."""
    fig, ax = subplots(figsize=FIGSIZE)
    ax.axis("off")
    ax.text(0.5, 0.5, f"No training step recorded in {run.name} (status: {run.status}).\n"
            "The run was stopped, or failed, before its first epoch ended;\n"
            "steps are written once per epoch.", ha="center", va="center", fontsize=13)
    return finish_figure(fig, run)


RUN_FIGURES = {
    "norms.png": norms_figure,
    "ratio.png": ratio_figure,
    "loss.png": loss_figure,
    "signals.png": signals_figure,
    "flow.png": flow_figure,
}


def save_figure(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
    return path


def write_run_plots(run_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Draw every run figure (or those of `names`) from the folder's files into <run>/plots/."""
    run = read_run(run_dir)
    out = run.path / PLOTS_DIR
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder; move it away to draw the pictures")
    out.mkdir(exist_ok=True)
    return [save_figure(make(run) if run.steps else empty_figure(run), out / filename)
            for filename, make in RUN_FIGURES.items() if names is None or filename in names]
