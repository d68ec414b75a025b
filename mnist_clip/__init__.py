"""mnist-clip: watch exploding and vanishing gradients, and what clipping does about them.

    import mnist_clip as mc
    run = mc.train(lr=0.05, clip="none", epochs=5)
    run.summary["status"], run.metrics, run.figures()
"""

__version__ = "0.3.0"

from mnist_clip.api import (  # noqa: E402
    DemoResult,
    RunResult,
    SweepResult,
    compare,
    demo,
    load_run,
    make_config,
    recipes,
    sweep,
    train,
)
from mnist_clip.config import Config  # noqa: E402
from mnist_clip.errors import InputError  # noqa: E402

__all__ = ["Config", "InputError", "RunResult", "DemoResult", "SweepResult", "train", "demo", "compare", "sweep",
           "load_run", "recipes", "make_config"]
