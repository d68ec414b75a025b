"""Importing TensorFlow without its native start-up chatter on the terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

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


def import_tensorflow():
    """TensorFlow, imported and its devices initialised with the start-up notes hidden."""
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
