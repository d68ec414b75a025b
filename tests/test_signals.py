"""Ctrl-C, SIGTERM and SIGKILL while `mnist-clip train` runs in a subprocess.

Batch size 4 makes an epoch (one compiled chunk) 1,000 steps long, so training
is surely under way when the first epoch line appears and lasts long enough
for the signal to land mid-run.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from mnist_clip.cli import cli
from mnist_clip.runs import METRIC_COLUMNS, read_run


def start_training(out, name, batch_size=4):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_clip", "train", "--dataset", "mnist-5k", "--batch-size", str(batch_size),
         "--epochs", "40", "--out", str(out), "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def wait_for_epoch(proc, epoch):
    for line in proc.stdout:
        if line.startswith(f"epoch {epoch:>2}/40"):
            return
    raise AssertionError(f"training ended before epoch {epoch}: {proc.stderr.read()}")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_at_the_next_chunk(tmp_path, signum, code):
    proc = start_training(tmp_path, "run")
    wait_for_epoch(proc, 1)
    proc.send_signal(signum)
    rest, errors = proc.communicate(timeout=120)
    assert proc.returncode == code, errors
    assert "interrupted after" in rest and "Traceback" not in errors
    run = read_run(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert 1000 <= summary["steps"] < 40_000 and summary["steps"] % 1000 == 0  # whole chunks only
    assert run.steps == summary["steps"] and run.metrics["step"][-1] == summary["steps"] - 1
    assert len(run.epochs["epoch"]) == summary["steps"] // 1000
    assert (tmp_path / "run" / "params_final.npz").is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == [
        "flow.png", "loss.png", "norms.png", "ratio.png", "signals.png"]


def test_sigkill_loses_at_most_the_chunk_in_flight(tmp_path):
    proc = start_training(tmp_path, "run")
    wait_for_epoch(proc, 2)
    proc.kill()
    proc.wait(timeout=30)
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0] == ",".join(METRIC_COLUMNS)
    assert len(lines) - 1 >= 2000  # both announced epochs were on disk before their line was printed
    assert not (tmp_path / "run" / "summary.json").exists()
    json.loads((tmp_path / "run" / "config.json").read_text())  # whole, not half-written
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "run").status == "unfinished"


def test_a_second_ctrl_c_exits_at_once_without_corrupting_files(tmp_path):
    proc = start_training(tmp_path, "run", batch_size=1)  # 4,000-step chunks: the second signal lands mid-chunk
    wait_for_epoch(proc, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT  # ended by the signal itself, not after the chunk
    run = read_run(tmp_path / "run")  # every file there parses
    assert run.steps == 4000 and run.summary is None  # the first epoch whole; the one in flight lost
    json.loads((tmp_path / "run" / "config.json").read_text())
