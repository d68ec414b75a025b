"""mnist-clip: watch exploding and vanishing gradients, and what clipping does about them.

    import mnist_clip as mc
    run = mc.train(lr=0.05, clip="none", epochs=5)
    run.summary["status"], run.metrics, run.figures()
"""

from typing import TYPE_CHECKING

from mnist_clip.version import __version__
from mnist_clip.api import (  # noqa: E402
    CuresResult,
    DemoResult,
    RunResult,
    SweepResult,
    compare,
    cures,
    demo,
    load_run,
    make_config,
    recipes,
    sweep,
    train,
)
from mnist_clip.config import Config  # noqa: E402
from mnist_clip.errors import InputError  # noqa: E402

if TYPE_CHECKING:  # for type checkers and the API reference; at run time, __getattr__ below
    from mnist_clip.probe import GradientProbe


def __getattr__(name: str):
    """GradientProbe imports Keras and TensorFlow: only when it is asked for."""
    if name == "GradientProbe":
        from mnist_clip.probe import GradientProbe

        return GradientProbe
    raise AttributeError(f"module 'mnist_clip' has no attribute {name!r}")


__all__ = ["Config", "InputError", "RunResult", "DemoResult", "SweepResult", "CuresResult", "train", "demo", "compare",
           "sweep", "cures", "load_run", "recipes", "make_config", "GradientProbe"]
