"""What the terminal shows during a run: the bar's rate from steady epochs, and a line while
the pictures are drawn."""

import io
import time

import numpy as np

from mnist_clip.config import Config
from mnist_clip.console.reporting import Reporter


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
    progress = reporter.run_progress(Config(epochs=10))
    progress.on_begin(320)
    bar = reporter.bar
    progress.on_epoch(EpochResult(0, 32, 110.0), None)  # the compiling epoch
    after_compiling = time.time()
    assert bar.n == 32 and bar.initial == 32  # its steps count as done, not into the rate
    assert bar.start_t <= after_compiling and after_compiling - bar.start_t < 5
    progress.on_epoch(EpochResult(1, 32, 0.1), None)
    rate = bar.format_dict["rate"] or (bar.n - bar.initial) / max(bar.format_dict["elapsed"], 1e-9)
    assert rate > 32 / 5  # the second epoch's 32 steps over the time since compiling ended
    said = len(lines)
    progress.on_end()
    assert reporter.bar is None and len(lines) == said
    progress.on_drawing(["norms.png", "ratio.png"])
    assert lines[-1] == "drawing the pictures (norms.png, ratio.png) ..."
    quiet = []
    Reporter(quiet.append, "quiet").run_progress(Config()).on_drawing(["norms.png"])
    assert quiet == []


def test_lines_and_tables_fit_the_width_and_keep_every_word(monkeypatch):
    from mnist_clip.console.reporting import fit_line, table_lines, terminal_width

    monkeypatch.setenv("COLUMNS", "60")
    assert terminal_width() == 60
    monkeypatch.delenv("COLUMNS")
    assert terminal_width() == 100  # not a terminal under pytest
    text = "  " + " ".join(f"word{i}" for i in range(60))
    wrapped = fit_line(text, 50).split("\n")
    assert all(len(line) <= 50 for line in wrapped) and " ".join(wrapped).split() == text.split()
    assert all(line.startswith("    ") for line in wrapped[1:])  # the continuation: its own indent and two more
    assert fit_line("short", 50) == "short"
    headers, rows = ["name", "value"], [["a", "1"], ["bbb", "22"]]
    assert table_lines(headers, rows, 50) == ["name  value", "a     1", "bbb   22"]
    wide = [["first-run", "x" * 30, "y" * 30]]
    narrow = table_lines(["run", "p", "q"], wide, 40)
    assert all(len(line) <= 40 for line in narrow) and narrow[0] == "first-run"
    assert "".join(narrow[1:]).replace(" ", "") == f"p:{'x' * 30};q:{'y' * 30}"
    hanging = table_lines(None, [["abc", "one two three four five six seven"]], 20, hanging=True)
    assert hanging == ["abc  one two three", "     four five six", "     seven"]


def test_the_tutorial_setting_says_why_its_accuracy_is_low():
    from mnist_clip.console.reporting import accuracy_line, plural

    summary = {"status": "completed", "test_accuracy": 0.679}
    assert accuracy_line(Config(), summary, 4000) == (
        "why 67.9%: 4,000 training digits, MSE on x/50 inputs, plain SGD at 0.01 for 30 epochs: the tutorial's "
        "setting, made to show gradient norms, not to score")
    assert accuracy_line(Config(input_scale=255.0), summary, 4000) is None  # not the tutorial's setting
    assert accuracy_line(Config(), {**summary, "status": "diverged"}, 4000) is None
    assert plural(1, "epoch") == "1 epoch" and plural(5, "epoch") == "5 epochs"


def test_a_recipe_says_how_many_epochs_its_point_needs():
    from mnist_clip.recipe_files import epochs_needed, recipes_folder, short_run_line

    line = next(l for l in (recipes_folder() / "deep_sigmoid_batchnorm.toml").read_text().splitlines()
                if l.startswith("# needs about"))
    assert line.startswith("# needs about 12 epochs to leave chance")
    assert epochs_needed("deep_sigmoid_batchnorm") == (12, "to leave chance")
    assert short_run_line("deep_sigmoid_batchnorm", 5) == \
        "deep_sigmoid_batchnorm needs about 12 epochs to leave chance; this run has 5"
    assert short_run_line("deep_sigmoid_batchnorm", 12) is None and short_run_line("blog", 1) is None
    assert short_run_line(None, 1) is None
