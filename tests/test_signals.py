"""Ctrl-C, SIGTERM and SIGKILL while `mnist-clip train` and `sweep` run in a subprocess.

Every test waits for what the program prints (an epoch line, the stop notice, a
finished cell), never for a fixed time. On the first 1,000 real digits, batch
size 4 makes an epoch (one compiled chunk) 250 steps long, so a signal sent
after an epoch line lands while the next epoch trains; batch size 1 on all
4,000 makes a chunk long enough for a second signal to land inside it.
"""

import json
import signal

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import first_digits
from processes import Command, alive, wait_until

from mnist_clip.cli import cli
from mnist_clip.runs.reader import read_run
from mnist_clip.runs.schema import METRIC_COLUMNS
from mnist_clip.viz.registry import figures_for

EPOCH = 250  # steps: 1,000 digits in batches of 4


@pytest.fixture(scope="module")
def digits(mnist_5k, tmp_path_factory):
    """The first 1,000 training and 200 test digits of mnist-5k, as a --data-path file."""
    part = first_digits(mnist_5k, 1000, 200)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x_train=part.x_train, y_train=part.y_train, x_test=part.x_test, y_test=part.y_test)
    return path


def start_training(out, name, data=None, batch_size=4, epochs=40, plots=True):
    """`train` in a subprocess, on the digits of `data` (an npz) or on all of mnist-5k."""
    source = ["--data-path", str(data)] if data else ["--dataset", "mnist-5k"]
    return Command("train", *source, "--batch-size", str(batch_size), "--epochs", str(epochs),
                   *([] if plots else ["--no-plots"]), "--out", str(out), "--name", name)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_at_the_next_chunk(tmp_path, digits, signum, code):
    run_cmd = start_training(tmp_path, "run", digits)
    run_cmd.wait_for("epoch  1/40")
    run_cmd.signal(signum)
    assert run_cmd.finish() == code, run_cmd.output()
    assert "interrupted after" in run_cmd.output() and "Traceback" not in run_cmd.output()
    assert "stopping after the epoch in flight" in "".join(run_cmd.lines["stderr"])
    run = read_run(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert EPOCH <= summary["steps"] < 40 * EPOCH and summary["steps"] % EPOCH == 0  # whole chunks only
    assert run.steps == summary["steps"] and run.metrics["step"][-1] == summary["steps"] - 1
    assert len(run.epochs["epoch"]) == summary["steps"] // EPOCH
    assert (tmp_path / "run" / "params_final.npz").is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == sorted(figures_for(run))


def test_sigkill_loses_at_most_the_chunk_in_flight(tmp_path, digits):
    run_cmd = start_training(tmp_path, "run", digits, plots=False)  # killed before any picture
    run_cmd.wait_for("epoch  2/40")
    run_cmd.signal(signal.SIGKILL)
    run_cmd.finish()
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0] == ",".join(METRIC_COLUMNS)
    assert len(lines) - 1 >= 2 * EPOCH  # both announced epochs were on disk before their line was printed
    assert not (tmp_path / "run" / "summary.json").exists()
    json.loads((tmp_path / "run" / "config.json").read_text())  # whole, not half-written
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "run").status == "unfinished"


def test_a_run_killed_in_its_first_epoch_can_be_plotted_compared_and_named_again(tmp_path):
    run_cmd = start_training(tmp_path, "run", batch_size=1, plots=False)  # killed in its 4,000-step first epoch
    run_cmd.wait_for("run:")
    wait_until(lambda: (tmp_path / "run" / "params_init.npz").is_file(), message="training started")
    run_cmd.signal(signal.SIGKILL)
    run_cmd.finish()
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 1  # the header alone
    plotted = CliRunner().invoke(cli, ["plot", str(tmp_path / "run")])
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "run" / "plots" / "norms.png").stat().st_size > 5000
    compared = CliRunner().invoke(cli, ["compare", str(tmp_path / "run"), str(tmp_path / "run"),
                                        "--out", str(tmp_path / "cmp")])
    assert compared.exit_code == 0, compared.output
    assert "unfinished" in compared.output
    again = CliRunner().invoke(cli, ["train", "--out", str(tmp_path), "--name", "run"])
    assert again.exit_code == 2 and "already exists" in again.stderr and again.stderr.count("\n") == 1


def test_a_second_ctrl_c_exits_at_once_without_corrupting_files(tmp_path):
    # 4,000-step chunks: the second signal lands mid-chunk (it ends the run before any picture)
    run_cmd = start_training(tmp_path, "run", batch_size=1, plots=False)
    run_cmd.wait_for("epoch  1/40")
    run_cmd.signal(signal.SIGINT)
    run_cmd.wait_for("Ctrl-C again to quit at once", stream="stderr")  # the first one has been taken
    run_cmd.signal(signal.SIGINT)
    assert run_cmd.finish(timeout=60) == -signal.SIGINT  # ended by the signal itself, not after the chunk
    run = read_run(tmp_path / "run")  # every file there parses
    assert run.steps == 4000 and run.summary is None  # the first epoch whole; the one in flight lost
    json.loads((tmp_path / "run" / "config.json").read_text())


def test_ctrl_c_before_training_starts_writes_nothing(tmp_path):
    run_cmd = start_training(tmp_path, "run", plots=False)
    run_cmd.wait_for("data:")  # printed before TensorFlow loads
    run_cmd.signal(signal.SIGINT)
    code = run_cmd.finish()
    if code == 130 and (tmp_path / "run").exists():  # the signal met the run just after its folder was made
        assert read_run(tmp_path / "run").status == "interrupted"
    else:
        assert code == 130, run_cmd.output()
        assert "interrupted before training started; nothing was written" in run_cmd.output()
        assert not (tmp_path / "run").exists()
    assert "Traceback" not in run_cmd.output()


def sweep_arguments(tmp_path, jobs=2):
    grid = "lr=0.01,0.011,0.012,0.013,0.014,0.015,0.016,0.017"
    return ["sweep", "--dataset", "mnist-5k", "--epochs", "3", "--batch-size", "16", "--grid", grid,
            "--jobs", str(jobs), "--out", str(tmp_path), "--name", "s"]


def sweep_command(tmp_path):
    return Command(*sweep_arguments(tmp_path))


def finished_cells(folder):
    return sorted(p.parent.name for p in (folder / "cells").glob("*/summary.json")
                  if json.loads(p.read_text())["status"] == "completed")


@pytest.mark.parametrize("signum, group, code", [
    (signal.SIGINT, True, 130),   # Ctrl-C at a terminal: the whole process group
    (signal.SIGINT, False, 130),  # kill -INT on the parent alone
    (signal.SIGTERM, False, 143),  # kill on the parent alone
], ids=["ctrl-c", "kill-INT-parent", "kill-TERM-parent"])
def test_a_parallel_sweep_stops_hands_out_nothing_more_and_leaves_no_worker(tmp_path, signum, group, code):
    sweep = sweep_command(tmp_path)
    sweep.wait_for("[1/8]")
    workers = sweep.children()
    assert len(workers) >= 2
    sweep.signal(signum, group=group)
    assert sweep.finish(timeout=120) == code, sweep.output()
    wait_until(lambda: not any(alive(pid) for pid in workers), message="every worker ended")
    out = sweep.output()
    assert "Traceback" not in out and "stopping the sweep" in out
    assert "run the same command with --name s to resume" in out
    folder = tmp_path / "s"
    announced = out.count("] lr=")
    started = [p for p in (folder / "cells").iterdir()]
    assert len(started) <= announced + 2  # at most the two cells in flight went on; nothing new started
    rows = (folder / "sweep.csv").read_text().splitlines()
    assert len(rows) == 9 and (folder / "stability.png").is_file()
    done = finished_cells(folder)
    assert 1 <= len(done) < 8

    # resumed in this process, one cell after another (TensorFlow and the compiled program are
    # loaded already): what is checked is the folder the stopped parallel sweep left
    resumed = CliRunner().invoke(cli, sweep_arguments(tmp_path, jobs=1))
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(done)} of 8 cells finished earlier" in resumed.output
    assert len(finished_cells(folder)) == 8


def test_a_second_ctrl_c_ends_a_parallel_sweep_at_once(tmp_path):
    sweep = sweep_command(tmp_path)
    sweep.wait_for("[1/8]")
    workers = sweep.children()
    sweep.signal(signal.SIGINT, group=True)
    sweep.wait_for("Ctrl-C again to quit at once", stream="stderr")
    sweep.signal(signal.SIGINT, group=True)
    assert sweep.finish(timeout=60) == -signal.SIGINT
    wait_until(lambda: not any(alive(pid) for pid in workers), message="every worker ended")


def test_ctrl_c_while_the_pictures_are_drawn_stops_the_drawing_and_keeps_the_run(tmp_path):
    run_cmd = Command("train", "--dataset", "mnist-5k", "--epochs", "1", "--out", str(tmp_path), "--name", "run")
    run_cmd.wait_for("drawing the pictures")
    run_cmd.signal(signal.SIGINT)
    assert run_cmd.finish() == 130, run_cmd.output()
    said = " ".join(run_cmd.output().split())  # the lines as wrapped to the terminal's width, joined again
    assert f"pictures: stopped while drawing them; `mnist-clip plot {tmp_path / 'run'}` draws them" in said
    assert "Traceback" not in run_cmd.output()
    run = read_run(tmp_path / "run")
    assert run.status == "completed" and run.steps == 32  # the training it finished is whole
    drawn = sorted(p.name for p in (tmp_path / "run" / "plots").glob("*.png")) if (tmp_path / "run" / "plots").exists() else []
    assert len(drawn) < 6
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "run")])
    assert result.exit_code == 0 and len(list((tmp_path / "run" / "plots").glob("*.png"))) == 6
