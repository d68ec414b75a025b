"""The pictures of a Keras model's run (GradientProbe): the run pictures that apply to any model,
and the ratio and flow pictures by the model's own layers. No TensorFlow here."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mnist_clip.probe_schema import LEFT_OUT
from mnist_clip.runs.reader import Run
from mnist_clip.viz.profiles import profile_epochs
from mnist_clip.viz.steps import loss_figure, norms_figure, ratio_panel, updates_figure
from mnist_clip.viz.style import colormap, finish_figure, layer_colors, log_y, mark_divergence, run_step_axis, subplots


def short_layer(path: str) -> str:
    """'sequential/conv2d/kernel' -> 'conv2d': the layer's own name, for axis labels."""
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else path


def model_ratio_figure(run: Run) -> Figure:
    """|g| of the first layer's weight (and a middle one's) over the last layer's, before clipping,
    raw and smoothed; dashed after per-tensor clipping."""
    weights = run.net.layer_weights
    colors = layer_colors(len(weights))
    shown = [0] + ([len(weights) // 2] if len(weights) > 2 else [])
    last = weights[-1] if weights else ""
    lines = [(weights[index], colors[index], f"|g {short_layer(weights[index])}| / |g {short_layer(last)}| before "
              "clipping") for index in (shown if len(weights) > 1 else [])]
    note = {"global_norm": "Global-norm clipping scales all tensors of a step alike: it leaves these ratios unchanged.",
            "none": "No clipping in this run."}.get(run.config.get("clip"), "")
    if len(weights) < 2:
        note = "The model has one layer with a weight matrix: there is no ratio to show."
    fig = ratio_panel(run, lines, last, "ratio of weight-gradient norms (log)",
                      "Weight-gradient norm of the first (and middle) layer over the last, in the model's "
                      f"order: raw per step (pale) and {{smoothing}}. {note}")
    return finish_figure(fig, run)


def weight_profile(run: Run, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer with a weight matrix, the median over the epoch's finite steps of |g_w| before
    clipping, and of |g_w| / sqrt(entries) (the root mean square gradient per entry)."""
    rows = run.metrics["epoch"] == epoch
    norms, rms = [], []
    for name in run.net.layer_weights:
        values = run.metrics[f"{name}_before"][rows]
        values = values[np.isfinite(values)]
        median = float(np.median(values)) if values.size else np.nan
        norms.append(median)
        rms.append(median / np.sqrt(np.prod(run.net.tensor(name).shape)))
    return np.array(norms), np.array(rms)


def model_flow_figure(run: Run) -> Figure:
    """Weight-gradient norms by layer, input side first: a profile per chosen epoch, and a layer x
    step map."""
    from mnist_clip.viz.series import positive

    weights = run.net.layer_weights
    fig, (left, right) = subplots(1, 2, figsize=(12, 6), width_ratios=(1, 1.1))
    layers = np.arange(1, len(weights) + 1)
    epochs = profile_epochs(run)
    cmap = colormap("plasma")
    handles = []
    for i, epoch in enumerate(epochs):
        color = cmap(0.85 * i / max(1, len(epochs) - 1))
        norms, rms = weight_profile(run, epoch)
        left.plot(layers, positive(norms), "o-", color=color, linewidth=1.8, markersize=4)
        left.plot(layers, positive(rms), "s--", color=color, linewidth=1.0, markersize=3, alpha=0.8)
        handles.append(Line2D([], [], color=color, linewidth=3, label=f"epoch {epoch + 1}"))
    handles += [Line2D([], [], color="0.3", marker="o", linewidth=1.8, markersize=4, label="|g_w|: L2 norm"),
                Line2D([], [], color="0.3", marker="s", linestyle="--", linewidth=1.0, markersize=3,
                       label="|g_w| / sqrt(entries): per entry")]
    log_y(left)
    left.set_xticks(layers, [short_layer(name) for name in weights], rotation=30, ha="right", fontsize=8)
    left.set_xlabel("layer, in the model's order (input side first)", fontsize=9)
    left.set_ylabel("median over the epoch (log)")
    left.set_title("Gradient flow: weight-gradient norm per layer (solid) and per entry (dashed).\n"
                   "A slope down to the left is vanishing; flat is healthy.", fontsize=10)
    left.legend(handles=handles, fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    left.grid(alpha=0.3, which="both")
    steps = run.metrics["step"]
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.log10(np.array([positive(run.metrics[f"{name}_before"]) for name in weights]))
    finite = table[np.isfinite(table)]
    if finite.size:
        image = right.pcolormesh(np.append(steps, steps[-1] + 1) - 0.5, np.arange(0.5, len(weights) + 1),
                                 np.ma.masked_invalid(table), cmap="magma", vmin=finite.min(), vmax=finite.max(),
                                 shading="flat", rasterized=True)
        bar = fig.colorbar(image, ax=right, pad=0.02)
        bar.set_label("log10 |g_w| before clipping", fontsize=9)
        bar.ax.tick_params(labelsize=8)
    right.set_yticks(layers, [short_layer(name) for name in weights], fontsize=8)
    right.set_ylim(0.5, len(weights) + 0.5)
    right.set_title("Weight-gradient norm per layer and step", fontsize=10)
    mark_divergence(right, run)
    run_step_axis(right, run)
    note = ("A norm sums over a tensor's entries, and layers differ in size: the dashed per-entry line compares "
            f"them on one footing. {LEFT_OUT}.")
    return finish_figure(fig, run, note)


def model_loss_figure(run: Run) -> Figure:
    """loss.png, with the model's own loss named on its axis."""
    fig = loss_figure(run)
    fig.axes[0].set_ylabel(f"{run.config.get('loss', 'loss')} (log)")
    return fig


PROBE_FIGURES = {
    "norms.png": norms_figure,
    "ratio.png": model_ratio_figure,
    "loss.png": model_loss_figure,
    "flow.png": model_flow_figure,
    "updates.png": updates_figure,
}
