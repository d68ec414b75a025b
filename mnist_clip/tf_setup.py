"""Importing TensorFlow without its native start-up chatter on the terminal."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
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
# brings jax for optax): 140 MB of resident memory and ~1.5 s of start-up that
# training never uses. Keras imports each of them inside try/except
# ImportError, so hiding them during the import is safe.
OPTIONAL_IMPORTS_TF_DOES_NOT_NEED = ("sklearn", "pandas", "scipy", "matplotlib", "jax", "optax")


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
    instruction-set flags), so that a program compiled for one machine never runs on another."""
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
    fingerprint = hashlib.sha1(f"{tensorflow_version}|{platform.machine()}|{cpu}".encode()).hexdigest()[:16]
    return root / f"xla-{fingerprint}"


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
