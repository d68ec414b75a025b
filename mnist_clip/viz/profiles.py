"""Profiles across a net's layers at chosen epochs, or over a diverged run's last finite
steps, and the marks for values a log axis cannot show (0 and Inf)."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from mnist_clip.config import REFERENCE_HIDDEN
from mnist_clip.runs.reader import Run
from mnist_clip.viz.style import colormap, log_y


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
