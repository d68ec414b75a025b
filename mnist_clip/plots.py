"""Pictures of one run, as pure functions Run -> matplotlib Figure. No TensorFlow here."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, MaxNLocator  # noqa: E402

from mnist_clip.config import format_hidden  # noqa: E402
from mnist_clip.errors import InputError  # noqa: E402
from mnist_clip.runs import PLOTS_DIR, Run, read_run, write_atomic  # noqa: E402

DIVERGED_COLOR = "#d62728"
FIGSIZE = (10, 7)
DPI = 100
MAX_LEGEND_LAYERS = 4  # deeper nets get a colour bar for the layer instead of a legend entry per tensor


def layer_colors(n_layers: int) -> list:
    """One colour per layer along a sequential colour map: input side dark, output side light."""
    cmap = plt.get_cmap("viridis")
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
    """Centred moving average that ignores NaN (a window of only NaN gives NaN)."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return values.copy()
    window = max(1, min(window, len(values)))
    finite = np.isfinite(values)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


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
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, **options)


def mark_divergence(ax, run: Run) -> None:
    step = run.nonfinite_step
    if step is not None:
        ax.axvline(step, color=DIVERGED_COLOR, linestyle=":", linewidth=1.5, label=f"NaN/Inf at step {step}")


def add_epoch_axis(ax, run: Run) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    per_epoch = steps_per_epoch(run)
    top = ax.secondary_xaxis("top", functions=(lambda s: s / per_epoch, lambda e: e * per_epoch))
    top.set_xlabel("epoch", fontsize=9)
    top.tick_params(labelsize=8)


def finish_figure(fig: Figure, run: Run, epoch_axis_on=None) -> Figure:
    if epoch_axis_on is not None:
        add_epoch_axis(epoch_axis_on, run)
    fig.suptitle(run_title(run), fontsize=11)
    fig.tight_layout()
    return fig


def architecture_label(config: dict) -> str:
    """'784-256-128-10 relu' for the reference; the init is named when it is not the reference's."""
    hidden = tuple(config.get("hidden", (256, 128)))
    layers = f"784-{format_hidden(hidden).replace(',', '-')}-10" if hidden else "784-10 (linear)"
    init = config.get("init", "reference")
    return f"{layers} {config.get('activation', 'relu')}" + ("" if init == "reference" else f", {init} init")


def run_title(run: Run) -> str:
    cfg = run.config
    used = cfg.get("dataset_used", {})
    return (
        f"{run.name}: {run.clip_label}, lr {cfg.get('lr')}, x/{cfg.get('input_scale'):g}, "
        f"{architecture_label(cfg)}, {used.get('name', '?')} ({run.status})"
    )


def norms_figure(run: Run) -> Figure:
    """Per-tensor norms before (solid) and after (dashed) clipping; the global norm with the threshold."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=FIGSIZE, sharex=True, height_ratios=(3, 2))
    steps = run.metrics["step"]
    clipping = run.config.get("clip") not in (None, "none")
    colors = layer_colors(run.n_layers)
    labelled = run.n_layers <= MAX_LEGEND_LAYERS
    for layer, color in enumerate(colors, start=1):
        for kind, width, alpha in (("w", 1.0, 1.0), ("b", 0.7, 0.55)):
            name = f"{kind}{layer}"
            top.plot(steps, positive(run.metrics[f"{name}_before"]), color=color, linewidth=width, alpha=alpha,
                     label=f"{name} before" if labelled else None)
            if clipping:
                top.plot(steps, positive(run.metrics[f"{name}_after"]), color=color, linewidth=width, alpha=alpha,
                         linestyle="--", label=f"{name} after" if labelled else None)
    log_y(top)
    top.set_ylabel("gradient L2 norm")
    style = "before clipping (solid), after (dashed)" if clipping else "no clipping in this run"
    top.set_title(f"Per-tensor gradient norms: {style}; weights thick, biases thin", fontsize=10)
    mark_divergence(top, run)
    if labelled:
        legend_right(top, ncol=2)
    else:
        layer_colorbar(fig, top, run.n_layers)

    bottom.plot(steps, positive(run.metrics["global_norm_before"]), color="0.2", linewidth=1, label="global norm before")
    if clipping:
        bottom.plot(steps, positive(run.metrics["global_norm_after"]), color="tab:purple", linewidth=1, linestyle="--",
                    label="global norm after")
        threshold = run.config.get("clip_norm")
        bottom.axhline(threshold, color="tab:red", linewidth=1, alpha=0.7, label=f"clip threshold {threshold:g}")
    fired = run.metrics["clipped"] > 0
    if fired.any():
        bottom.vlines(steps[fired], 0, 0.05, transform=bottom.get_xaxis_transform(), color="tab:orange",
                      linewidth=0.8, label=f"clipping fired ({int(fired.sum())} of {run.steps} steps)")
    log_y(bottom)
    bottom.set_ylabel("global norm")
    bottom.set_xlabel("step")
    mark_divergence(bottom, run)
    legend_right(bottom)
    return finish_figure(fig, run, epoch_axis_on=top)


def ratio_layers(run: Run) -> list[int]:
    """The layers whose weight gradient ratio.png sets against the last layer's:
    the first, and the middle one when there is one (the reference: w1 and w2)."""
    last = run.n_layers
    if last == 1:
        return []
    middle = (last + 1) // 2 if last > 2 else None
    return [1] + ([middle] if middle not in (None, 1, last) else [])


def ratio_figure(run: Run) -> Figure:
    """|g_w1|/|g_wL| (and a middle layer's) before clipping, raw and smoothed."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    steps = run.metrics["step"]
    window = smoothing_window(run)
    last = f"w{run.n_layers}"
    per_tensor = run.config.get("clip") in ("norm", "value", "average_norm")
    colors = layer_colors(run.n_layers)
    for layer in ratio_layers(run):
        name = f"w{layer}"
        ratio = norm_ratio(run, name)
        color = colors[layer - 1]
        ax.plot(steps, positive(ratio), color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, log_moving_average(ratio, window), color=color, linewidth=2.2,
                label=f"|g_{name}| / |g_{last}| before clipping")
        if per_tensor:
            ax.plot(steps, log_moving_average(norm_ratio(run, name, when="after"), window), color=color,
                    linewidth=1.8, linestyle="--", label=f"|g_{name}| / |g_{last}| after {run.config['clip']} clipping")
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("ratio of gradient norms (log)")
    note = {
        "global_norm": "Global-norm clipping scales all tensors of a step alike: it leaves these ratios unchanged.",
        "none": "No clipping in this run.",
    }.get(run.config.get("clip"), "Dashed: the same ratios after per-tensor clipping.")
    if run.n_layers == 1:
        note = "A linear model has one layer: there is no ratio to show."
    ax.set_title("Weight-gradient norm of the first (and middle) layer relative to the last: raw per step (pale) and\n"
                 f"{window}-step moving geometric mean. {note}", fontsize=10)
    mark_divergence(ax, run)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, fontsize=9)
    return finish_figure(fig, run, epoch_axis_on=ax)


def loss_figure(run: Run) -> Figure:
    """Training loss per step (log) and test accuracy per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGSIZE, width_ratios=(3, 2))
    steps = run.metrics["step"]
    loss = run.metrics["loss"]
    left.plot(steps, positive(loss), color="0.6", linewidth=0.8, label="loss per step")
    left.plot(steps, np.exp(moving_average(np.log(positive(loss)), smoothing_window(run))), color="k",
              linewidth=1.8, label="moving geometric mean")
    if run.epochs["epoch"].size:
        last_steps = [max(steps[run.metrics["epoch"] == epoch], default=np.nan) for epoch in run.epochs["epoch"]]
        left.plot(last_steps, positive(run.epochs["test_loss"]), "o-",
                  color="tab:blue", markersize=3, label="test loss (after the epoch's last step)")
    log_y(left)
    left.set_xlabel("step")
    left.set_ylabel("MSE loss (log)")
    left.set_title("Loss", fontsize=10)
    mark_divergence(left, run)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    epochs = run.epochs["epoch"] + 1
    right.plot(epochs, 100 * run.epochs["test_accuracy"], "o-", color="tab:green", markersize=4)
    right.set_ylim(0, 100)
    right.set_xlim(0.5, max(len(epochs), 1) + 0.5)
    right.xaxis.set_major_locator(FixedLocator(epochs) if len(epochs) <= 12 else MaxNLocator(integer=True))
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("epoch")
    right.set_ylabel("test accuracy (%)")
    right.set_title("Test accuracy after each epoch", fontsize=10)
    right.grid(alpha=0.3)
    return finish_figure(fig, run)


def signals_figure(run: Run) -> Figure:
    """Back-propagated signal |dL/dz_l| per layer beside the weight-gradient norms, and inactive units."""
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2, 1.3))
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
    top.set_title(f"Back-propagated signal (solid) and weight gradients (dashed) per layer, {window}-step moving geometric mean", fontsize=10)
    if labelled:
        legend_right(top)
    else:
        layer_colorbar(fig, top, run.n_layers)
    last = run.n_layers
    middle.plot(steps, log_moving_average(signal_ratio(run), window), color=colors[0], linewidth=2,
                label=f"signal ratio |dL/dz1| / |dL/dz{last}|")
    middle.plot(steps, log_moving_average(norm_ratio(run, "w1"), window), color=colors[0], linewidth=1.2,
                linestyle="--", label=f"gradient ratio |g_w1| / |g_w{last}|")
    middle.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(middle)
    middle.set_ylabel("first / last layer")
    legend_right(middle)
    kind = "dead (zero for the whole batch)" if run.activation == "relu" else "saturated (derivative < 1% of its maximum for the whole batch)"
    for layer, column in enumerate(run.activity_columns, start=1):
        bottom.plot(steps, 100 * run.metrics[column], color=colors[layer - 1], linewidth=1,
                    label=f"h{layer}" if labelled else None)
    bottom.set_title(f"Hidden units {kind}" if run.activity_columns else "No hidden layer", fontsize=9)
    bottom.set_ylabel("units (%)")
    bottom.set_xlabel("step")
    bottom.set_ylim(bottom=0)
    if labelled and run.activity_columns:
        legend_right(bottom)
    for ax in (top, middle, bottom):
        mark_divergence(ax, run)
    return finish_figure(fig, run, epoch_axis_on=top)


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
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6), width_ratios=(1, 1.1))
    layers = np.arange(1, run.n_layers + 1)
    epochs = profile_epochs(run)
    cmap = plt.get_cmap("plasma")
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
    right.set_title("Weight-gradient norm per layer and step", fontsize=10)
    mark_divergence(right, run)
    return finish_figure(fig, run)


def empty_figure(run: Run) -> Figure:
    """What a run with no recorded step shows: it was stopped or failed in its first epoch."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
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
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def write_run_plots(run_dir: str | Path) -> list[Path]:
    """Draw every run figure from the folder's files into <run>/plots/."""
    run = read_run(run_dir)
    out = run.path / PLOTS_DIR
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder; move it away to draw the pictures")
    out.mkdir(exist_ok=True)
    return [save_figure(make(run) if run.steps else empty_figure(run), out / filename)
            for filename, make in RUN_FIGURES.items()]
