"""A run folder read back as a frozen Run value. No TensorFlow here: plotting and comparing
read runs without it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_clip.errors import InputError
from mnist_clip.nn import Net
from mnist_clip.runs.folder import CONFIG_FILE, EPOCHS_FILE, METRICS_FILE, SUMMARY_FILE, describe_error
from mnist_clip.runs.schema import activity_column_prefix, earlier_headers, epoch_columns_for, metric_columns_for
from mnist_clip.training.methods import clip_label
from mnist_clip.validation import HAND_CHANGED, read_run_config, read_summary


def nonfinite_steps(loss: np.ndarray, global_norm_before: np.ndarray) -> np.ndarray:
    """Which steps went non-finite: a NaN/Inf loss, or a NaN/Inf among the gradients
    (which makes their global norm NaN/Inf)."""
    return ~(np.isfinite(loss) & np.isfinite(global_norm_before))


@dataclass(frozen=True)
class Run:
    """A run folder read back: the contract's files as Python values."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, np.ndarray]
    epochs: dict[str, np.ndarray]
    summary: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def steps(self) -> int:
        return len(self.metrics["step"])

    @property
    def status(self) -> str:
        return self.summary["status"] if self.summary else "unfinished"

    @property
    def tensors(self) -> tuple[str, ...]:
        """w1 b1 ... wL bL, from metrics.csv's columns."""
        return tuple(c[: -len("_before")] for c in self.metrics if c.endswith("_before") and c != "global_norm_before")

    @property
    def net(self) -> Net:
        """The net the run trained, from its config.json (a Keras model's, for a probe's run)."""
        from mnist_clip.probe_schema import ModelNet, is_probe_config

        return ModelNet.of_config(self.config) if is_probe_config(self.config) else Net.of(self.config)

    @property
    def n_layers(self) -> int:
        return len(self.net.layers)

    @property
    def activation(self) -> str:
        return self.config.get("activation", "relu")

    @property
    def activity_columns(self) -> tuple[str, ...]:
        prefix = activity_column_prefix(self.activation)
        return tuple(f"{prefix}_h{layer.index}" for layer in self.net.hidden_layers)

    @property
    def clip_label(self) -> str:
        return clip_label(self.config)

    @property
    def nonfinite_step(self) -> int | None:
        """The first step whose loss or global norm is NaN or Inf, or (as the summary records it)
        whose update would have written a NaN/Inf, from finite gradients."""
        if self.summary and self.summary.get("nonfinite_update"):
            return int(self.summary["first_nonfinite_step"])
        bad = nonfinite_steps(self.metrics["loss"], self.metrics["global_norm_before"])
        return int(self.metrics["step"][np.argmax(bad)]) if bad.any() else None


def read_csv(path: Path, columns: tuple[str, ...] | None = None, earlier: tuple[str, ...] | None = None,
             whole: tuple[str, ...] = ("step", "epoch", "steps")) -> dict[str, np.ndarray]:
    """A numeric CSV as {column: float array}. A last line cut short by a kill (no newline yet)
    is dropped; any other line that is not one number per column is refused, and so is a
    column of `whole` (step, epoch) that holds anything but whole numbers.
    With `columns`, the header must be exactly those (or `earlier`, an older version's)."""
    with open(path, encoding="utf-8") as file:
        header = file.readline().rstrip("\n").split(",")
        if columns is not None and tuple(header) not in (tuple(columns), earlier):
            missing = [c for c in columns if c not in header]
            detail = f"missing {', '.join(missing[:5])}" if missing else "columns differ"
            raise InputError(f"{path}: unexpected columns ({detail}); expected {len(columns)} columns from {columns[0]} to {columns[-1]}")
        rows = []
        for number, line in enumerate(file, start=2):
            if not line.endswith("\n"):
                break  # partly written last line
            cells = line.rstrip("\n").split(",")
            try:
                if len(cells) != len(header):
                    raise ValueError
                rows.append([float(cell) for cell in cells])
            except ValueError:
                raise InputError(f"{path}: line {number} is not {len(header)} numbers, one per column; "
                                 f"{HAND_CHANGED}") from None
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    values = {column: table[:, i] for i, column in enumerate(header)}
    for column in whole:
        if column in values and not (np.isfinite(values[column]).all() and (values[column] % 1 == 0).all()):
            raise InputError(f"{path}: column {column} holds a value that is not a whole number; {HAND_CHANGED}")
    return values


def read_run_files(path: Path) -> tuple[dict, dict | None]:
    """A run folder's config.json and summary.json (None if it has none yet), each checked
    against its file kind's shape (mnist_clip.validation), and metrics.csv's header: what
    a plan checks of its runs before it resumes, and the first part of read_run."""
    try:
        config = read_config_file(path / CONFIG_FILE)
        with open(path / METRICS_FILE, encoding="utf-8") as file:
            header = tuple(file.readline().rstrip("\n").split(","))
        columns = run_columns(config)[0]
        if header not in (columns, earlier_headers(config, columns)):
            read_csv(path / METRICS_FILE, columns, earlier_headers(config, columns))  # says which columns differ
        summary_path = path / SUMMARY_FILE
        summary = read_summary(summary_path) if summary_path.is_file() else None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: cannot read run files ({describe_error(err)})") from None
    return config, summary


def read_config_file(path: Path) -> dict:
    """config.json, checked: a run of mnist-clip's own nets (mnist_clip.validation), or of a Keras
    model watched by GradientProbe (mnist_clip.probe_schema)."""
    from mnist_clip.probe_schema import check_probe_config, is_probe_config

    value = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(value, dict) and is_probe_config(value):
        check_probe_config(value, path)
        return value
    return read_run_config(path)


def run_columns(config: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The headers of metrics.csv and epochs.csv that a config.json calls for: the product's
    net's, or a Keras model's (GradientProbe)."""
    from mnist_clip.probe_schema import is_probe_config, probe_epoch_columns, probe_metric_columns

    if is_probe_config(config):
        return probe_metric_columns(config), probe_epoch_columns(config)
    return metric_columns_for(config), epoch_columns_for(config)


def read_run(path: str | Path) -> Run:
    path = Path(path)
    not_a_run = f"{path} is not a run folder ({{}}); give a folder written by `mnist-clip train`"
    if not path.is_dir():
        raise InputError(not_a_run.format("not a folder"))
    for required in (CONFIG_FILE, METRICS_FILE):
        if not (path / required).is_file():
            raise InputError(not_a_run.format(f"no {required}"))
    config, summary = read_run_files(path)
    try:
        metric_columns, epoch_columns = run_columns(config)
        metrics = read_csv(path / METRICS_FILE, metric_columns, earlier_headers(config, metric_columns))
        epochs_path = path / EPOCHS_FILE
        epochs = (read_csv(epochs_path, epoch_columns, earlier_headers(config, epoch_columns)) if epochs_path.is_file()
                  else {c: np.zeros(0) for c in epoch_columns})
    except (OSError, ValueError, UnicodeDecodeError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: cannot read run files ({describe_error(err)})") from None
    return Run(path, config, metrics, epochs, summary)
