"""The run folder: its file contract, creating it, writing it safely, reading it back.

No TensorFlow here: plotting and comparing read runs without it.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mnist_clip.config import PARAM_NAMES
from mnist_clip.errors import InputError

# metrics.csv, one row per step. The first 19 columns are the reference's
# logging; the rest say which tensors clipping acted on and how the
# back-propagated signal and the ReLUs behave.
NORM_COLUMNS = tuple(f"{name}_{when}" for name in PARAM_NAMES for when in ("before", "after"))
TENSOR_CLIPPED_COLUMNS = tuple(f"{name}_clipped" for name in PARAM_NAMES)
SIGNAL_COLUMNS = ("delta1", "delta2", "delta3", "dead_h1", "dead_h2")
STEP_VALUE_COLUMNS = (
    "loss",
    "accuracy",
    "global_norm_before",
    "global_norm_after",
    "clipped",
    *NORM_COLUMNS,
    *TENSOR_CLIPPED_COLUMNS,
    *SIGNAL_COLUMNS,
)
METRIC_COLUMNS = ("step", "epoch", *STEP_VALUE_COLUMNS)
FLAG_COLUMNS = frozenset(("clipped", *TENSOR_CLIPPED_COLUMNS))
EPOCH_COLUMNS = ("epoch", "steps", "train_loss", "test_loss", "test_accuracy", "clipped_steps", "seconds")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EPOCHS_FILE = "epochs.csv"
SUMMARY_FILE = "summary.json"
PLOTS_DIR = "plots"


def default_run_name(clip: str, clip_norm: float) -> str:
    setting = "noclip" if clip == "none" else f"{clip}-{clip_norm:g}"
    return f"{setting}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(out: str | Path, name: str | None, default_name: str, overwrite: bool = False) -> Path:
    """Make the run folder. A given name must be new unless `overwrite`; a default
    name gets a -2, -3, ... suffix until mkdir (atomic) succeeds, so two runs
    started in the same second never share a folder."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create output folder {out}: {err.strerror}") from None
    if name is not None:
        if not name or "/" in name or name in (".", ".."):
            raise InputError(f"--name must be a plain folder name (got {name!r})")
        path = out / name
        if path.exists():
            if not overwrite:
                raise InputError(f"run folder {path} already exists; choose another --name or add --overwrite")
            shutil.rmtree(path)
        path.mkdir()
        return path
    for attempt in range(1, 10_000):
        path = out / (default_name if attempt == 1 else f"{default_name}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise InputError(f"cannot find a free run folder name under {out}")


def _file_mode() -> int:
    """What open() would give a new file: 0o666 less the umask (mkstemp makes 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a temp file in the same folder, then os.replace: readers see old or new, never half."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def json_safe(value: Any) -> Any:
    """NaN and Inf have no JSON spelling; they become null (status says why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n").encode())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def format_value(column: str, value: float) -> str:
    if column in FLAG_COLUMNS:
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
    """Writes one run folder. metrics.csv is appended and flushed once per chunk of
    steps, so a killed process loses at most the chunk in flight; every other file
    is replaced atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._metrics = open(self.path / METRICS_FILE, "w", encoding="utf-8")
        self._metrics.write(",".join(METRIC_COLUMNS) + "\n")
        self._metrics.flush()
        self._epoch_rows: list[tuple] = []

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.path / CONFIG_FILE, config)

    def append_steps(self, first_step: int, epoch: int, records: np.ndarray) -> None:
        """records: [n, len(STEP_VALUE_COLUMNS)] for steps first_step, first_step+1, ..."""
        rows = ((first_step + i, epoch, *map(float, record)) for i, record in enumerate(records))
        self._metrics.write(csv_lines(METRIC_COLUMNS, rows))
        self._metrics.flush()
        os.fsync(self._metrics.fileno())

    def append_epoch(self, row: tuple) -> None:
        self._epoch_rows.append(row)
        text = ",".join(EPOCH_COLUMNS) + "\n" + csv_lines(EPOCH_COLUMNS, self._epoch_rows)
        write_atomic(self.path / EPOCHS_FILE, text.encode())

    def write_params(self, which: str, arrays: dict[str, np.ndarray]) -> None:
        write_npz(self.path / f"params_{which}.npz", arrays)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

    def close(self) -> None:
        self._metrics.close()


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
    def clip_label(self) -> str:
        clip = self.config.get("clip", "?")
        return "no clipping" if clip == "none" else f"{clip} {self.config.get('clip_norm', 0):g}"

    @property
    def nonfinite_step(self) -> int | None:
        """The first step whose loss or global norm is NaN or Inf, from the metrics themselves."""
        bad = nonfinite_steps(self.metrics["loss"], self.metrics["global_norm_before"])
        return int(self.metrics["step"][np.argmax(bad)]) if bad.any() else None


def read_csv(path: Path, columns: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """A numeric CSV as {column: float array}. A last line cut short by a kill is dropped."""
    with open(path, encoding="utf-8") as file:
        header = file.readline().strip().split(",")
        if columns is not None and tuple(header[: len(columns)]) != columns:
            raise InputError(f"{path}: unexpected columns; expected {','.join(columns)}")
        rows = []
        for line in file:
            if not line.endswith("\n"):
                break  # partly written last line
            cells = line.rstrip("\n").split(",")
            if len(cells) != len(header):
                break
            try:
                rows.append([float(cell) for cell in cells])
            except ValueError:
                break
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    return {column: table[:, i] for i, column in enumerate(header)}


def read_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a run folder (not a folder); give a folder written by `mnist-clip train`")
    for required in (CONFIG_FILE, METRICS_FILE):
        if not (path / required).is_file():
            raise InputError(
                f"{path} is not a run folder (no {required}); give a folder written by `mnist-clip train`"
            )
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        metrics = read_csv(path / METRICS_FILE, METRIC_COLUMNS[:7])
        epochs_path = path / EPOCHS_FILE
        epochs = read_csv(epochs_path, EPOCH_COLUMNS) if epochs_path.is_file() else {c: np.zeros(0) for c in EPOCH_COLUMNS}
        summary_path = path / SUMMARY_FILE
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read run files ({err})") from None
    return Run(path, config, metrics, epochs, summary)
