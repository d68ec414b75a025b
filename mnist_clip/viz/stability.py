"""The stability map: a sweep's metric over its grid, one heatmap panel per value of its third and fourth keys."""

from __future__ import annotations

import numpy as np

from mnist_clip.plans.grid import MAX_GRID_KEYS, format_setting
from mnist_clip.stats import spread


def stability_figure(rows: list[dict], grid: list[tuple[str, list]], metric: str = "test_accuracy"):
    """Heatmaps of `metric` over the first two grid keys, one panel per value of the
    third (columns) and fourth (rows) key; diverged cells grey with their step. With
    several seeds a cell shows their mean, its spread and how many diverged; it is grey
    only when every seed diverged."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    from mnist_clip.viz.style import PlainLogFormatter, subplots

    keys = [key for key, _ in grid]
    labels = [[format_setting(v) for v in values] for _, values in grid]
    while len(labels) < MAX_GRID_KEYS:
        keys.append("")
        labels.append([""])
    x_key, y_key, col_key, row_key = keys
    x_vals, y_vals, col_vals, row_vals = labels
    points: dict[tuple, list[dict]] = {}
    for row in rows:
        if not row.get("statistic"):  # the seeds' own rows, not their statistics
            points.setdefault(tuple(row.get(k, "") for k in keys), []).append(row)
    # Constrained layout keeps the title, labels and colour bar inside the picture at any
    # grid size; the minimum size leaves a 1x1 map room for its title.
    seeded = any(len(point) > 1 for point in points.values())
    width = max(6.5, 1.0 + (1.35 if seeded else 1.15) * len(x_vals) * len(col_vals) + 1.2)
    height = max(3.8, 0.9 + (1.0 if seeded else 0.75) * len(y_vals) * len(row_vals) + 0.8)
    fig, axes = subplots(len(row_vals), len(col_vals), figsize=(width, height), squeeze=False, layout="constrained")
    finite = [row[metric] for row in rows if row.get("status") == "completed" and np.isfinite(row.get(metric, np.nan))]
    if metric == "test_accuracy":
        cmap, norm, fmt = "viridis", Normalize(0, 1), (lambda v: f"{100 * v:.0f}%")
        fmt_spread = lambda v: f"±{100 * v:.1f}"  # noqa: E731
    else:
        low, high = (min(finite), max(finite)) if finite else (1e-3, 1)
        cmap, norm, fmt = "viridis_r", LogNorm(low, max(high, low * 1.01)), (lambda v: f"{v:.3g}")
        fmt_spread = lambda v: f"±{v:.2g}"  # noqa: E731
    image = None
    for r, row_val in enumerate(row_vals):
        for c, col_val in enumerate(col_vals):
            ax = axes[r][c]
            grid_values = np.full((len(y_vals), len(x_vals)), np.nan)
            for i, y_val in enumerate(y_vals):
                for j, x_val in enumerate(x_vals):
                    seeds = points.get((x_val, y_val, col_val, row_val), [])
                    completed = [row for row in seeds if row.get("status") == "completed"]
                    diverged = [row for row in seeds if row.get("status") == "diverged"]
                    if seeds and len(diverged) == len(seeds):  # diverged for every seed
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.75", hatch="///", edgecolor="0.45"))
                        where = sorted({row["first_nonfinite_step"] for row in diverged})
                        steps = f"step {where[0]}" if len(where) == 1 else f"steps {where[0]}-{where[-1]}"
                        text = f"diverged\n{steps}" if len(seeds) == 1 else f"{len(seeds)}/{len(seeds)} diverged\n{steps}"
                        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black")
                        continue
                    if not completed:
                        status = seeds[0].get("status", "not run") if seeds else "not run"
                        ax.text(j, i, status, ha="center", va="center", fontsize=8, color="0.3")
                        continue
                    values = spread([row[metric] for row in completed])
                    grid_values[i, j] = values["mean"]
                    shade = float(norm(values["mean"]))
                    bright = shade > 0.6 if cmap == "viridis" else shade < 0.4  # the yellow end
                    color = "black" if bright else "white"
                    text = fmt(values["mean"])
                    if len(seeds) > 1:
                        text += f" {fmt_spread(values['std'])}" if values["n"] > 1 else ""
                        text += f"\n{len(diverged)}/{len(seeds)} diverged"
                        if len(completed) + len(diverged) < len(seeds):
                            text += f"\n{len(completed) + len(diverged)} of {len(seeds)} run"
                    if diverged:  # some seeds diverged: a light hatch over the colour
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="..", edgecolor="0.85",
                                               linewidth=0))
                    ax.text(j, i, text, ha="center", va="center", fontsize=8 if len(seeds) == 1 else 7, color=color)
            image = ax.imshow(np.ma.masked_invalid(grid_values), cmap=cmap, norm=norm, origin="lower", aspect="auto")
            ax.set_xticks(range(len(x_vals)), x_vals)
            ax.set_yticks(range(len(y_vals)), y_vals)
            ax.set_xlim(-0.5, len(x_vals) - 0.5)
            ax.set_ylim(-0.5, len(y_vals) - 0.5)
            ax.set_xlabel(x_key)
            ax.set_ylabel(y_key if c == 0 else "")
            if not y_key:
                ax.set_yticks([])
            title = ", ".join(f"{k}={v}" for k, v in ((col_key, col_val), (row_key, row_val)) if k)
            ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=axes, label=metric.replace("_", " ") + (" (%)" if metric == "test_accuracy" else ""),
                       shrink=0.85)
    if metric == "test_accuracy":  # in % like the cells
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:.0f}"))
    if metric == "final_loss":
        bar.ax.yaxis.set_major_formatter(PlainLogFormatter())
        bar.ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if seeded:
        title = (f"Stability map: mean {metric.replace('_', ' ')} over the seeds (± their standard deviation)\n"
                 "grey: NaN/Inf for every seed; dotted: for some seeds")
    else:
        title = f"Stability map: {metric.replace('_', ' ')} per cell\n(grey, hatched: NaN/Inf at the step shown)"
    fig.suptitle(title, fontsize=11)
    return fig
