"""A run folder on disk: its file names, a name checked and claimed safely, the lock, atomic
writes, and the words for the OS errors a write can meet."""

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
from typing import Any, Iterator

import numpy as np

from mnist_clip.errors import InputError, name as named

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
