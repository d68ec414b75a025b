"""Importing TensorFlow without its native start-up chatter on the terminal, and numpy's
BLAS kept off the cores while TensorFlow trains."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterator

USER_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Send fd 2 to a temporary file; replay it if the block fails.

    TensorFlow's C++ side writes notes about CUDA and oneDNN straight to fd 2
    before its log level applies. They mean nothing on a CPU machine, but an
    import error must still be seen, hence the replay.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


# `import tensorflow` loads Keras, whose optional integrations pull in these
# packages when they are installed (mlxtend brings most of them, the test extra
# brings jax for optax, and IPython with Jupyter): 140 MB of resident memory and
# ~2 s of start-up that training never uses (IPython alone, for Keras's saved-file
# editor, is 0.5 s). Keras imports each of them inside try/except ImportError, so
# hiding them during the import is safe; in a notebook IPython is loaded already
# and so is not hidden.
OPTIONAL_IMPORTS_TF_DOES_NOT_NEED = ("sklearn", "pandas", "scipy", "matplotlib", "jax", "optax", "IPython")


@contextlib.contextmanager
def hidden_modules(names: tuple[str, ...]) -> Iterator[None]:
    """`import name` raises ImportError inside the block (unless already imported)."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def compilation_cache_folder() -> Path | None:
    """Where XLA keeps compiled training programs between processes, or None when
    MNIST_CLIP_XLA_CACHE is "off". One folder per TensorFlow version and CPU (its model and
    instruction-set flags) and XLA flags, so that a program compiled for one machine or runtime
    never runs on another."""
    setting = os.environ.get("MNIST_CLIP_XLA_CACHE", "")
    if setting.lower() in ("0", "off", "no", "false"):
        return None
    root = Path(setting) if setting else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-clip"
    try:
        cpu = "".join(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith(("model name", "flags")))[:10_000]
    except OSError:
        cpu = platform.processor() or platform.machine()
    from importlib.metadata import PackageNotFoundError, version

    try:
        tensorflow_version = version("tensorflow")
    except PackageNotFoundError:
        tensorflow_version = "unknown"
    # the XLA flags too: a program compiled for one CPU runtime is not loaded by the other
    xla_flags = os.environ.get("XLA_FLAGS", "")
    fingerprint = hashlib.sha1(f"{tensorflow_version}|{platform.machine()}|{cpu}|{xla_flags}".encode()).hexdigest()[:16]
    return root / f"xla-{fingerprint}"


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _proto_fields(data: bytes) -> dict[int, int | bytes]:
    """The top-level fields of a serialized protocol buffer (varints and byte strings; the
    last one of a number wins); ValueError when the bytes are not one whole message."""
    fields: dict[int, int | bytes] = {}
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            fields[number], i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            if i + size > len(data):
                raise ValueError("a field runs past the end")
            fields[number], i = data[i : i + size], i + size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
        if number == 0 or i > len(data):
            raise ValueError("not a message")
    return fields


_ENTRY_NAME = re.compile(r"^(?P<prefix>[A-Za-z0-9_]+?)__(?P<signature>\d+)__(?P<cluster>\d+)__(?P<device>[A-Za-z0-9_]+)\.pb$")


def cache_entry_is_whole(path: Path) -> bool:
    """Whether an XLA cache entry (XlaSerializedCacheEntry: key, HLO module, executable) is a
    whole message whose key is the one its file name promises. A truncated entry (a full
    disk, a crash mid-write) or another program's bytes would make TensorFlow fail the
    run ("Can't parse", "Serialized cache key does not match") instead of compiling."""
    match = _ENTRY_NAME.match(path.name)
    if not match:
        return True  # not an entry (TensorFlow's temporary files while it writes one)
    try:
        entry = _proto_fields(path.read_bytes())
        key = _proto_fields(entry[1]) if isinstance(entry.get(1), bytes) else {}
    except (OSError, ValueError):
        return False
    return (
        isinstance(entry.get(2), bytes) and isinstance(entry.get(3), bytes) and len(entry[3]) > 0
        and key.get(1) == int(match["signature"]) and key.get(2) == int(match["cluster"])
        and key.get(3) == match["device"].encode() and key.get(4, b"") == match["prefix"].encode()
    )


def discard_damaged_entries(folder: Path) -> list[Path]:
    """Remove the cache entries that are not whole; say so in one line. Their programs are
    compiled again (and stored anew) when a run needs them."""
    try:
        entries = sorted(folder.glob("*.pb"))
    except OSError:
        return []
    damaged = [path for path in entries if not cache_entry_is_whole(path)]
    for path in damaged:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if damaged:
        sys.stderr.write(f"note: discarded {len(damaged)} damaged entr{'y' if len(damaged) == 1 else 'ies'} of the "
                         f"compile cache {folder}; {'its program is' if len(damaged) == 1 else 'their programs are'} "
                         "compiled again\n")
    return damaged


def enable_compilation_cache() -> None:
    """Let XLA reuse the programs compiled by earlier processes (set before TensorFlow loads).
    Its loader logs harmless complaints at the C++ error level, hence TF_CPP_MIN_LOG_LEVEL 3
    unless the user chose a level."""
    folder = compilation_cache_folder()
    if folder is None or "tensorflow" in sys.modules:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache: every process compiles, as without one
    discard_damaged_entries(folder)
    flag = f"--tf_xla_persistent_cache_directory={folder}"
    os.environ["TF_XLA_FLAGS"] = f"{os.environ.get('TF_XLA_FLAGS', '')} {flag}".strip()
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2" and not USER_LOG_LEVEL:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def import_tensorflow():
    """TensorFlow, imported and its devices initialised with the start-up notes hidden."""
    enable_compilation_cache()
    with native_stderr_captured():
        if "tensorflow" not in sys.modules:
            with hidden_modules(OPTIONAL_IMPORTS_TF_DOES_NOT_NEED):
                import tensorflow  # noqa: F401
        import tensorflow as tf

        # Every run (and every sweep cell) builds its own compiled functions on
        # purpose; TensorFlow's retracing warnings would only alarm the user.
        tf.get_logger().setLevel("ERROR")
        tf.config.list_logical_devices()
        tf.constant(0.0) + 1.0  # the first op initialises the device and its notes
    return tf


def blas_on_one_thread():
    """numpy's BLAS (OpenBLAS) on the calling thread alone, until `with` ends or
    restore_original_limits() is called. After each call OpenBLAS's worker threads spin for
    more work for about 0.1 s, on the cores TensorFlow's thread pool trains on: the weights'
    distances from their start, taken after every epoch, made a run's steps 30% slower on 2 cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
