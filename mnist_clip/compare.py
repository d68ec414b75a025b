"""Several runs -> one table (compare.csv) and one figure of small multiples (compare.png)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_clip.plots import (
    DIVERGED_COLOR,
    opened_scale,
    step_axis,
    steps_per_epoch,
    architecture_label,
    layer_profile,
    log_moving_average,
    log_y,
    moving_average,
    norm_ratio,
    plt,
    positive,
    save_figure,
    signal_ratio,
    smoothing_window,
)
from mnist_clip.runs import Run, format_value, read_run, write_atomic

TABLE_COLUMNS = (
    "name",
    "clip",
    "architecture",
    "status",
    "steps",
    "steps_clipped",
    "final_loss",
    "test_accuracy",
    "median_w1_wL_first_epoch",
    "median_w1_wL_last_epoch",
    "median_delta1_deltaL_first_epoch",
    "median_delta1_deltaL_last_epoch",
)


def final_loss(run: Run) -> float:
    """Mean training loss over the last epoch present in metrics.csv."""
    if not run.steps:
        return float("nan")
    last = run.metrics["epoch"] == run.metrics["epoch"][-1]
    return float(np.mean(run.metrics["loss"][last]))


def median_ratio_in_epoch(run: Run, which: str, signal: bool = False) -> float:
    """Median over the first or last epoch's steps of |g_w1| / |g_wL| (before clipping, wL the
    output layer) or, with `signal`, of the back-propagated signal's |dL/dz1| / |dL/dzL|."""
    if not run.steps:
        return float("nan")
    epoch = run.metrics["epoch"][0] if which == "first" else run.metrics["epoch"][-1]
    ratio = (signal_ratio(run) if signal else norm_ratio(run, "w1"))[run.metrics["epoch"] == epoch]
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if ratio.size else float("nan")


def table_row(run: Run) -> dict:
    accuracy = run.epochs["test_accuracy"]
    return {
        "name": run.name,
        "clip": run.clip_label,
        "architecture": architecture_label(run.config),
        "status": run.status,
        "steps": run.steps,
        "steps_clipped": int(run.metrics["clipped"].sum()),
        "final_loss": final_loss(run),
        "test_accuracy": float(accuracy[-1]) if accuracy.size else float("nan"),
        "median_w1_wL_first_epoch": median_ratio_in_epoch(run, "first"),
        "median_w1_wL_last_epoch": median_ratio_in_epoch(run, "last"),
        "median_delta1_deltaL_first_epoch": median_ratio_in_epoch(run, "first", signal=True),
        "median_delta1_deltaL_last_epoch": median_ratio_in_epoch(run, "last", signal=True),
    }


def table_text(rows: list[dict]) -> str:
    """The table as aligned text for the terminal."""
    def cell(column: str, value) -> str:
        if column == "test_accuracy":
            return f"{100 * value:.1f}%" if np.isfinite(value) else "-"
        if isinstance(value, float):
            return f"{value:.4g}" if np.isfinite(value) else str(value)
        return str(value)

    cells = [[cell(c, row[c]) for c in TABLE_COLUMNS] for row in rows]
    headers = ["run", "clip", "net", "status", "steps", "clipped", "final loss", "test acc", "w1/wL first ep",
               "w1/wL last ep", "δ1/δL first ep", "δ1/δL last ep"]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def table_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for row in rows:
        writer.writerow([format_value(c, row[c]) if isinstance(row[c], float) else row[c] for c in TABLE_COLUMNS])
    return buffer.getvalue()


def _smoothed(run: Run, values: np.ndarray) -> np.ndarray:
    return log_moving_average(values, smoothing_window(run))


def run_colors(count: int) -> list:
    """Distinct colours for up to 20 runs (tab10, then tab20)."""
    palette = plt.get_cmap("tab10" if count <= 10 else "tab20").colors
    return [palette[i % len(palette)] for i in range(count)]


def limit_to_stable_runs(ax, values_by_run: list[tuple[Run, np.ndarray]]) -> None:
    """Fit the y axis (log) to the runs that did not diverge, so that one run that climbs
    to 1e30 before its NaN does not flatten the others; say so when a run leaves the scale."""
    stable = [positive(v) for run, v in values_by_run if run.nonfinite_step is None]
    stable = np.concatenate([v[np.isfinite(v)] for v in stable]) if stable else np.zeros(0)
    if not stable.size:
        return
    low, high = stable.min(), stable.max()
    top = high * 3
    beyond = []
    for run, values in values_by_run:
        finite = positive(values)
        finite = finite[np.isfinite(finite)]
        low = min(low, finite.min()) if finite.size else low
        if finite.size and finite.max() > top:
            beyond.append(f"{run.name} reaches {finite.max():.3g}")
    ax.set_ylim(low / 1.5, top)
    if beyond:
        ax.text(0.99, 0.03, "off the scale: " + "; ".join(beyond), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color=DIVERGED_COLOR)


def compare_figure(runs: list[Run]) -> Figure:
    """Runs overlaid on shared step axes (the first epoch opened up): loss, global norm with the
    thresholds of the global-norm methods, first/last gradient ratio, signal ratio, test accuracy
    and inactive units; and each run's end-of-training profile per layer. Thin lines are the raw
    values, thick ones their moving geometric mean; a run that hit NaN/Inf ends at a red dotted line."""
    fig, axes = plt.subplots(4, 2, figsize=(12, 13))
    (loss_ax, acc_ax), (norm_ax, ratio_ax), (signal_ax, dead_ax), (profile_ax, depth_ax) = axes
    colors = run_colors(len(runs))
    thresholds: dict[float, list[str]] = {}
    plotted: dict = {loss_ax: [], norm_ax: [], ratio_ax: [], signal_ax: []}
    for i, run in enumerate(runs):
        color = colors[i]
        style = ("-", "--")[i % 2]  # runs that coincide stay visible
        label = f"{run.name} ({run.clip_label}, {run.status})"
        steps = run.metrics["step"]
        series = (
            (loss_ax, run.metrics["loss"]),
            (norm_ax, run.metrics["global_norm_before"]),
            (ratio_ax, norm_ratio(run, "w1")),
            (signal_ax, signal_ratio(run)),
        )
        for ax, values in series:
            ax.plot(steps, positive(values), color=color, linewidth=0.6, alpha=0.35)
            ax.plot(steps, _smoothed(run, values), color=color, linewidth=1.6, linestyle=style, label=label)
            plotted[ax].append((run, values))
        if run.activity_columns:  # the last hidden layer, next to the output
            dead_ax.plot(steps, 100 * moving_average(run.metrics[run.activity_columns[-1]], smoothing_window(run)),
                         color=color, linewidth=1.6, linestyle=style, label=label)
        epochs = run.epochs["epoch"] + 1
        acc_ax.plot(epochs, 100 * run.epochs["test_accuracy"], marker="o", linestyle=style, color=color, markersize=3,
                    label=label)
        if run.steps:
            last_epoch = int(run.metrics["epoch"][-1])
            layers = np.arange(1, run.n_layers + 1)
            profile_ax.plot(layers, positive(layer_profile(run, last_epoch, "w")), "o", linestyle=style, color=color,
                            markersize=4, label=label)
            depth_ax.plot(layers, positive(layer_profile(run, last_epoch, "delta")), "s", linestyle=style,
                          color=color, markersize=3, label=label)
        step = run.nonfinite_step
        if step is not None:
            for ax in (loss_ax, norm_ax, ratio_ax, signal_ax):
                ax.axvline(step, color=DIVERGED_COLOR, linestyle=":", linewidth=1)
            loss_ax.plot([], [], color=DIVERGED_COLOR, linestyle=":", label=f"{run.name}: NaN/Inf at step {step}")
        clip = run.config.get("clip")
        if clip == "global_norm":
            thresholds.setdefault(float(run.config.get("clip_norm")), []).append(run.name)
        elif clip == "autoclip":
            norm_ax.plot(steps, positive(run.metrics["clip_threshold"]), color=color, linestyle=":", linewidth=1.2,
                         label=f"AutoClip threshold of {run.name}")
    for threshold, names in sorted(thresholds.items()):
        norm_ax.axhline(threshold, color="0.4", linewidth=0.8, linestyle="--",
                        label=f"threshold {threshold:g} ({', '.join(names)})")
    if norm_ax.get_legend_handles_labels()[0]:
        threshold_handles = [(h, l) for h, l in zip(*norm_ax.get_legend_handles_labels()) if "hreshold" in l]
        if threshold_handles:
            norm_ax.legend(*zip(*threshold_handles), fontsize=7, loc="upper right")
    titles = {
        loss_ax: ("training loss (log)", "MSE loss", "step"),
        norm_ax: ("global gradient norm before clipping, with the global-norm thresholds", "global norm", "step"),
        ratio_ax: ("|g_w1| / |g_wL| before clipping (wL: the output layer)", "ratio", "step"),
        signal_ax: ("back-propagated signal |dL/dz1| / |dL/dzL|", "ratio", "step"),
        profile_ax: ("weight-gradient norm per layer, median over the last epoch", "|g_w| (log)", "layer"),
        depth_ax: ("back-propagated signal |δ| per layer, median over the last epoch", "|δ| (log)", "layer"),
    }
    for ax, (title, ylabel, xlabel) in titles.items():
        log_y(ax)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
    for ax in (ratio_ax, signal_ax):
        ax.axhline(1.0, color="0.6", linewidth=0.8)
    with_steps = [run for run in runs if run.steps]
    n_steps = max((run.steps for run in with_steps), default=1)
    per_epoch = steps_per_epoch(with_steps[0]) if with_steps else 1
    # A run that ended within the first epoch gets the opened part of the axis to itself.
    early = [run.steps for run in with_steps if run.steps < per_epoch]
    opened = min(per_epoch, max(8, 2 * max(early))) if early else per_epoch
    for ax in (loss_ax, norm_ax, ratio_ax, signal_ax, dead_ax):
        step_axis(ax, n_steps, per_epoch, label=False, opened=opened)
        ax.set_xlabel(f"step (steps 0-{opened} stretched)" if opened_scale(n_steps, opened) else "step", fontsize=9)
    for ax, values_by_run in plotted.items():
        limit_to_stable_runs(ax, values_by_run)
    acc_ax.set_title("test accuracy after each epoch", fontsize=10)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_ylim(0, 100)
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    dead_ax.set_title("units of the last hidden layer dead (ReLU) or saturated, moving average", fontsize=10)
    dead_ax.set_ylabel("inactive units (%)")
    dead_ax.set_ylim(bottom=0)
    for ax in (profile_ax, depth_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = loss_ax.get_legend_handles_labels()
    legend_rows = -(-len(labels) // 2)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9)
    fig.suptitle("Runs compared: thick lines are moving geometric means, thin lines the raw values per step", fontsize=12)
    fig.tight_layout(rect=(0, 0.01 + 0.017 * legend_rows, 1, 1))
    return fig


def compare_runs(run_dirs: list, out_dir: Path) -> tuple[list[dict], list[Path]]:
    """Read the runs, write compare.csv and compare.png into out_dir; return the table rows and files."""
    runs = [read_run(path) for path in run_dirs]
    rows = [table_row(run) for run in runs]
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "compare.csv"
    write_atomic(csv_path, table_csv(rows).encode())
    png_path = save_figure(compare_figure(runs), out_dir / "compare.png")
    return rows, [png_path, csv_path]
