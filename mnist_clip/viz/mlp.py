"""The layered net's pictures: the first layer's gradient against the last one's, the
back-propagated signal per layer, and the gradient flow across the layers."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_clip.runs.reader import Run
from mnist_clip.viz.profiles import (
    drawn_epochs,
    edge_handles,
    edge_marks,
    layer_profile,
    profile_axis,
    runup_colors,
    runup_rows,
    size_note,
    step_profile,
)
from mnist_clip.viz.series import norm_ratio, positive, run_smoothing, short_batches, signal_ratio
from mnist_clip.viz.steps import loss_figure, norms_figure, ratio_panel, smoothed_lines, updates_figure
from mnist_clip.viz.style import (
    MAX_LEGEND_LAYERS,
    colormap,
    finish_figure,
    layer_colorbar,
    layer_colors,
    legend_below,
    log_y,
    mark_divergence,
    run_step_axis,
    short_batch_note,
    subplots,
)


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


RUN_FIGURES = {  # the layered net's pictures; viz.registry picks a run's family
    "norms.png": norms_figure,
    "ratio.png": ratio_figure,
    "loss.png": loss_figure,
    "signals.png": signals_figure,
    "flow.png": flow_figure,
    "updates.png": updates_figure,
}
