"""Writing a run's step and epoch rows as they come."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mnist_clip.runs.folder import (
    CONFIG_FILE,
    DIRTY_FILE,
    EPOCHS_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    folder_lock,
    write_atomic,
    write_json,
    write_npz,
)
from mnist_clip.runs.schema import EPOCH_COLUMNS, METRIC_COLUMNS, is_flag_column


def format_value(column: str, value: float) -> str:
    if is_flag_column(column):
        return str(int(value))
    return "%.9g" % value  # round-trips float32 exactly


def csv_lines(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    columns = tuple(columns)
    lines = []
    for row in rows:
        cells = []
        for column, value in zip(columns, row):
            cells.append(str(value) if isinstance(value, (int, np.integer)) else format_value(column, value))
        lines.append(",".join(cells))
    return "".join(line + "\n" for line in lines)


class RunWriter:
    """Writes one run folder, holding a lock on it while it does. metrics.csv is appended
    and flushed once per chunk of steps, so a killed process loses at most the chunk in
    flight; every other file is replaced atomically."""

    def __init__(self, path: Path, metric_columns: Sequence[str] = METRIC_COLUMNS,
                 epoch_columns: Sequence[str] = EPOCH_COLUMNS):
        self.path = Path(path)
        self.metric_columns = tuple(metric_columns)
        self.epoch_columns = tuple(epoch_columns)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(folder_lock(self.path, f"{self.path} is being written by another run"))
        try:
            self._metrics = open(self.path / METRICS_FILE, "w", encoding="utf-8")
            self._metrics.write(",".join(self.metric_columns) + "\n")
            self._metrics.flush()
        except BaseException:
            self._lock.close()
            raise
        self._epoch_rows: list[tuple] = []

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.path / CONFIG_FILE, config)

    def append_steps(self, first_step: int, epoch: int, records: np.ndarray) -> None:
        """records: [n, value columns] for steps first_step, first_step+1, ..."""
        rows = ((first_step + i, epoch, *map(float, record)) for i, record in enumerate(records))
        self._metrics.write(csv_lines(self.metric_columns, rows))
        self._metrics.flush()
        os.fsync(self._metrics.fileno())

    def append_epoch(self, row: tuple) -> None:
        self._epoch_rows.append(row)
        text = ",".join(self.epoch_columns) + "\n" + csv_lines(self.epoch_columns, self._epoch_rows)
        write_atomic(self.path / EPOCHS_FILE, text.encode())

    def write_params(self, which: str, arrays: dict[str, np.ndarray]) -> None:
        write_npz(self.path / f"params_{which}.npz", arrays)

    def write_dirty(self, indices: np.ndarray) -> None:
        """The training examples made dirty, as indices into the training set."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(indices, dtype=np.int64))
        write_atomic(self.path / DIRTY_FILE, buffer.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError:
            pass  # a full disk: what was flushed is on disk
        finally:
            self._lock.close()
