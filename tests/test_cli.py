"""The real `mnist-clip` command on the real bundled digits, and its answers to bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnist_clip.cli import cli
from mnist_clip.config import PARAM_NAMES, Config
from mnist_clip.nn.model import init_params
from mnist_clip.runs.reader import read_run
from mnist_clip.runs.schema import METRIC_COLUMNS
from mnist_clip.viz.registry import figures_for

ROOT = Path(__file__).resolve().parent.parent
ISSUE_COLUMNS = (
    "step,epoch,loss,accuracy,global_norm_before,global_norm_after,clipped,w1_before,w1_after,b1_before,"
    "b1_after,w2_before,w2_after,b2_before,b2_after,w3_before,w3_after,b3_before,b3_after"
).split(",")
# what a default run has always written after them, in this order
LATER_COLUMNS = ("w1_clipped,b1_clipped,w2_clipped,b2_clipped,w3_clipped,b3_clipped,delta1,delta2,delta3,dead_h1,dead_h2,"
                 "w1_update,b1_update,w2_update,b2_update,w3_update,b3_update,w1_norm,w2_norm,w3_norm").split(",")


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--dataset", "mnist-5k", "--epochs", "1", "--out", str(out), "--name", "r", "--print-every", "10")
    return result, out / "r"


def test_one_epoch_writes_the_whole_run_folder(one_epoch_run):
    result, run = one_epoch_run
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.json", "metrics.csv", "epochs.csv", "summary.json", "params_init.npz", "params_final.npz", "plots"]
    )
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(METRIC_COLUMNS) == ISSUE_COLUMNS + LATER_COLUMNS
    table = np.loadtxt(run / "metrics.csv", delimiter=",", skiprows=1)
    assert table.shape == (32, len(METRIC_COLUMNS))  # 4,000 digits in batches of 128
    assert np.isfinite(table).all()
    assert table[:, 0].tolist() == list(range(32))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 32
    assert summary["first_nonfinite_step"] is None
    assert summary["clipped_steps"] == int(table[:, METRIC_COLUMNS.index("clipped")].sum()) > 0
    assert 0 < summary["test_accuracy"] <= 1 and summary["ms_per_step"] > 0
    assert summary["ms_per_step_includes_compiling"] is True  # a single epoch
    config = json.loads((run / "config.json").read_text())
    assert config["clip"] == "global_norm" and config["clip_norm"] == 15.0 and config["epochs"] == 1
    assert config["dataset_used"]["name"] == "mnist-5k" and config["dataset_used"]["train_size"] == 4000
    epochs = (run / "epochs.csv").read_text().splitlines()
    assert epochs[0] == ("epoch,steps,train_loss,test_loss,test_accuracy,clipped_steps,seconds,"
                         "w1_moved,w2_moved,w3_moved") and len(epochs) == 2
    init = np.load(run / "params_init.npz")
    final = np.load(run / "params_final.npz")
    reference = init_params(1234)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(init[name], reference[name].numpy())
        assert init[name].shape == final[name].shape
        assert not np.array_equal(init[name], final[name])


def test_progress_and_norm_listing_are_printed(one_epoch_run):
    result, run = one_epoch_run
    assert "data: mnist-5k (4,000 train / 1,000 test)" in result.output
    assert "epoch 1/1" in result.output
    assert result.output.count("==before==") == 4 and result.output.count("==after==") == 4  # steps 0, 10, 20, 30
    assert "status: completed" in result.output


def test_plots_are_drawn_and_not_blank(one_epoch_run):
    _, run = one_epoch_run
    names = list(figures_for(read_run(run)))
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(names)
    for name in names:
        image = np.asarray(Image.open(run / "plots" / name).convert("L"))
        assert image.shape[1] in (1000, 1200) and image.shape[0] in (600, 700, 900)
        assert (image < 128).mean() > 0.005  # lines and text, not an empty canvas


def test_same_seed_and_config_give_identical_metrics(one_epoch_run, tmp_path):
    _, run = one_epoch_run
    result = run_cli("train", "--dataset", "mnist-5k", "--epochs", "1", "--out", str(tmp_path), "--name", "again", "--no-plots")
    assert result.exit_code == 0
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()


def test_a_rerun_with_the_same_name_is_refused(one_epoch_run):
    _, run = one_epoch_run
    before = (run / "metrics.csv").read_bytes()
    result = run_cli("train", "--dataset", "mnist-5k", "--epochs", "1", "--out", str(run.parent), "--name", "r")
    assert result.exit_code == 2
    assert "already exists" in result.output and "Traceback" not in result.output
    assert (run / "metrics.csv").read_bytes() == before


def test_divergence_is_a_result(tmp_path):
    result = run_cli("train", "--config", str(ROOT / "configs" / "explode.toml"), "--dataset", "mnist-5k",
                     "--epochs", "2", "--out", str(tmp_path), "--name", "boom")
    assert result.exit_code == 0
    assert "diverged at step" in result.output and "likely cause: exploding gradients" in result.output
    summary = json.loads((tmp_path / "boom" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    step = summary["first_nonfinite_step"]
    table = np.genfromtxt(tmp_path / "boom" / "metrics.csv", delimiter=",", names=True)
    assert table["step"][-1] == step and len(table) == step + 1
    assert np.isfinite(table["loss"][:-1]).all() and np.isfinite(table["global_norm_before"][:-1]).all()
    assert not (np.isfinite(table["loss"][-1]) and np.isfinite(table["global_norm_before"][-1]))
    final = np.load(tmp_path / "boom" / "params_final.npz")
    assert all(np.isfinite(final[name]).all() for name in PARAM_NAMES)
    assert (tmp_path / "boom" / "plots" / "norms.png").stat().st_size > 10_000


def test_frozen_tensors_are_saved_unchanged(tmp_path):
    result = run_cli("train", "--dataset", "mnist-5k", "--epochs", "1", "--freeze", "w1,b1", "--out", str(tmp_path),
                     "--name", "f", "--no-plots")
    assert result.exit_code == 0
    init, final = np.load(tmp_path / "f" / "params_init.npz"), np.load(tmp_path / "f" / "params_final.npz")
    for name in PARAM_NAMES:
        assert np.array_equal(init[name], final[name]) == (name in ("w1", "b1")), name


def test_version_help_and_module_entry():
    from mnist_clip import __version__

    assert run_cli("--version").output.strip() == f"mnist-clip, version {__version__}"
    for command in ("train", "plot", "compare", "demo", "sweep", "recipes"):
        result = run_cli(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output
    proc = subprocess.run([sys.executable, "-m", "mnist_clip", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout


def test_a_recipes_runs_are_named_after_it(tmp_path):
    import re

    from mnist_clip.api import train
    from mnist_clip.runs.folder import default_run_name

    # explode diverges at step 4: a run of it is quick
    result = run_cli("train", "--config", "explode", "--dataset", "mnist-5k", "--out", str(tmp_path / "cli"),
                     "--no-plots", "--quiet")
    assert result.exit_code == 0, result.output
    assert [re.fullmatch(r"explode-\d{8}-\d{6}", p.name) is not None for p in (tmp_path / "cli").iterdir()] == [True]
    own = tmp_path / "mine.toml"
    own.write_text((ROOT / "configs" / "explode.toml").read_text())
    run = train(str(own), out=tmp_path / "api", plots=False, progress="quiet", dataset="mnist-5k")
    assert re.fullmatch(r"mine-\d{8}-\d{6}", run.name), run.name
    # without a recipe, the clip setting names the run, as before
    assert re.fullmatch(r"global_norm-15-\d{8}-\d{6}", default_run_name(Config()))
    assert re.fullmatch(r"noclip-\d{8}-\d{6}", default_run_name(Config(clip="none")))
    assert re.fullmatch(r"adam-global_norm-1-\d{8}-\d{6}", default_run_name(Config(clip_norm=1.0, optimizer="adam")))
    assert re.fullmatch(r"rnn-adam-noclip-\d{8}-\d{6}",
                        default_run_name(Config().replace(model="rnn", optimizer="adam", clip="none")))


def test_a_run_leaves_nothing_in_the_temp_folder_and_no_process_behind(tmp_path):
    """...and its painters draw the pictures: the run's own process, which says their names
    first, never loads matplotlib (-X importtime lists each module it imports)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mnist_clip", "train", "--dataset", "mnist-5k",
                             "--epochs", "1", "--out", str(tmp_path / "out"), "--name", "r", "--tensorboard"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    names = list(figures_for(read_run(tmp_path / "out" / "r")))
    assert sorted(p.name for p in (tmp_path / "out" / "r" / "plots").iterdir()) == sorted(names)
    assert f"drawing the pictures ({', '.join(names)}) ..." in " ".join(result.stdout.split())
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "numpy" in imported and not [name for name in imported if name.startswith("matplotlib")]
    assert list(temp.iterdir()) == []  # no __autograph_generated_file*.py, nothing else
    stray = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"TMPDIR={temp}".encode() in (proc / "environ").read_bytes():
                stray.append(proc.name)
        except OSError:
            continue
    assert stray == []


def test_printed_lines_fit_the_terminal_width(one_epoch_run, tmp_path, monkeypatch, mnist_5k):
    """At COLUMNS=100 no command prints a line over 100 characters: progress, summaries, tables
    (compare, an rnn demo with seeds, cures), diagnoses, listings and errors."""
    from conftest import first_digits

    monkeypatch.setenv("COLUMNS", "100")
    part = first_digits(mnist_5k, 768, 128)  # explode diverges at step 4, within the 6 steps of an epoch
    data = tmp_path / "digits.npz"
    np.savez(data, x_train=part.x_train, y_train=part.y_train, x_test=part.x_test, y_test=part.y_test)
    out = str(tmp_path / "out")
    small = ("--data-path", str(data), "--epochs", "1", "--out", out, "--no-plots")
    explode = run_cli("train", "--config", "explode", "--name", "explode", *small)
    assert "likely cause:" in explode.output  # a diagnosis is among the lines checked
    demo = run_cli("demo", "--config", "rnn_explode_clipped", "--seeds", "2", "--name", "rnn", *small)
    assert "dh1/dh28" in demo.output and "δ1" not in demo.output and "w1/wL" not in demo.output
    cures = run_cli("cures", "--config", "deep_sigmoid_batchnorm", "--cure", "lower_lr", "--jobs", "1", "--name", "c",
                    *small[:-1])
    assert "deep_sigmoid_batchnorm needs about 12 epochs to leave chance; this run has 1" in cures.output
    outputs = {
        "train": one_epoch_run[0].output, "explode": explode.output, "demo": demo.output, "cures": cures.output,
        "compare": run_cli("compare", str(one_epoch_run[1]), str(tmp_path / "out" / "explode"), "--out",
                           str(tmp_path / "cmp")).output,
        "recipes": run_cli("recipes").output, "cures --list": run_cli("cures", "--list").output,
        "misspelt recipe": run_cli("train", "--config", "explod").output,
    }
    assert "did you mean the recipe 'explode'?" in outputs["misspelt recipe"]
    for command, output in outputs.items():
        # a path stays whole on its own line (fit_line): one that copies is worth more than one that fits
        long = [line for line in output.splitlines() if len(line) > 100 and len(line.split()) > 1]
        assert not long, (command, long)
