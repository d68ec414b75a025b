"""The run folder: its file contract, creating it safely, writing it, reading it back.

No TensorFlow here: plotting and comparing read runs without it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from mnist_clip.config import OPTIMIZER_KEYS, Config
from mnist_clip.errors import InputError, name as named
from mnist_clip.nn import Net
from mnist_clip.validation import HAND_CHANGED, read_run_config, read_summary
from mnist_clip.schema import (  # noqa: F401  (the run folder's columns, re-exported for its readers)
    BASE_METRIC_COLUMNS,
    EPOCH_COLUMNS,
    METRIC_COLUMNS,
    STEP_VALUE_COLUMNS,
    activity_column_prefix,
    clip_columns,
    earlier_headers,
    epoch_columns_for,
    is_flag_column,
    metric_columns_for,
    step_value_columns,
)


CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EPOCHS_FILE = "epochs.csv"
SUMMARY_FILE = "summary.json"
SWEEP_FILE = "sweep.json"
DIRTY_FILE = "dirty_examples.npy"  # only in runs with dirty data
PLOTS_DIR = "plots"
MAX_NAME_BYTES = 200  # leaves room under the file system's 255 for the temporary siblings' prefixes


def default_run_name(config: Any, recipe: str | None = None) -> str:
    """<recipe>-<time> for a run of a recipe or TOML file (deep_sigmoid-20260101-120000),
    else the clip setting that differs between the default runs, after the model and the
    optimizer when they are not the default (rnn-adam-global_norm-15-...), and the time."""
    setting = recipe or ("noclip" if config.clip == "none" else f"{config.clip}-{config.clip_norm:g}")
    if not recipe:
        setting = "-".join([*(value for value, default in ((config.model, "mlp"), (config.optimizer, "sgd"))
                              if value != default), setting])
    return f"{setting}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or "\0" in name or name in (".", ".."):
        raise InputError(f"{named('name')}: must be a plain folder name, without '/' (got {name!r})", "name")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InputError(f"{named('name')}: {len(name.encode())} bytes long; at most {MAX_NAME_BYTES} are allowed", "name")


def check_out_folder(out: Path) -> None:
    """--out must be a folder, or a path where one can be made."""
    for parent in (out, *out.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise InputError(f"{named('out')} {out}: {parent} is not a folder", "out")
            return


DEMO_FILE = "demo.json"


def is_run_folder(path: Path, marker: str = CONFIG_FILE) -> bool:
    """A folder written by `mnist-clip train` (marker config.json) or `demo` (demo.json):
    a real folder with its marker file, not a sweep or a link."""
    return path.is_dir() and not path.is_symlink() and (path / marker).is_file() and not (path / SWEEP_FILE).exists()


@contextlib.contextmanager
def folder_lock(path: Path, busy: str) -> Iterator[None]:
    """An exclusive flock on a folder for the block, or InputError(busy) at once if another
    process holds it. The kernel drops it when the process dies, however it dies."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(busy) from None
        yield
    finally:
        os.close(fd)


def _remove_abandoned(out: Path, name: str) -> None:
    """Temporary siblings of `name` that no live process holds (left by a killed run)."""
    for stale in list(out.glob(f".{name}.new-*")) + list(out.glob(f".{name}.old-*")):
        try:
            with folder_lock(stale, "busy"):
                shutil.rmtree(stale)
        except (InputError, OSError):
            continue


@dataclass(frozen=True)
class RunTarget:
    """Where a run goes. A new name is claimed with mkdir (atomic: two runs never share a
    folder). With --overwrite of an existing run, the new run is written beside it in a
    hidden sibling and swapped in only once it has its summary."""

    out: Path
    name: str | None
    default_name: str
    overwrite: bool
    marker: str = CONFIG_FILE  # the file that makes an existing folder one that --overwrite may replace

    @property
    def final(self) -> Path | None:
        return self.out / self.name if self.name else None

    @property
    def kind(self) -> str:
        return "demo" if self.marker == DEMO_FILE else "run"

    def check(self) -> None:
        """Everything that can be checked before any folder is made."""
        check_out_folder(self.out)
        if self.name is None:
            return
        check_name(self.name)
        final = self.final
        if final.exists() or final.is_symlink():
            if not self.overwrite:
                raise InputError(f"{self.kind} folder {final} already exists; choose another {named('name')} or add "
                                 f"{named('overwrite', True)}", "name")
            if not is_run_folder(final, self.marker):
                raise InputError(
                    f"{named('overwrite', True)}: {final} is not a {self.kind} folder (no {self.marker}, or a sweep or a link); "
                    "it is left alone"
                )

    def create(self) -> Path:
        """Make and return the folder to write the run into."""
        self.check()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise InputError(f"{named('out')} {self.out}: not a folder", "out") from None
        if self.name is None:
            for attempt in range(1, 10_000):
                path = self.out / (self.default_name if attempt == 1 else f"{self.default_name}-{attempt}")
                try:
                    path.mkdir()
                    return path
                except FileExistsError:
                    continue
            raise InputError(f"cannot find a free run folder name under {self.out}")
        if self.final.exists() and self.overwrite:
            _remove_abandoned(self.out, self.name)
            path = self.out / f".{self.name}.new-{os.getpid()}"
            path.mkdir()
            return path
        try:
            self.final.mkdir()
        except FileExistsError:
            raise InputError(
                f"{self.kind} folder {self.final} already exists (another run just made it); choose another {named('name')}"
            ) from None
        return self.final

    def commit(self, written: Path, keep_old: bool = False) -> Path:
        """Put a finished run in its place; returns where it now is.

        With keep_old (a replacing run that was interrupted), the earlier run stays
        and the new one gets a visible name of its own instead."""
        if written == self.final or self.final is None:
            return written
        if keep_old:
            return self._rename_free(written, f"{self.name}-interrupted-{time.strftime('%Y%m%d-%H%M%S')}")
        with folder_lock(self.out, f"{self.out} is busy"):
            old = None
            if self.final.exists():
                if not is_run_folder(self.final, self.marker):
                    raise InputError(f"{named('overwrite', True)}: {self.final} is no longer a {self.kind} folder; the new one is in {written}")
                with folder_lock(self.final, f"{self.final} is being written by another run; the new run is in {written}"):
                    old = self.out / f".{self.name}.old-{os.getpid()}"
                    os.rename(self.final, old)
            os.rename(written, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def _rename_free(self, written: Path, name: str) -> Path:
        for attempt in range(1, 10_000):
            path = self.out / (name if attempt == 1 else f"{name}-{attempt}")
            if not path.exists():
                os.rename(written, path)
                return path
        return written


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


def compared_with_threshold(clip: str, column, tensors: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> tuple[str, dict]:
    """What a clipping method compares with its threshold at each step, from the step
    columns (`column(name)` gives one) and the tensors' shapes: (what it is, {series label: values})."""
    if clip in ("none", "global_norm", "autoclip"):
        return "global norm", {"global norm before": column("global_norm_before")}
    if clip == "norm":
        return "tensor L2 norm", {name: column(f"{name}_before") for name in tensors}
    if clip == "average_norm":
        sizes = {name: float(np.prod(shape)) for name, shape in shapes.items()}
        return "tensor L2 norm / N", {name: column(f"{name}_before") / sizes[name] for name in tensors}
    if clip == "value":
        return "gradient |element|", {name: column(f"{name}_max_abs") for name in tensors}
    return "unit ratio ||g|| / max(||w||, 1e-3)", {name: column(f"{name}_agc_ratio") for name in tensors}


def clip_label(config: Mapping[str, Any]) -> str:
    """'global_norm 15', 'agc 0.01', 'autoclip p10', 'no clipping'."""
    clip = config.get("clip", "?")
    if clip == "none":
        return "no clipping"
    if clip == "autoclip":
        return f"autoclip p{config.get('clip_percentile', 10.0):g}"
    return f"{clip} {config.get('clip_norm', 0):g}"


def optimizer_label(config: dict) -> str:
    """'sgd', 'sgd momentum 0.9 nesterov', 'adam beta1 0.5': the optimizer and the options
    it reads that differ from Keras's defaults (runs written before optimizers were sgd)."""
    optimizer = config.get("optimizer", "sgd")
    parts = [optimizer]
    for key in OPTIMIZER_KEYS.get(optimizer, ()):
        value = config.get(key, getattr(Config, key))
        if value != getattr(Config, key):
            parts.append(key if value is True else f"{key} {value:g}")
    return " ".join(parts)


def training_label(config: Mapping[str, Any]) -> str:
    """'lr 0.01' for the reference's SGD; 'adam beta1 0.5, lr 0.0002, crossentropy' otherwise."""
    parts = [] if optimizer_label(config) == "sgd" else [optimizer_label(config)]
    parts.append(f"lr {config.get('lr', 0):g}")
    if config.get("loss", "mse") != "mse":
        parts.append(config["loss"])
    return ", ".join(parts)


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


OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full; free some space (earlier results are untouched)",
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.ENAMETOOLONG: "a file name is too long; choose a shorter --name or --out",
    errno.EEXIST: "it already exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EDQUOT: "the disk quota is exceeded; free some space",
}


def describe_error(err: BaseException) -> str:
    """One line for an OS error: what failed, on which file, and what to do."""
    if not isinstance(err, OSError) or err.errno is None:
        return str(err).replace("\n", " ")
    where = f" {err.filename}" if err.filename else ""
    if err.filename2:
        where += f" -> {err.filename2}"
    hint = OS_ERROR_HINTS.get(err.errno, (err.strerror or str(err)).lower())
    return f"cannot use{where}: {hint}"
