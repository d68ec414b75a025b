"""Series drawn from a run's columns: log-safe values, moving averages over steps, norm and
signal ratios, the steps of an epoch and the smoothing a run's length allows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mnist_clip.runs.reader import Run


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


def step_stretch(per_epoch: int) -> float:
    """k of the step axis log(1 + step / k): a quarter of an epoch. Steps well below k are
    spread almost evenly (the first steps, where norms are largest and runs blow up, get
    room), steps well above it logarithmically; the slope changes smoothly, with no kink."""
    return max(1.0, per_epoch / 4)


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
