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

from mnist_clip.config import PARAM_NAMES  # noqa: E402
from mnist_clip.runs import PLOTS_DIR, Run, read_run, write_atomic  # noqa: E402

# One colour per tensor in every figure: a dark/light pair per layer.
_TAB20 = plt.get_cmap("tab20").colors
TENSOR_COLORS = {name: _TAB20[i] for i, name in enumerate(PARAM_NAMES)}
LAYER_COLORS = {1: TENSOR_COLORS["w1"], 2: TENSOR_COLORS["w2"], 3: TENSOR_COLORS["w3"]}
DIVERGED_COLOR = "#d62728"
FIGSIZE = (10, 7)
DPI = 100


def positive(values: np.ndarray) -> np.ndarray:
    """For log axes: NaN, Inf and values <= 0 become gaps."""
    values = np.asarray(values, dtype=float).copy()
    values[~np.isfinite(values) | (values <= 0)] = np.nan
    return values


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaN (a window of only NaN gives NaN)."""
    values = np.asarray(values, dtype=float)
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


def norm_ratio(run: Run, numerator: str, denominator: str = "w3", when: str = "before") -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return run.metrics[f"{numerator}_{when}"] / run.metrics[f"{denominator}_{when}"]


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


def run_title(run: Run) -> str:
    cfg = run.config
    used = cfg.get("dataset_used", {})
    return (
        f"{run.name}: {run.clip_label}, lr {cfg.get('lr')}, x/{cfg.get('input_scale'):g}, "
        f"{used.get('name', '?')} ({run.status})"
    )


def norms_figure(run: Run) -> Figure:
    """Per-tensor norms before (solid) and after (dashed) clipping; the global norm with the threshold."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=FIGSIZE, sharex=True, height_ratios=(3, 2))
    steps = run.metrics["step"]
    for name in PARAM_NAMES:
        color = TENSOR_COLORS[name]
        top.plot(steps, positive(run.metrics[f"{name}_before"]), color=color, linewidth=1, label=f"{name} before")
        top.plot(steps, positive(run.metrics[f"{name}_after"]), color=color, linewidth=1, linestyle="--", label=f"{name} after")
    log_y(top)
    top.set_ylabel("gradient L2 norm")
    top.set_title("Per-tensor gradient norms: before clipping (solid), after (dashed)", fontsize=10)
    mark_divergence(top, run)
    legend_right(top, ncol=2)

    bottom.plot(steps, positive(run.metrics["global_norm_before"]), color="0.2", linewidth=1, label="global norm before")
    bottom.plot(steps, positive(run.metrics["global_norm_after"]), color="tab:purple", linewidth=1, linestyle="--", label="global norm after")
    if run.config.get("clip") not in (None, "none"):
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


def ratio_figure(run: Run) -> Figure:
    """|g_w1|/|g_w3| and |g_w2|/|g_w3| before clipping, raw and smoothed."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    steps = run.metrics["step"]
    window = smoothing_window(run)
    per_tensor = run.config.get("clip") in ("norm", "value", "average_norm")
    for name in ("w1", "w2"):
        ratio = norm_ratio(run, name)
        color = TENSOR_COLORS[name]
        ax.plot(steps, positive(ratio), color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, log_moving_average(ratio, window), color=color, linewidth=2.2,
                label=f"|g_{name}| / |g_w3| before clipping")
        if per_tensor:
            ax.plot(steps, log_moving_average(norm_ratio(run, name, when="after"), window), color=color,
                    linewidth=1.8, linestyle="--", label=f"|g_{name}| / |g_w3| after {run.config['clip']} clipping")
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("ratio of gradient norms (log)")
    note = {
        "global_norm": "Global-norm clipping scales all tensors of a step alike: it leaves these ratios unchanged.",
        "none": "No clipping in this run.",
    }.get(run.config.get("clip"), "Dashed: the same ratios after per-tensor clipping.")
    ax.set_title("Gradient norm of the first and middle layer relative to the last: raw per step (pale) and\n"
                 f"{window}-step moving geometric mean. {note}", fontsize=10)
    mark_divergence(ax, run)
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
    """Back-propagated signal |dL/dz_l| per layer beside the weight-gradient norms, and dead ReLUs."""
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2, 1.3))
    steps = run.metrics["step"]
    window = smoothing_window(run)
    for layer in (1, 2, 3):
        color = LAYER_COLORS[layer]
        top.plot(steps, log_moving_average(run.metrics[f"delta{layer}"], window), color=color, linewidth=2,
                 label=f"signal |dL/dz{layer}|")
        top.plot(steps, log_moving_average(run.metrics[f"w{layer}_before"], window), color=color, linewidth=1.2,
                 linestyle="--", label=f"weight gradient |g_w{layer}|")
    log_y(top)
    top.set_ylabel("L2 norm (log)")
    top.set_title(f"Back-propagated signal (solid) and weight gradients (dashed) per layer, {window}-step moving geometric mean", fontsize=10)
    legend_right(top)
    with np.errstate(invalid="ignore", divide="ignore"):
        signal_ratio = run.metrics["delta1"] / run.metrics["delta3"]
    middle.plot(steps, log_moving_average(signal_ratio, window), color=LAYER_COLORS[1], linewidth=2,
                label="signal ratio |dL/dz1| / |dL/dz3|")
    middle.plot(steps, log_moving_average(norm_ratio(run, "w1"), window), color=LAYER_COLORS[1], linewidth=1.2,
                linestyle="--", label="gradient ratio |g_w1| / |g_w3|")
    middle.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(middle)
    middle.set_ylabel("first / last layer")
    legend_right(middle)
    for name, color in (("dead_h1", LAYER_COLORS[1]), ("dead_h2", LAYER_COLORS[2])):
        bottom.plot(steps, 100 * run.metrics[name], color=color, linewidth=1, label=f"{name[-2:]}: units dead for the whole batch")
    bottom.set_ylabel("dead ReLUs (%)")
    bottom.set_xlabel("step")
    bottom.set_ylim(bottom=0)
    legend_right(bottom)
    for ax in (top, middle, bottom):
        mark_divergence(ax, run)
    return finish_figure(fig, run, epoch_axis_on=top)


RUN_FIGURES = {
    "norms.png": norms_figure,
    "ratio.png": ratio_figure,
    "loss.png": loss_figure,
    "signals.png": signals_figure,
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
    out.mkdir(exist_ok=True)
    return [save_figure(make(run), out / filename) for filename, make in RUN_FIGURES.items()]
