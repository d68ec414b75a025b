"""Small run folders written by the tests themselves, through the product's RunWriter."""

from pathlib import Path

import numpy as np

from mnist_clip.config import PARAM_NAMES
from mnist_clip.nn import Net
from mnist_clip.runs.schema import metric_columns_for, step_value_columns
from mnist_clip.runs.writer import RunWriter


def write_run(path: Path, steps: int, steps_per_epoch: int = 10, clip: str = "global_norm",
              nonfinite_from: int | None = None, seed: int = 0, summary: bool = True, train_size: int | None = None,
              first_step_scale: float = 1.0) -> Path:
    """A run folder with smooth, decaying norms; rows from `nonfinite_from` on hold NaN/Inf.
    `first_step_scale` multiplies step 0's norms and loss (a large first step, as real runs have)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    columns = step_value_columns(Net.of({}), clip)
    t = np.arange(steps)
    values = np.zeros((steps, len(columns)))
    column = {name: i for i, name in enumerate(columns)}
    values[:, column["loss"]] = 1.0 / (1 + t) + 0.01 * rng.random(steps)
    values[:, column["accuracy"]] = np.minimum(0.95, 0.1 + t / steps)
    for k, name in enumerate(PARAM_NAMES):
        before = (k + 1) * 5.0 * np.exp(-t / (steps / 3)) * (1 + 0.1 * rng.random(steps))
        values[:, column[f"{name}_before"]] = before
        values[:, column[f"{name}_after"]] = before * 0.5
        values[:, column[f"{name}_clipped"]] = t < steps // 4
        if clip == "value":
            values[:, column[f"{name}_max_abs"]] = before / 10
    values[0, [column[f"{n}_before"] for n in PARAM_NAMES]] *= first_step_scale
    values[0, column["loss"]] *= first_step_scale
    values[:, column["global_norm_before"]] = np.sqrt((values[:, [column[f"{n}_before"] for n in PARAM_NAMES]] ** 2).sum(1))
    values[:, column["global_norm_after"]] = values[:, column["global_norm_before"]] / 2
    values[:, column["clipped"]] = t < steps // 4
    for layer in (1, 2, 3):
        values[:, column[f"delta{layer}"]] = 0.1 * layer * np.exp(-t / steps)
    values[:, column["dead_h1"]] = 0.01
    values[:, column["dead_h2"]] = 0.05
    if nonfinite_from is not None:
        values[nonfinite_from:, column["loss"]] = np.nan
        values[nonfinite_from:, column["global_norm_before"]] = np.inf
        values = values[: nonfinite_from + 1]
    config = {"clip": clip, "clip_norm": 15.0 if clip != "value" else 0.3, "lr": 0.01, "input_scale": 50.0,
              "batch_size": 128, "dataset_used": {"name": "test", "train_size": train_size or 128 * steps_per_epoch}}
    writer = RunWriter(path, metric_columns_for(config))
    writer.write_config(config)
    for epoch, first in enumerate(range(0, len(values), steps_per_epoch)):
        chunk = values[first : first + steps_per_epoch]
        writer.append_steps(first, epoch, chunk.astype(np.float32))
        writer.append_epoch((epoch, len(chunk), float(np.mean(chunk[:, 0])), 0.5 / (epoch + 1), 0.1 + 0.02 * epoch, 0, 0.1))
    if summary:
        writer.write_summary({"status": "diverged" if nonfinite_from is not None else "completed"})
    writer.close()
    return path
