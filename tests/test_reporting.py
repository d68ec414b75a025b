"""What the terminal shows during a run: the bar's rate from steady epochs, and a line while
the pictures are drawn."""

import io
import time

import numpy as np

from mnist_clip.config import Config
from mnist_clip.reporting import Reporter


class EpochResult:
    """The parts of an epoch's result that the reporter reads."""

    def __init__(self, epoch: int, steps: int, seconds: float):
        self.epoch, self.seconds, self.values = epoch, seconds, np.ones((steps, 3))
        self.test_loss, self.test_accuracy = 0.5, 0.8

    def column(self, name):
        return np.zeros(len(self.values)) if name == "clipped" else np.ones(len(self.values))


def test_the_bar_times_the_run_from_its_steady_epochs_and_says_when_pictures_are_drawn(monkeypatch):
    import tqdm

    lines = []
    reporter = Reporter(lines.append, "bar")
    original = tqdm.tqdm.__init__
    monkeypatch.setattr(tqdm.tqdm, "__init__", lambda self, *a, **k: original(self, *a, **{**k, "file": io.StringIO()}))
    progress = reporter.run_progress(Config(epochs=10), drawing=True)
    progress.on_begin(320)
    bar = reporter.bar
    progress.on_epoch(EpochResult(0, 32, 110.0), None)  # the compiling epoch
    after_compiling = time.time()
    assert bar.n == 32 and bar.initial == 32  # its steps count as done, not into the rate
    assert bar.start_t <= after_compiling and after_compiling - bar.start_t < 5
    progress.on_epoch(EpochResult(1, 32, 0.1), None)
    rate = bar.format_dict["rate"] or (bar.n - bar.initial) / max(bar.format_dict["elapsed"], 1e-9)
    assert rate > 32 / 5  # the second epoch's 32 steps over the time since compiling ended
    progress.on_end()
    assert lines[-1].startswith("drawing the pictures (norms.png") and reporter.bar is None
    quiet = []
    Reporter(quiet.append, "lines").run_progress(Config(), drawing=False).on_end()
    assert quiet == []
