"""The pictures over training steps that every net gets: the gradient norms before and
after clipping, the loss, and the updates; and the ratio panel each family fills with its own tensors."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

from mnist_clip.runs.reader import Run
from mnist_clip.training.methods import METHODS
from mnist_clip.viz.labels import compared_quantity
from mnist_clip.viz.series import Smoothing, norm_ratio, positive, run_smoothing, short_batches
from mnist_clip.viz.style import (
    FIGSIZE,
    MAX_LEGEND_LAYERS,
    MAX_MARKED_STEPS,
    epoch_axis,
    finish_figure,
    layer_colorbar,
    layer_colors,
    log_y,
    mark_divergence,
    note_figure,
    run_step_axis,
    short_batch_note,
    subplots,
)

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


def ratio_panel(run: Run, lines: list[tuple[str, str, str]], denominator: str, ylabel: str, title: str) -> Figure:
    """The ratio picture of any net: per (numerator, colour, label) |g_numerator| / |g_denominator|
    before clipping, raw (pale) and smoothed, dashed after per-tensor clipping; `title` ends in a note."""
    fig, ax = subplots(figsize=FIGSIZE)
    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    for numerator, color, label in lines:
        smoothed_lines(ax, steps, norm_ratio(run, numerator, denominator), smoothing, color, label)
        if METHODS[run.config.get("clip", "none")].per_tensor:
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
